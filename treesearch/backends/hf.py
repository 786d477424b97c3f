"""Hugging Face transformers backend (CPU or CUDA) with a prefix KV cache.

The decode loop is our own rather than `model.generate`, because search needs
three things `generate` does not give together:

* **Shared prefixes computed once.** `n` samples of one prompt are prefilled
  once and the KV cache is repeated `n` times. Every finished sequence's KV
  (prompt + completion, all but the last sampled token) goes into an LRU
  `PrefixCache` keyed by token ids, so expanding a node, or continuing a
  segment, later prefills only the tokens that are new. Positions come from the
  attention mask (not the padded column), so cached keys stay valid whatever
  padding the next batch has.
* **Per-row seeded sampling.** With `seed` set, row r of prompt p draws its
  t-th token by inverse-CDF sampling with a uniform that is a counter-based
  hash of (seed, p's token ids, r, t) (`_uniforms`): a sample does not depend
  on what else shares its batch, and one vectorized search over the CDF serves
  the whole batch (a torch.Generator per row cost a multinomial call per row
  and token, 12% of a search's time on the embedded policy).
* **vLLM-shaped outputs**: raw log-probabilities, stop strings, finish reasons.
  Each row is detokenized incrementally (`StreamDecoder`: a few tokens decoded
  per step, not the whole row) and stop strings are searched in the new tail
  only; a row ends at the token that completes a stop string, or at any of
  `eos_token_ids`, and its text is the exact decode of its ids.

Batches are left padded. `stats` counts prompt, prefilled, cached, decoded and
scored tokens, so searches can report what they really computed.
"""
from __future__ import annotations

import collections
import inspect
import zlib
from pathlib import Path
from typing import Sequence

import torch

from treesearch.backends.base import BackendStats, Completion, Prompt, SamplingParams, TextMixin, timed
from treesearch.backends.text import StreamDecoder, end_token_ids, find_stop, pad_id
from treesearch.prompting import CHAT

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [heads, seq, head_dim]


class PrefixCache:
    """LRU map from a token-id prefix to its per-layer KV tensors, bounded in tokens."""

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.tokens = 0
        self._entries: collections.OrderedDict[tuple[int, ...], KV] = collections.OrderedDict()
        self._lengths: collections.Counter[int] = collections.Counter()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, ids: tuple[int, ...], kv: KV) -> None:
        if not ids or self.max_tokens <= 0 or len(ids) > self.max_tokens:
            return
        if ids in self._entries:
            self._entries.move_to_end(ids)
            return
        self._entries[ids] = kv
        self._lengths[len(ids)] += 1
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            old, _ = self._entries.popitem(last=False)
            self.tokens -= len(old)
            self._lengths[len(old)] -= 1
            if not self._lengths[len(old)]:
                del self._lengths[len(old)]

    def longest(self, ids: Sequence[int], max_len: int) -> tuple[int, KV | None]:
        """The longest usable cached prefix of `ids`: (length <= max_len, kv covering at least that).

        An entry for all of `ids` serves its first `max_len` positions (the caller must still
        compute the last tokens to get their logits)."""
        for length in sorted(self._lengths, reverse=True):
            if length > len(ids):
                continue
            key = tuple(ids[:length])
            kv = self._entries.get(key)
            if kv is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return min(length, max_len), kv
        self.misses += 1
        return 0, None

    def clear(self) -> None:
        self._entries.clear()
        self._lengths.clear()
        self.tokens = 0


