"""vLLM backend: `vllm.LLM` with automatic prefix caching, behind the same protocol.

An optional extra (``pip install treesearch[vllm]``), imported lazily. Written
against vLLM's documented offline API:

* ``LLM(model=..., enable_prefix_caching=True, seed=..., dtype=..., ...)``;
* ``llm.generate([{"prompt_token_ids": ids}, ...], [SamplingParams(...), ...])``
  with one `SamplingParams` per prompt, so each prompt gets its own seed
  (derived like the HF backend's: from the seed and the prompt's ids);
* ``CompletionOutput.finish_reason`` is "stop" for both EOS and stop strings;
  ``stop_reason`` is None for EOS, so "stop" with no stop_reason becomes "eos";
* ``logprobs=0`` returns the sampled token's raw log-probability at each step;
* scoring uses ``prompt_logprobs=0`` with ``max_tokens=1``. Requesting prompt
  log-probabilities disables prefix-cache *reads* unless
  ``skip_reading_prefix_cache=False`` is passed (where the installed vLLM has it).

vLLM's own ``max_tokens`` default (16) never applies: our `SamplingParams`
always sets it.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Sequence

from treesearch.backends.base import BackendStats, Completion, Prompt, SamplingParams, TextMixin, timed
from treesearch.prompting import CHAT


def _seed_for(seed: int, ids: Sequence[int]) -> int:
    return (seed * 1_000_003 + zlib.crc32(",".join(map(str, ids)).encode())) % (2**31 - 1)


class VLLMBackend(TextMixin):
    def __init__(self, llm, *, template: str = CHAT, system: str | None = None):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.template = template
        self.system = system
        self.stats = BackendStats()
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        import vllm

        self._vllm = vllm
        fields = getattr(vllm.SamplingParams, "__struct_fields__", None) or [
            f.name for f in dataclasses.fields(vllm.SamplingParams)
        ]
        self._has_skip_prefix_flag = "skip_reading_prefix_cache" in fields

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        dtype: str = "auto",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        template: str = CHAT,
        **llm_kwargs,
    ) -> "VLLMBackend":
        from vllm import LLM  # lazy: an optional extra, GPU only

        from treesearch.policy import resolve

        llm = LLM(
            model=resolve(model),
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            **llm_kwargs,
        )
        return cls(llm, template=template)

    def _params(self, params: SamplingParams, ids: list[int]):
        return self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=None if params.seed is None else _seed_for(params.seed, ids),
            logprobs=0 if params.logprobs else None,
            include_stop_str_in_output=params.include_stop_str_in_output,
        )

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        seqs = [self._ids(p) for p in prompts]
        with timed(self.stats):
            outs = self.llm.generate(
                [{"prompt_token_ids": s} for s in seqs], [self._params(params, s) for s in seqs], use_tqdm=False
            )
        results = []
        for seq, out in zip(seqs, outs):
            cached = int(getattr(out, "num_cached_tokens", 0) or 0)
            self.stats.prompt_tokens += len(seq)
            self.stats.cached_tokens += cached
            self.stats.prefill_tokens += len(seq) - cached
            comps = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                token_ids = tuple(int(t) for t in c.token_ids)
                self.stats.decode_tokens += len(token_ids)
                lps = ()
                if params.logprobs and c.logprobs is not None:
                    lps = tuple(float(step[t].logprob) for step, t in zip(c.logprobs, token_ids))
                reason = c.finish_reason
                if reason == "stop" and c.stop_reason is None:
                    reason = "eos"
                comps.append(Completion(text=c.text, token_ids=token_ids, logprobs=lps, finish_reason=reason))
            results.append(comps)
        return results

    def logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt]) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        ps = [self._ids(p) for p in prompts]
        cs = [self._ids(c) for c in continuations]
        kw = {"skip_reading_prefix_cache": False} if self._has_skip_prefix_flag else {}
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, **kw)
        with timed(self.stats):
            outs = self.llm.generate([{"prompt_token_ids": p + c} for p, c in zip(ps, cs)], sp, use_tqdm=False)
        result = []
        for p, c, out in zip(ps, cs, outs):
            self.stats.scored_tokens += len(p) + len(c)
            plp = out.prompt_logprobs
            result.append([float(plp[len(p) + i][t].logprob) for i, t in enumerate(c)])
        return result
