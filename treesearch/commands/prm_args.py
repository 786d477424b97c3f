"""The PRM options the test-time commands share (``eval``, ``search``, ``sweep``).

    add_prm_args(parser, what="ranks for ...")   # in a command's register()
    args.prm, args.prm_aggregate, args.prm_sets, args.prm_device  # in its run(); `load_value_prm` reads them
"""
from __future__ import annotations


def add_prm_args(p, *, what: str) -> None:
    """``--prm DIR``, ``--prm-aggregate last|min|prod``, ``--prm-set KEY=VALUE`` (repeatable) and ``--prm-device``."""
    from treesearch.rewards.prm import AGGREGATES

    p.add_argument("--prm", default="", metavar="DIR",
                   help=f"process reward model (a `treesearch train-prm` OUT/model, or any PRM checkpoint): {what}")
    p.add_argument("--prm-aggregate", default="last", choices=list(AGGREGATES),
                   help="a solution's PRM score from its step scores")
    p.add_argument("--prm-set", dest="prm_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="how the PRM reads a solution (a PRMConfig field), over the checkpoint's prm_config.json; "
                        "e.g. Math-Shepherd: --prm-set head=reward_token --prm-set 'step_tag= ки' --prm-set 'separator=\\n'")
    p.add_argument("--prm-device", default="auto", metavar="DEVICE",
                   help="where the PRM runs: auto (CUDA when present, in bf16; else CPU, fp32), cpu, cuda[:N]")