def _row_seed(seed: int, ids: Sequence[int], index: int) -> int:
    h = zlib.crc32(",".join(map(str, ids)).encode())
    return (seed * 1_000_003 + h * 7919 + index) % (2**63 - 1)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of SplitMix64 (Steele et al. 2014): a well-mixed 64-bit hash of a 64-bit counter."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _uniforms(row_seeds: Sequence[int], step: int) -> list[float]:
    """u in [0, 1) for each row seed at token index `step`: a pure function of (seed, step), 53 random
    bits. Every live row of a decode loop is at the same step, so the step is hashed once."""
    h = _splitmix64(step)
    return [(_splitmix64((seed ^ h) & _MASK64) >> 11) * 2.0**-53 for seed in row_seeds]


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Token ids [B] drawn from probs [B, V] with uniforms u [B]: the first index whose cumulative
    mass exceeds u·total (float64, so a zero-probability token is never the answer)."""
    cdf = probs.double().cumsum(-1)
    target = (u.double() * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=probs.shape[-1] - 1)


def _filter_top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set reaching top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    out = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return out / out.sum(-1, keepdim=True)


class HFBackend(TextMixin):
    """`Backend` over a transformers causal LM. Build with `from_pretrained` or `from_model`."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        template: str = CHAT,
        system: str | None = None,
        max_batch: int = 256,
        prefix_cache_tokens: int = 200_000,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.system = system
        self.max_batch = max_batch
        self.cache = PrefixCache(prefix_cache_tokens)
        self.stats = BackendStats()
        self.device = next(model.parameters()).device
        self.eos_token_ids = end_token_ids(tokenizer, getattr(model, "generation_config", None))
        eos = tokenizer.eos_token_id
        self.eos_token_id = int(eos) if eos is not None else min(self.eos_token_ids)
        self.pad_token_id = pad_id(tokenizer)  # filler under the attention mask only
        self.name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        # transformers 5.x renamed the `past_key_values` argument and output to `cache`.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def _forward(self, past, **kw):
        out = self.model(**kw, **{self._cache_kw: past}, use_cache=True)
        new = getattr(out, "cache", None)
        return out, (new if new is not None else out.past_key_values)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "auto", dtype: str = "auto", **kw) -> "HFBackend":
        from treesearch.policy import load_policy

        model, tokenizer = load_policy(path, device=device, dtype=dtype)
        return cls(model, tokenizer, **kw)

    @classmethod
    def from_model(cls, model, tokenizer, **kw) -> "HFBackend":
        return cls(model, tokenizer, **kw)

    def reset_cache(self) -> None:
        self.cache.clear()

    # -- prefill ------------------------------------------------------------------------------
    @torch.no_grad()
    def _prefill(self, seqs: list[list[int]], need: list[int]):
        """Run `seqs` through the model reusing cached prefixes; row i computes at least its last need[i] tokens.

        Rows are grouped by how many tokens they must compute, one forward pass per group, so a
        row that misses the cache does not make the others recompute as much as it does. Returns
        (cache, attention mask [B, W], logits of the last max(need) positions [B, max(need), V]).
        """
        lens = [len(s) for s in seqs]
        hits = [self.cache.longest(s, max_len=n_tok - k) for s, n_tok, k in zip(seqs, lens, need)]
        todo = [n_tok - c for n_tok, (c, _) in zip(lens, hits)]
        order = sorted(range(len(seqs)), key=lambda i: todo[i])
        groups: list[list[int]] = []
        for i in order:  # a new group when a row would more than double the group's window (+8 tokens slack)
            if groups and todo[i] <= 2 * todo[groups[-1][0]] + 8:
                groups[-1].append(i)
            else:
                groups.append([i])
        if len(groups) == 1:
            return self._prefill_group(seqs, need, hits)
        parts = [self._prefill_group([seqs[i] for i in g], [need[i] for i in g], [hits[i] for i in g]) for g in groups]
        width = max(a.shape[1] for _, a, _ in parts)
        keep = max(need)
        rows = len(seqs)
        first_past = parts[0][0]
        layers = []
        for li in range(len(first_past.layers)):
            k0 = first_past.layers[li].keys
            ks = torch.zeros((rows, k0.shape[1], width, k0.shape[3]), dtype=k0.dtype, device=k0.device)
            vs = torch.zeros_like(ks)
            for g, (past, attn, _) in zip(groups, parts):
                w = attn.shape[1]
                idx = torch.tensor(g, device=k0.device)
                ks[idx, :, width - w :] = past.layers[li].keys
                vs[idx, :, width - w :] = past.layers[li].values
            layers.append((ks, vs))
        attn_all = torch.zeros((rows, width), dtype=parts[0][1].dtype, device=self.device)
        logits_all = torch.zeros((rows, keep, parts[0][2].shape[-1]), dtype=parts[0][2].dtype, device=self.device)
        for g, (_, attn, logits) in zip(groups, parts):
            idx = torch.tensor(g, device=self.device)
            attn_all[idx, width - attn.shape[1] :] = attn
            logits_all[idx, keep - logits.shape[1] :] = logits
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=layers), attn_all, logits_all

    @torch.no_grad()
    def _prefill_group(self, seqs: list[list[int]], need: list[int], hits):
        lens = [len(s) for s in seqs]
        window = max(n_tok - c for n_tok, (c, _) in zip(lens, hits))
        width = max(lens)
        ctx = width - window  # columns served from cache
        batch = len(seqs)
        input_ids = torch.full((batch, window), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((batch, window), dtype=torch.long)
        attn = torch.zeros((batch, width), dtype=torch.long)
        layers = None
        if ctx > 0:
            cfg = self.model.config
            n_layers = cfg.num_hidden_layers
            sample = next(kv for _, kv in hits if kv is not None)
            heads, head_dim = sample[0][0].shape[0], sample[0][0].shape[2]
            dtype = sample[0][0].dtype
            layers = [
                (
                    torch.zeros((batch, heads, ctx, head_dim), dtype=dtype, device=self.device),
                    torch.zeros((batch, heads, ctx, head_dim), dtype=dtype, device=self.device),
                )
                for _ in range(n_layers)
            ]
        computed = cached = 0
        for i, (seq, n_tok, (c, kv)) in enumerate(zip(seqs, lens, hits)):
            used = max(0, n_tok - window)  # cached tokens this row uses (<= c)
            todo = seq[used:]
            input_ids[i, window - len(todo) :] = torch.tensor(todo)
            position_ids[i, window - len(todo) :] = torch.arange(used, n_tok)
            attn[i, width - n_tok :] = 1
            if used:
                for (k_dst, v_dst), (k_src, v_src) in zip(layers, kv):
                    k_dst[i, :, ctx - used :] = k_src[:, :used]
                    v_dst[i, :, ctx - used :] = v_src[:, :used]
            computed += len(todo)
            cached += used
        from transformers import DynamicCache

        past = DynamicCache(ddp_cache_data=layers) if layers is not None else DynamicCache()
        out, past = self._forward(
            past,
            input_ids=input_ids.to(self.device),
            attention_mask=attn.to(self.device),
            position_ids=position_ids.to(self.device),
            logits_to_keep=max(need),
        )
        self.stats.prompt_tokens += sum(lens)
        self.stats.prefill_tokens += computed
        self.stats.cached_tokens += cached
        return past, attn.to(self.device), out.logits.float()

    def _remember(self, past, row: int, ids: list[int]) -> None:
        """Put row `row`'s KV (the last len(ids) columns) into the prefix cache under `ids`."""
        if self.cache.max_tokens <= 0 or not ids:
            return
        n = len(ids)
        kv = [(layer.keys[row, :, -n:].clone(), layer.values[row, :, -n:].clone()) for layer in past.layers]
        self.cache.put(tuple(ids), kv)

    # -- generate -----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        seqs = [self._ids(p) for p in prompts]
        results: list[list[Completion]] = []
        per_chunk = max(1, self.max_batch // params.n)
        with timed(self.stats):
            for start in range(0, len(seqs), per_chunk):
                results.extend(self._generate_chunk(seqs[start : start + per_chunk], params))
        return results

    @torch.no_grad()
    def _generate_chunk(self, seqs: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        n = params.n
        past, attn, logits = self._prefill(seqs, [1] * len(seqs))
        for i, seq in enumerate(seqs):
            self._remember(past, i, seq)
        logits = logits[:, -1]
        if n > 1:
            past.batch_repeat_interleave(n)
            attn = attn.repeat_interleave(n, dim=0)
            logits = logits.repeat_interleave(n, dim=0)
        rows = len(seqs) * n
        prompt_of = [r // n for r in range(rows)]
        row_seeds = None
        if params.seed is not None and params.temperature > 0:
            row_seeds = [_row_seed(params.seed, seqs[prompt_of[r]], r % n) for r in range(rows)]
        out = _Rows(rows, self.token_text, params, self.eos_token_ids)
        active = list(range(rows))  # global row index of each batch row
        while True:
            logp = torch.log_softmax(logits, dim=-1)
            u = None
            if row_seeds is not None:
                # rows start together and gain one token per step, so every live row is at this step
                u = torch.tensor(_uniforms([row_seeds[r] for r in active], len(out.ids[active[0]])),
                                 dtype=torch.float64, device=self.device)
            tokens = self._sample(logits, u, params)
            chosen_lp = logp.gather(1, tokens[:, None])[:, 0].tolist()
            self.stats.decode_tokens += len(active)
            keep = []
            for j, (r, tok) in enumerate(zip(active, tokens.tolist())):
                if not out.push(r, tok, chosen_lp[j]):
                    keep.append(j)
                else:  # its KV covers prompt + all but the last sampled token
                    self._remember(past, j, seqs[prompt_of[r]] + out.ids[r][:-1])
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=self.device)
                past.batch_select_indices(idx)
                attn = attn[idx]
                tokens = tokens[idx]
                active = [active[j] for j in keep]
            attn = torch.cat([attn, torch.ones((len(active), 1), dtype=attn.dtype, device=self.device)], dim=1)
            pos = torch.tensor([len(seqs[prompt_of[r]]) + len(out.ids[r]) - 1 for r in active], device=self.device)
            step, past = self._forward(past, input_ids=tokens[:, None], attention_mask=attn, position_ids=pos[:, None])
            logits = step.logits[:, -1].float()
        return out.completions(len(seqs), n)

    @staticmethod
    def _sample(logits: torch.Tensor, u: torch.Tensor | None, params: SamplingParams) -> torch.Tensor:
        """Next tokens [B]: argmax at temperature 0, else a draw from the tempered, top-p filtered
        distribution, by the per-row uniforms `u` [B] when seeded (torch's global RNG otherwise)."""
        if params.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
        probs = _filter_top_p(probs, params.top_p)
        if u is None:
            return torch.multinomial(probs, 1)[:, 0]
        return _inverse_cdf(probs, u)

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt]) -> list[list[float]]:
        """log p of each continuation token given the prompt and the tokens before it.

        Rows go through the prefix-cached prefill in groups whose [rows, tokens, V] logits stay within
        `logps.CHUNK_ELEMENTS` fp32 values; a continuation too long for that alone runs through the
        decoder uncached, its hidden states projected in chunks (`logps.selected_logps`), so no call
        holds a 2,048-token × 151k-vocabulary logits tensor (a model that rescales its logits after
        the head, `logps.head_of` None, takes the full-logits path for it instead).
        """
        from treesearch.train.logps import CHUNK_ELEMENTS, head_of, selected_logps

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        vocab = self.model.get_output_embeddings().weight.shape[0]
        split = head_of(self.model)  # (decoder, lm head), or None for a model that rescales its logits
        ps = [self._ids(p) for p in prompts]
        cs = [self._ids(c) for c in continuations]
        out: list[list[float] | None] = [None] * len(ps)
        groups: list[list[int]] = []
        for i in sorted(range(len(ps)), key=lambda i: len(cs[i])):
            keep = len(cs[i]) + 1
            g = groups[-1] if groups else None
            if g is not None and len(g) < self.max_batch and (len(g) + 1) * keep * vocab <= CHUNK_ELEMENTS:
                g.append(i)
            else:
                groups.append([i])
        with timed(self.stats):
            for g in groups:
                seqs = [ps[i] + cs[i] for i in g]
                before = self.stats.prefill_tokens
                if len(g) == 1 and (len(cs[g[0]]) + 1) * vocab > CHUNK_ELEMENTS and split is not None:
                    decoder, head = split  # one long continuation: uncached, chunked head
                    ids = torch.tensor([seqs[0]], device=self.device)
                    hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state[0]
                    n_p, c = len(ps[g[0]]), cs[g[0]]
                    lp = selected_logps(hidden[n_p - 1:n_p - 1 + len(c)], head.weight,
                                        torch.tensor(c, device=self.device), getattr(head, "bias", None))
                    out[g[0]] = lp.tolist()
                    self.stats.scored_tokens += len(seqs[0])
                    continue
                _, attn, logits = self._prefill(seqs, [len(cs[i]) + 1 for i in g])
                # scoring work is reported as scored_tokens, not prefill
                scored = self.stats.prefill_tokens - before
                self.stats.prefill_tokens = before
                self.stats.scored_tokens += scored
                logp = torch.log_softmax(logits, dim=-1)
                window = logits.shape[1]
                for row, i in enumerate(g):
                    c = cs[i]
                    cols = torch.arange(window - len(c) - 1, window - 1)
                    out[i] = logp[row, cols, torch.tensor(c)].tolist()
        return out


class _Rows:
    """The rows one `_generate_chunk` samples: their tokens, log-probs, decoded text and finish reasons."""

    def __init__(self, rows: int, token_text, params: SamplingParams, ends):
        self.params, self.ends = params, ends
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.lps: list[list[float]] = [[] for _ in range(rows)]
        self.streams = [StreamDecoder(token_text) for _ in range(rows)]
        self.texts = [""] * rows
        self.reasons: list[str | None] = [None] * rows
        self.max_stop = max((len(s) for s in params.stop), default=0)

    def push(self, r: int, tok: int, lp: float) -> bool:
        """Row r's next token; True when the row has finished (eos, a stop string, or max_tokens)."""
        params = self.params
        self.ids[r].append(tok)
        self.lps[r].append(lp)
        if tok in self.ends:
            self.reasons[r] = "eos"
        else:
            stream = self.streams[r]
            seen = len(stream.text)
            if stream.push(tok) and params.stop:
                if find_stop(stream.text, params.stop, seen - self.max_stop + 1) is not None:
                    self.reasons[r] = "stop"  # whole tokens: the text may run past the stop string
            if self.reasons[r] is None and len(self.ids[r]) >= params.max_tokens:
                self.reasons[r] = "length"
        if self.reasons[r] is None:
            return False
        self.texts[r] = self.streams[r].finish()
        return True

    def completions(self, prompts: int, n: int) -> list[list[Completion]]:
        """n completions per prompt (rows are prompt-major)."""
        return [
            [
                Completion(
                    text=self.texts[p * n + k],
                    token_ids=tuple(self.ids[p * n + k]),
                    logprobs=tuple(self.lps[p * n + k]) if self.params.logprobs else (),
                    finish_reason=self.reasons[p * n + k],
                )
                for k in range(n)
            ]
            for p in range(prompts)
        ]
