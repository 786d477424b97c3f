"""Peak training memory per device of a Step-DPO run, estimated before any weights load.

    shape = ModelShape.from_hf_config(AutoConfig.from_pretrained(path))
    est = estimate(shape, StepDPOConfig(dtype="bfloat16", sharding="fsdp"), world=8, rows=1, width=2048)
    est.total / 2**30          # GiB per device; est.parts: weights, master, grads, optimizer, ...

The trainer calls `check` with the run's real micro-batch shapes (rows × padded width per rank)
and prints one warning line when the estimate exceeds the device, with the options that would
fit; `python -m treesearch.train.memory` prints the table of docs/scaling.md from the same
function. The formula, per device (P = all parameters, T = trained ones, W = ranks when sharded):

* weights: P × 2 (bf16) or 4 (fp32) bytes; FSDP keeps 1/W of them, plus the gathered (bf16 or
  fp32) weights of the root (embeddings, head) and of two decoder layers (the one running and
  the one prefetched);
* master (bf16 with master weights): T × 4, the fp32 copy; under FSDP it *is* the shard (/W);
* grads: T × 4 (fp32 weights, master weights whose bf16 gradients are freed into fp32, LoRA
  adapters, which PEFT keeps fp32) or T × 2 (pure bf16); /W under FSDP;
* optimizer: AdamW's two moments, T × 8 (fp32) or T × 4 (pure bf16); /W under FSDP;
* activations: per token of the micro-batch, stored across the backward: with gradient
  checkpointing the layer inputs (L × H) plus one layer recomputed, else L × (10·H + 4·I + 2·kv)
  values (QKV, attention output, MLP gate/up/act/product, norms, residuals), in the compute dtype;
  plus the packed 4D mask (rows × width² bytes);
* logits: 3 chunks of `logps.CHUNK_ELEMENTS` fp32 values (logits, their softmax/gradient and its
  cast), never [N, V] (`logps.selected_logps`);
* runtime: a fixed 1 GiB (CUDA context and allocator slack; on CPU the interpreter and libraries).

It is an estimate: it leaves out allocator fragmentation and attention kernels that materialize
[heads, T, T] scores (the eager kernel does; sdpa's do not); bench/trainer_memory.py prints it
next to the measured peak.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

GiB = 2 ** 30
RUNTIME_BYTES = 1 * GiB


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a decoder-only transformer (Qwen2/Llama family)."""

    params: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        return 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate

    @property
    def root_params(self) -> int:
        """Embeddings and LM head (one matrix when tied)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @classmethod
    def from_hf_config(cls, cfg: Any) -> "ModelShape":
        """From a transformers config (no weights); the parameter count is the architecture's
        (attention, MLP, embeddings; norms and biases are < 0.1% and left out)."""
        heads = cfg.num_attention_heads
        shape = cls(params=0, hidden=cfg.hidden_size, layers=cfg.num_hidden_layers,
                    intermediate=cfg.intermediate_size, vocab=cfg.vocab_size, heads=heads,
                    kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
                    tied=bool(getattr(cfg, "tie_word_embeddings", False)))
        return dataclasses.replace(shape, params=shape.layers * shape.layer_params + shape.root_params)

    @classmethod
    def from_model(cls, model: Any) -> "ModelShape":
        """From a loaded model: its config, with the exact parameter count."""
        from treesearch.train.logps import causal_lm

        shape = cls.from_hf_config(causal_lm(model).config)
        return dataclasses.replace(shape, params=sum(p.numel() for p in causal_lm(model).parameters()))


# name, hidden, layers, intermediate, vocab, heads, kv_heads, tied: the shapes the docs tabulate
KNOWN = {
    "Qwen2.5-1.5B": (1536, 28, 8960, 151_936, 12, 2, True),
    "Qwen2.5-7B": (3584, 28, 18944, 152_064, 28, 4, False),
    "Llama-3.1-8B": (4096, 32, 14336, 128_256, 32, 8, False),
}


def known_shape(name: str) -> ModelShape:
    h, n, i, v, a, kv, tied = KNOWN[name]
    s = ModelShape(0, h, n, i, v, a, kv, tied)
    return dataclasses.replace(s, params=s.layers * s.layer_params + s.root_params)


@dataclasses.dataclass(frozen=True)
class Estimate:
    parts: dict[str, float]  # bytes per device, by item

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def describe(self) -> str:
        return ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts.items() if v >= 0.05 * GiB)


def lora_params(shape: ModelShape, config) -> int:
    """Trained parameters of the LoRA adapter: r·(in + out) per targeted projection per layer."""
    kv = shape.kv_heads * shape.head_dim
    h, i = shape.hidden, shape.intermediate
    dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    per_layer = sum(config.lora_r * (a + b) for name, (a, b) in dims.items() if name in config.lora_target_modules)
    return shape.layers * per_layer


def estimate(shape: ModelShape, config, *, world: int = 1, rows: int = 1, width: int = 1024,
             packed: bool = True, device: str = "cuda") -> Estimate:
    """Peak bytes per device for micro-batches of `rows` rows × `width` tokens on each rank.

    config: a `StepDPOConfig` (dtype, master_weights, gradient_checkpointing, lora, sharding, bf16).
    """
    from treesearch.train.logps import CHUNK_ELEMENTS

    bf16 = config.dtype == "bfloat16"
    master = bf16 and config.master_weights and not config.lora
    wbytes = 2 if bf16 else 4
    fsdp = config.sharding == "fsdp" and world > 1 and not config.lora
    shards = world if fsdp else 1
    trained = lora_params(shape, config) if config.lora else shape.params
    compute = 2 if bf16 or (config.bf16 and device.startswith("cuda")) else 4
    parts: dict[str, float] = {}
    if fsdp:
        # fp32 shards when they are the master; the gathered root and two layers in the compute dtype
        parts["weights"] = shape.params * (4 if master else wbytes) / shards
        parts["gathered"] = (shape.root_params + 2 * shape.layer_params) * compute
    else:
        parts["weights"] = shape.params * wbytes
        if master:
            parts["master"] = trained * 4.0
    fp32_trained = master or config.lora or not bf16  # PEFT keeps adapters fp32 on a bf16 base
    parts["grads"] = trained * (4 if fp32_trained else 2) / shards
    parts["optimizer"] = trained * (8 if fp32_trained else 4) / shards
    tokens = rows * width
    kv = shape.kv_heads * shape.head_dim
    per_layer = 10 * shape.hidden + 4 * shape.intermediate + 2 * kv
    if config.gradient_checkpointing:
        act = tokens * (shape.layers * shape.hidden + per_layer) * compute
    else:
        act = tokens * shape.layers * per_layer * compute
    parts["activations"] = act + (rows * width * width if packed else 0)
    parts["logits"] = 3 * CHUNK_ELEMENTS * 4
    parts["runtime"] = RUNTIME_BYTES
    return Estimate(parts)


def device_bytes(device: str, local_world: int = 1) -> float | None:
    """Memory of `device`: a CUDA GPU's total, or this host's RAM shared by its `local_world` ranks."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        idx = int(str(device).split(":")[1]) if ":" in str(device) else torch.cuda.current_device()
        return float(torch.cuda.get_device_properties(idx).total_memory)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / max(1, local_world)
    except (ValueError, OSError, AttributeError):
        return None


