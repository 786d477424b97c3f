"""The inference backend protocol, shaped like vLLM's offline API.

A backend turns prompts into completions. Prompts are either text (tokenized
as is, no template) or token ids; the search core uses token ids so that a
child's context is exactly its parent's ids plus the step's ids, which is what
makes prefix caching exact. `encode_prompt` applies the model's prompt
template (chat template or a format string) to a user turn.

    backend.generate(prompts, SamplingParams(n=4, temperature=0.8, stop=("\\n",)))
    -> [[Completion(text, token_ids, logprobs, finish_reason), ...4], ...]

Finish reasons: ``"stop"`` (a stop string was produced), ``"eos"`` (one of the
backend's `eos_token_ids`: the tokenizer's EOS, every id of the model's
generation_config, the chat template's end-of-turn token), ``"length"``
(max_tokens). Log-probabilities are the raw model log-softmax of the sampled
token, before temperature or top-p, as vLLM reports them by default.

Text and ids always agree: a completion keeps whole tokens, and its ``text`` is
``backend.decode(token_ids)`` (the trailing end token not shown). A stop string
ends the completion at the first token after which the text contains it, so
the text may run past the stop string by the rest of that token (``"1:\n\n"``
for a stop ``"\n"`` inside the token ``":\n\n"``). `decode` is additive
(`treesearch.backends.text.TokenText`), so a path's text is its steps' texts joined.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Protocol, Sequence, Union, runtime_checkable

Prompt = Union[str, Sequence[int]]
FINISH_REASONS = ("stop", "eos", "length")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; field names and meanings follow `vllm.SamplingParams`.

    Unlike vLLM, `max_tokens` has no silent default of 16: pick it for the task.
    `seed` makes sampling reproducible per (prompt, sample index), whatever else
    is in the batch. temperature 0 is greedy decoding.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = True
    # Kept for vLLM's field set; only True exists here, because a completion's text is the decode
    # of its whole tokens, and text cut before the stop string would no longer be that.
    include_stop_str_in_output: bool = True

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if not self.include_stop_str_in_output:
            raise ValueError("SamplingParams.include_stop_str_in_output=False is not supported: a completion's "
                             "text is the decode of its whole tokens, stop string included")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sampled continuation.

    text: ``decode(token_ids)`` without the end token: whole tokens, so it ends with the token
        that completed the stop string (which may run past it).
    token_ids: the sampled ids, the end token included when one ended the completion.
    logprobs: one raw log-probability per id in `token_ids`.
    finish_reason: "stop", "eos" or "length".
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str

    @property
    def cumulative_logprob(self) -> float:
        return float(sum(self.logprobs))


@dataclasses.dataclass
class BackendStats:
    """What a backend has computed since it was made (or last `reset`).

    prompt_tokens: context tokens requested; prefill_tokens: those actually run
    through the model (prompt_tokens minus cache hits, plus any recomputation);
    cached_tokens: served from the prefix cache; decode_tokens: sampled tokens;
    scored_tokens: tokens run through `logprobs`; calls: generate + logprobs calls.
    """

    calls: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0
    cached_tokens: int = 0
    decode_tokens: int = 0
    scored_tokens: int = 0
    seconds: float = 0.0

    @property
    def computed_tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens + self.scored_tokens

    def snapshot(self) -> "BackendStats":
        return dataclasses.replace(self)

    def since(self, before: "BackendStats") -> "BackendStats":
        return BackendStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["computed_tokens"] = self.computed_tokens
        d["seconds"] = round(self.seconds, 4)
        return d


class timed:
    """Context manager adding wall time of a backend call to `stats.seconds`."""

    def __init__(self, stats: BackendStats):
        self.stats = stats

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.stats.calls += 1

    def __exit__(self, *exc):
        self.stats.seconds += time.perf_counter() - self.t0


class TextMixin:
    """Text <-> ids for backends holding `tokenizer`, `template` and `system` (HF, vLLM)."""

    tokenizer: object
    template: str
    system: str | None

    def encode_prompt(self, user_text: str, template: str | None = None) -> list[int]:
        from treesearch.prompting import CHAT, encode_prompt

        tpl = self.template if template in (None, CHAT) else template
        return encode_prompt(self.tokenizer, user_text, tpl, self.system)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def token_text(self):
        """The tokenizer's exact, additive decoder (`treesearch.backends.text.TokenText`), made once."""
        made = self.__dict__.get("_token_text")
        if made is None:
            from treesearch.backends.text import TokenText

            made = self.__dict__["_token_text"] = TokenText(self.tokenizer)
        return made

    def decode(self, token_ids: Sequence[int]) -> str:
        """The text `token_ids` add after any context: special tokens hidden, no space clean-up."""
        return self.token_text.decode(token_ids)

    def close(self) -> None:
        """Release what the backend holds beyond Python objects (a vLLM engine's processes); nothing for HF."""

    def _ids(self, prompt: Prompt) -> list[int]:
        ids = self.tokenize(prompt) if isinstance(prompt, str) else list(map(int, prompt))
        if not ids:
            raise ValueError("empty prompt")
        return ids


@runtime_checkable
class Backend(Protocol):
    stats: BackendStats
    eos_token_id: int  # the primary one (the tokenizer's)
    eos_token_ids: frozenset[int]  # every id that ends a completion with "eos", eos_token_id included

    def encode_prompt(self, user_text: str, template: str | None = None) -> list[int]:
        """Token ids of the model's prompt template applied to one user turn.

        `template` (a task's format string with ``{prompt}``) overrides the backend's
        own; None or "chat" keeps the backend's (the model's chat template by default)."""
        ...

    def tokenize(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order."""
        ...

    def logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt]) -> list[list[float]]:
        """Per-token log-probabilities of each continuation given its prompt (teacher forcing)."""
        ...
