"""LoRA through PEFT: wrap, and the adapter state that checkpoints hold.

PEFT (``peft>=0.13``) is imported lazily so full fine-tuning works without it.
The reference model of a LoRA run is the base with the adapter disabled
(``with model.disable_adapter():``), so no second copy of the weights is held.
Checkpoints save the adapter alone (``PeftModel.save_pretrained``: adapter_model.safetensors
and adapter_config.json, a few MB) plus `adapter_state` for resuming; the final model is
merged in place (``merge_and_unload``, no copy) unless ``lora_merge`` is false.
PEFT keeps the adapter weights fp32 on a bf16 base (``autocast_adapter_dtype``).
"""
from __future__ import annotations

from treesearch.train.config import StepDPOConfig


def _peft():
    try:
        import peft
    except ImportError as e:  # an optional extra
        raise ValueError("LoRA training needs PEFT: pip install 'peft>=0.13' (or treesearch[train])") from e
    return peft


def is_peft(model) -> bool:
    try:
        import peft
    except ImportError:
        return False
    return isinstance(model, peft.PeftModel)


def apply_lora(model, config: StepDPOConfig):
    """Wrap `model` with a fresh LoRA adapter (only adapter weights train)."""
    peft = _peft()
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.lora_target_modules if t in present]
    if not targets:
        raise ValueError(f"lora_target_modules {list(config.lora_target_modules)} match no module of the model")
    lcfg = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                           target_modules=targets, bias="none", task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lcfg)


def adapter_state(model) -> dict:
    """The adapter weights only (for resumable checkpoints)."""
    return {k: v.detach().cpu().clone() for k, v in _peft().get_peft_model_state_dict(model).items()}


def load_adapter_state(model, state: dict) -> None:
    result = _peft().set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    assert not unexpected, f"adapter state has keys the model lacks: {unexpected[:3]}"
