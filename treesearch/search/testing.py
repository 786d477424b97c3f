"""A scripted `Backend` over a tiny character vocabulary, for testing search logic without a model.

Like nanochat's uniform-logit model: the search code runs unchanged, but the
"policy" is a plain function from the text generated so far to a distribution
over the next character, so the best path and every probability are known::

    backend = ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.3, "c": 0.2}, depth=2))
    # a solution is `depth` lines of one arm letter each, e.g. "a\\nc" + EOS;
    # `bandit_score("c")` calls it correct only when every line is "c".

Token ids: 0 is EOS, a character ch is ``ord(ch) + 1``. Sampling is seeded per
(seed, prompt ids, sample index) like the HF backend, log-probabilities are raw
(before temperature), and a prefix cache of every sequence seen so far makes
`stats.prefill_tokens` count only context tokens not seen before.
"""
from __future__ import annotations

import math
import time
import zlib
from typing import Callable, Sequence

import numpy as np

from treesearch.backends.base import BackendStats, Completion, Prompt, SamplingParams, timed

EOS = 0
Policy = Callable[[str], dict]  # generated text -> {next char (or EOS as the int 0): probability}


def bandit_policy(arms: dict[str, float], depth: int = 1) -> Policy:
    """Each line is one arm letter drawn from `arms`; after `depth` lines comes EOS.

    Lines 1..depth-1 end with "\\n"; the last letter is followed directly by EOS.
    """
    letters = list(arms)
    total = sum(arms.values())

    def policy(text: str) -> dict:
        if not text or text.endswith("\n"):
            return {ch: arms[ch] / total for ch in letters}
        if text.count("\n") + 1 >= depth:
            return {EOS: 1.0}
        return {"\n": 1.0}

    return policy


def bandit_score(best: str) -> Callable:
    """Scorer for `bandit_policy`: 1.0 when every line of the text is the arm `best`."""

    def score(tree, text: str) -> float:
        lines = text.split("\n")
        return 1.0 if lines and all(line == best for line in lines) else 0.0

    return score


class ScriptedBackend:
    """`Backend` whose next-token distribution is ``policy(text generated so far)``."""

    def __init__(self, policy: Policy, *, prompt_prefix: str = "<", prompt_suffix: str = ">", delay_s: float = 0.0):
        self.policy = policy
        self.prompt_prefix, self.prompt_suffix = prompt_prefix, prompt_suffix
        self.eos_token_id = EOS
        self.eos_token_ids = frozenset({EOS})
        self.stats = BackendStats()
        self.delay_s = delay_s  # simulated model time per call, to exercise cost accounting
        self._seen: set[tuple[int, ...]] = set()
        self.prompts_seen: list[list[int]] = []

    def encode_prompt(self, user_text: str, template: str | None = None) -> list[int]:
        return self.tokenize(self.prompt_prefix + user_text + self.prompt_suffix)

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) + 1 for ch in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t - 1) for t in token_ids if t != EOS)

    def _split(self, ids: list[int]) -> int:
        """Index where generated text starts: after the prompt suffix."""
        suffix = self.tokenize(self.prompt_suffix)
        for i in range(len(ids) - len(suffix), -1, -1):
            if ids[i : i + len(suffix)] == suffix:
                return i + len(suffix)
        return len(ids)

    def _prefill(self, ids: list[int]) -> None:
        hit = max((k for k in range(len(ids), 0, -1) if tuple(ids[:k]) in self._seen), default=0)
        self.stats.prompt_tokens += len(ids)
        self.stats.prefill_tokens += len(ids) - hit
        self.stats.cached_tokens += hit

    def _remember(self, ids: list[int]) -> None:
        for k in range(1, len(ids) + 1):
            self._seen.add(tuple(ids[:k]))

    def _dist(self, text: str) -> tuple[list, np.ndarray]:
        d = self.policy(text)
        keys = sorted(d, key=lambda k: (-1 if k == EOS else ord(k)))
        p = np.array([d[k] for k in keys], dtype=np.float64)
        return keys, p / p.sum()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        out = []
        with timed(self.stats):
            if self.delay_s:
                time.sleep(self.delay_s)
            for prompt in prompts:
                ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
                self.prompts_seen.append(ids)
                self._prefill(ids)
                self._remember(ids)
                start = self._split(ids)
                row = []
                for index in range(params.n):
                    seed = zlib.crc32(repr((params.seed, ids, index)).encode())
                    row.append(self._sample(ids, start, params, np.random.default_rng(seed)))
                out.append(row)
        return out

    def _sample(self, ids: list[int], start: int, params: SamplingParams, rng) -> Completion:
        prefix = self.decode(ids[start:])
        toks, lps, text = [], [], ""
        reason = "length"
        while len(toks) < params.max_tokens:
            keys, p = self._dist(prefix + text)
            if params.temperature == 0:
                j = int(np.argmax(p))
            else:
                q = p ** (1.0 / params.temperature)
                j = int(rng.choice(len(keys), p=q / q.sum()))
            k = keys[j]
            toks.append(EOS if k == EOS else ord(k) + 1)
            lps.append(math.log(p[j]))
            self.stats.decode_tokens += 1
            if k == EOS:
                reason = "eos"
                break
            text += k
            if any(s in text for s in params.stop):
                reason = "stop"
                break
        self._remember(ids + toks[:-1])
        return Completion(text=text, token_ids=tuple(toks), logprobs=tuple(lps) if params.logprobs else (), finish_reason=reason)

    def logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt]) -> list[list[float]]:
        out = []
        with timed(self.stats):
            for prompt, cont in zip(prompts, continuations):
                ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
                cids = self.tokenize(cont) if isinstance(cont, str) else list(cont)
                text = self.decode(ids[self._split(ids) :])
                lps = []
                for t in cids:
                    keys, p = self._dist(text)
                    k = EOS if t == EOS else chr(t - 1)
                    lps.append(math.log(p[keys.index(k)]) if k in keys else -math.inf)
                    text += "" if k == EOS else k
                self.stats.scored_tokens += len(cids)
                out.append(lps)
        return out