# single changes tried, in this order, when a run does not fit
ALTERNATIVES = (
    {"gradient_checkpointing": True},
    {"dtype": "bfloat16"},
    {"dtype": "bfloat16", "gradient_checkpointing": True},
    {"sharding": "fsdp"},
    {"sharding": "fsdp", "dtype": "bfloat16", "gradient_checkpointing": True},
    {"lora": True, "dtype": "bfloat16", "gradient_checkpointing": True, "sharding": "ddp"},
    {"dtype": "bfloat16", "master_weights": False, "gradient_checkpointing": True},
)


def check(shape: ModelShape, config, *, world: int, rows: int, width: int, packed: bool, device: str,
          local_world: int = 1, available: float | None = None) -> str | None:
    """One warning line when the estimate exceeds the device's memory, naming the options that fit; else None."""
    have = available if available is not None else device_bytes(device, local_world)
    if have is None:
        return None
    est = estimate(shape, config, world=world, rows=rows, width=width, packed=packed, device=device)
    if est.total <= have:
        return None
    fits = []
    for change in ALTERNATIVES:
        if all(getattr(config, k) == v for k, v in change.items()):
            continue
        if change.get("sharding") == "fsdp" and world <= 1:
            continue  # sharding needs ranks
        alt = dataclasses.replace(config, **change)
        e = estimate(shape, alt, world=world, rows=rows, width=width, packed=packed, device=device)
        if e.total <= have:
            fits.append(" ".join(f"{k}={_yaml(v)}" for k, v in change.items()) + f" ({e.total / GiB:.1f} GiB)")
    if not fits and rows > 1:
        fits.append(f"smaller micro-batches: batch_size={max(1, config.batch_size // rows)} with grad_accum "
                    f"{config.grad_accum * rows}")
    return (f"warning: estimated peak memory {est.total / GiB:.1f} GiB per device ({est.describe()} GiB) exceeds "
            f"{device}'s {have / GiB:.1f} GiB; options that would fit: {'; '.join(fits) or 'none of the tried ones'}")


def _yaml(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def table() -> str:
    """The memory table of docs/scaling.md (micro-batch: 1 packed pair of 2,048 tokens per device)."""
    from treesearch.train.config import StepDPOConfig

    rows = [
        ("Qwen2.5-7B", "full, fp32 weights + bf16 autocast, DDP (the old default)", 8,
         dict(sharding="ddp")),
        ("Qwen2.5-7B", "full, fp32 weights, DDP, grad. checkpointing", 8,
         dict(sharding="ddp", gradient_checkpointing=True)),
        ("Qwen2.5-7B", "full, bf16 + fp32 master, FSDP, grad. ckpt (configs/multigpu_node.yaml)", 8,
         dict(sharding="fsdp", dtype="bfloat16", gradient_checkpointing=True)),
        ("Qwen2.5-7B", "full, bf16 + fp32 master, FSDP, grad. ckpt", 4,
         dict(sharding="fsdp", dtype="bfloat16", gradient_checkpointing=True)),
        ("Qwen2.5-7B", "LoRA r=16, bf16 base, grad. ckpt (configs/lora_single_gpu.yaml)", 1,
         dict(lora=True, lora_r=16, dtype="bfloat16", gradient_checkpointing=True)),
        ("Qwen2.5-1.5B", "full, bf16 + fp32 master, one GPU, grad. ckpt", 1,
         dict(dtype="bfloat16", gradient_checkpointing=True)),
        ("Qwen2.5-1.5B", "full, fp32 weights, one GPU", 1, dict()),
        ("Llama-3.1-8B", "full, bf16 + fp32 master, FSDP, grad. ckpt", 8,
         dict(sharding="fsdp", dtype="bfloat16", gradient_checkpointing=True)),
    ]
    out = ["| model | setup | GPUs | weights | master | grads | optimizer | activations | other | total GiB/GPU |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, what, world, opts in rows:
        est = estimate(known_shape(name), StepDPOConfig(**opts), world=world, rows=1, width=2048, device="cuda")
        p = est.parts
        other = p.get("gathered", 0) + p["logits"] + p["runtime"]
        cells = [p["weights"], p.get("master", 0), p["grads"], p["optimizer"], p["activations"], other]
        out.append(f"| {name} | {what} | {world} | " + " | ".join(f"{c / GiB:.1f}" for c in cells)
                   + f" | **{est.total / GiB:.1f}** |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
