"""Loading a policy (the embedded default or any Hugging Face causal LM) with clear errors."""
from __future__ import annotations

from pathlib import Path

EMBEDDED = Path(__file__).resolve().parent / "assets" / "policy"
DEFAULT_POLICY = "embedded"


class PolicyError(ValueError):
    """A checkpoint that cannot be loaded; the message names the path and what is wrong."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; any other device string as given, once torch
    reads it as a device (PolicyError, a ValueError, naming it otherwise)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise PolicyError(f"unknown device {device!r}: {str(e).splitlines()[0] if str(e) else 'not a torch device'}") from e
    return device


def resolve_dtype(dtype: str, device: str):
    """The torch dtype `dtype` names; 'auto' is bfloat16 on CUDA and float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise PolicyError(f"unknown dtype {dtype!r}")
    return torch_dtype


def resolve(path_or_name: str | Path) -> str:
    """'embedded' means the committed tiny policy; a local directory must hold a checkpoint;
    anything else is passed to transformers as a hub name (needs network or a local HF cache)."""
    if str(path_or_name) == DEFAULT_POLICY:
        return str(EMBEDDED)
    p = Path(path_or_name)
    if p.exists() or str(path_or_name).startswith((".", "/")) or str(path_or_name).count("/") > 1:
        if not p.is_dir():
            raise PolicyError(f"{p}: checkpoint directory does not exist")
        if not (p / "config.json").is_file():
            raise PolicyError(f"{p}: not a checkpoint directory (no config.json)")
        if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
            raise PolicyError(f"{p}: checkpoint has no weights (*.safetensors or *.bin)")
        return str(p)
    return str(path_or_name)


def load_policy(path_or_name: str | Path = DEFAULT_POLICY, *, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) in eval mode. device 'auto' picks CUDA when present; dtype 'auto' is
    bfloat16 on CUDA and float32 on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve(path_or_name)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # corrupt or missing files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PolicyError(f"{where}: cannot load checkpoint: {first}") from e
    # No pad token is invented (Llama-3 has none; a saved tokenizer must not gain one): padded
    # positions are masked, and code that pads takes its filler from `backends.text.pad_id`.
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer
