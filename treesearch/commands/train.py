"""`treesearch train-dpo`: Step-DPO on a pairs JSONL file.

    treesearch train-dpo --pairs runs/r0/pairs.jsonl --model embedded --out runs/r0/dpo \\
        [--config train.yaml] [--beta 0.1 --epochs 2 --lora ...]

Every `StepDPOConfig` field is also an option (its help text comes from the field);
the command line overrides the YAML file, which overrides the defaults. Rerunning the
same command after an interruption continues from the last checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    from treesearch.train.config import StepDPOConfig

    group = parser.add_argument_group("training options (StepDPOConfig fields; override --config)")
    types_ = typing.get_type_hints(StepDPOConfig)
    for f in dataclasses.fields(StepDPOConfig):
        flag = "--" + f.name.replace("_", "-")
        tp = types_[f.name]
        kw = {"dest": f"cfg_{f.name}", "default": None, "help": f"{f.metadata['help']} (default: {f.default})"}
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            nargs = "+" if typing.get_args(tp)[-1] is Ellipsis else len(typing.get_args(tp))
            group.add_argument(flag, type=inner, nargs=nargs, metavar=f.name.upper(), **kw)
        else:
            group.add_argument(flag, type=tp, metavar=tp.__name__.upper(), **kw)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-dpo",
        help="train the policy with Step-DPO on step pairs",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--pairs", required=True, metavar="FILE",
                   help="pairs JSONL (prompt/chosen/rejected + step metadata)")
    p.add_argument("--model", default="embedded", metavar="PATH",
                   help="policy checkpoint directory or 'embedded' (default: embedded)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory: checkpoints, metrics.jsonl, model/")
    p.add_argument("--config", metavar="YAML", help="a YAML mapping of StepDPOConfig keys")
    _add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from treesearch.train import load_config, train_step_dpo

    overrides = {k.removeprefix("cfg_"): v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    config = load_config(args.config, overrides)
    result = train_step_dpo(args.model, args.pairs, config, args.out)
    m = result.metrics
    status = "already finished" if result.resumed_from == result.steps and result.seconds == 0 else "trained"
    print(f"{status}: {result.steps} steps on {result.pairs} pairs -> {result.model_dir} "
          f"(loss {m.get('loss', float('nan')):.4f}, reward accuracy {m.get('rewards/accuracy', float('nan')):.2f}, "
          f"margin {m.get('rewards/margin', float('nan')):.4f})")
    return 0
