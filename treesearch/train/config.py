"""`StepDPOConfig`: every knob of the Step-DPO trainer, one frozen dataclass.

Each field carries its help text in ``metadata["help"]``; the command line
(`treesearch train-dpo`) builds one option per field from it, and YAML files are
merged strictly by `treesearch.config` (an unknown key or a value of the wrong
type is an error naming the file and the key); the iterate loop nests this
config as its ``train`` section. Defaults follow Step-DPO / MCTS-DPO (β 0.1, 1 epoch)
except the learning rate, which is sized for small models such as the embedded
policy; the papers' 5e-7 (Step-DPO) or 1e-6 (MCTS-DPO) suit 7B models.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class StepDPOConfig:
    # --- objective
    beta: float = _f(0.1, "DPO inverse temperature β on the summed step log-ratio (Step-DPO: 0.05-0.5).")
    rpo_alpha: float = _f(
        0.0, "Weight of the NLL term on chosen steps (RPO); the NLL is averaged per chosen token. 0 = off."
    )
    apo_alpha: float = _f(
        0.0, "Step-APO advantage weight α: loss −logσ(β·h − α(Q_w − Q_l)) with chosen_value/rejected_value. "
        "0 = off."
    )
    label_smoothing: float = _f(0.0, "Fixed conservative-DPO label smoothing ε in [0, 0.5). 0 = off.")
    label_smoothing_from_visits: bool = _f(
        False, "Take ε per pair from chosen_visits/rejected_visits: the rejected step's visit share, capped "
        "at 0.5 (losses.visit_label_smoothing); overrides label_smoothing."
    )
    # --- optimisation
    learning_rate: float = _f(1e-5, "AdamW peak learning rate (papers use 5e-7..1e-6 for 7B models).")
    epochs: int = _f(1, "Passes over the pairs (Step-DPO: 2-8, MCTS-DPO: 1).")
    batch_size: int = _f(8, "Pairs per micro-batch (each pair is two sequences).")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    warmup_ratio: float = _f(0.1, "Fraction of optimizer steps with linear warmup; then linear decay to 0.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 = no clipping.")
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay.")
    adam_betas: tuple[float, float] = _f((0.9, 0.999), "AdamW (β1, β2).")
    seed: int = _f(0, "Seed of the shuffling, LoRA initialisation and dropout.")
    group_by_length: bool = _f(True, "Batch pairs of similar length together (less padding); batch order stays random.")
    max_length: int = _f(
        1024, "Longest prompt+step sequence in tokens (capped at the model's max_position_embeddings); "
        "a longer pair is dropped (and counted), never cut into its question."
    )
    pack_prompt: bool = _f(
        True, "Run each pair as one sequence prompt+chosen+rejected, a mask hiding chosen from rejected, so the "
        "shared prompt is computed once (needs sdpa or eager attention; otherwise TRL's two-row layout is used)."
    )
    ref_batch_size: int = _f(32, "Pairs per forward pass of the one-off reference log-probability pass.")
    # --- LoRA (PEFT)
    lora: bool = _f(False, "Train a LoRA adapter instead of all weights (the reference is the base with the adapter "
                    "disabled); checkpoints hold the adapter only.")
    lora_merge: bool = _f(True, "LoRA: the final model is the base with the adapter merged in (loads anywhere); "
                          "false = the final directory holds the adapter only (adapter_model.safetensors).")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA scaling α (the update is scaled by α/r).")
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input.")
    lora_target_modules: tuple[str, ...] = _f(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        "Module names that get a LoRA adapter.",
    )
    # --- runtime
    device: str = _f("auto", "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")
    bf16: bool = _f(True, "bf16 autocast on CUDA when dtype is float32 (weights and optimizer stay fp32); CPU runs "
                    "fp32 unless dtype is bfloat16.")
    dtype: str = _f("float32", "Dtype of the weights held for training: float32, or bfloat16 (half the weight and "
                    "gradient memory; see master_weights).")
    master_weights: bool = _f(True, "dtype bfloat16: keep an fp32 master copy of the trained weights and fp32 AdamW "
                              "state, so small updates are not lost to bf16 rounding; false = weights, gradients and "
                              "optimizer state all bf16 (8 instead of 16 bytes per trained parameter).")
    gradient_checkpointing: bool = _f(False, "Recompute each decoder layer in the backward pass instead of storing "
                                      "its activations (about a third more compute, activations / layers).")
    sharding: str = _f("ddp", "Under torchrun: 'ddp' replicates weights, gradients and optimizer state on every "
                       "rank; 'fsdp' shards them across ranks (torch FSDP2 fully_shard, per decoder layer).")
    logging_steps: int = _f(1, "Write a metrics line every this many optimizer steps.")
    save_steps: int = _f(100, "Save a resumable checkpoint every this many optimizer steps; 0 = only the final model.")
    keep_checkpoints: int = _f(1, "How many intermediate checkpoints to keep (oldest removed first).")
    progress: bool = _f(True, "Show a tqdm progress bar with loss, reward accuracy and margin.")

    def __post_init__(self) -> None:
        _check(self.beta > 0, "beta", self.beta, "must be > 0")
        _check(self.rpo_alpha >= 0, "rpo_alpha", self.rpo_alpha, "must be >= 0")
        _check(self.apo_alpha >= 0, "apo_alpha", self.apo_alpha, "must be >= 0")
        _check(0 <= self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "must be in [0, 0.5)")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "ref_batch_size", "logging_steps", "lora_r"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        _check(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "must be >= 0")
        _check(self.save_steps >= 0, "save_steps", self.save_steps, "must be >= 0")
        _check(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "must be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "must be in [0, 1)")
        _check(len(self.adam_betas) == 2, "adam_betas", self.adam_betas, "must be two numbers")
        _check(self.dtype in ("float32", "bfloat16"), "dtype", self.dtype, "must be float32 or bfloat16")
        _check(self.sharding in ("ddp", "fsdp"), "sharding", self.sharding, "must be ddp or fsdp")
        _check(not (self.lora and self.sharding == "fsdp"), "sharding", self.sharding,
               "fsdp shards full fine-tuning; a LoRA run trains a few MB and keeps its base replicated (use ddp)")
        _check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"), "device", self.device,
               "must be auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ValueError(f"StepDPOConfig.{name}={value!r}: {why}")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> StepDPOConfig:
    """Defaults, then the YAML file at `path`, then `overrides`; merged strictly by the project's
    loader (`treesearch.config`): unknown keys and ill-typed values are errors naming the file and key."""
    from treesearch import config as strict

    return strict.load_config(StepDPOConfig, path, overrides)
