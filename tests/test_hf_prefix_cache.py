"""The HF backend's prefix KV cache: reuse is exact and actually saves prefill."""
import torch

from treesearch.backends.base import SamplingParams
from treesearch.backends.hf import HFBackend, PrefixCache


def _full_logprobs(model, ids, cont):
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids + cont])).logits.float(), -1)[0]
    return [lp[len(ids) - 1 + i, t].item() for i, t in enumerate(cont)]


def test_n_samples_share_one_prefill(hf_backend, arithmetic):
    ids = hf_backend.encode_prompt(arithmetic.problems("test", 1, seed=0)[0].prompt)
    hf_backend.generate([ids], SamplingParams(n=8, temperature=1.0, max_tokens=10, seed=0))
    assert hf_backend.stats.prefill_tokens == len(ids)


def test_continuation_reuses_the_cache_exactly(policy, arithmetic):
    model, tok = policy
    b = HFBackend.from_model(model, tok)
    ids = [b.encode_prompt(p.prompt) for p in arithmetic.problems("test", 3, seed=1)]
    first = b.generate(ids, SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=0, stop=("\n",)))
    ctx = [p + list(o[k].token_ids) for p, o in zip(ids, first) for k in range(2)]
    before = b.stats.snapshot()
    second = b.generate(ctx, SamplingParams(temperature=1.0, max_tokens=12, seed=1))
    d = b.stats.since(before)
    assert d.cached_tokens >= sum(len(c) - 1 for c in ctx) - 1  # all but the last token of each context
    assert d.prefill_tokens < 0.2 * d.prompt_tokens
    for c, o in zip(ctx, second):  # logprobs equal a fresh uncached forward pass
        ref = _full_logprobs(model, c, list(o[0].token_ids))
        assert max(abs(a - b) for a, b in zip(ref, o[0].logprobs)) < 1e-4
    # and the same continuation without any cache gives the same tokens
    cold = HFBackend.from_model(model, tok, prefix_cache_tokens=0)
    again = cold.generate(ctx, SamplingParams(temperature=1.0, max_tokens=12, seed=1))
    assert [o[0].token_ids for o in again] == [o[0].token_ids for o in second]
    assert cold.stats.cached_tokens == 0


def test_prefix_cache_lru_bound():
    cache = PrefixCache(max_tokens=10)
    kv = [(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2))]
    cache.put((1, 2, 3, 4), kv)
    cache.put((5, 6, 7, 8), kv)
    assert cache.longest([1, 2, 3, 4, 9], max_len=5)[0] == 4
    cache.put((9, 9, 9, 9), kv)  # evicts the least recently used: (5,6,7,8)
    assert cache.tokens <= 10
    assert cache.longest([5, 6, 7, 8, 1], max_len=5)[0] == 0
    # an entry for the whole sequence serves all but the positions the caller must compute
    assert cache.longest([1, 2, 3, 4], max_len=3)[0] == 3


def test_a_cache_miss_does_not_make_cached_rows_recompute(policy, arithmetic):
    """Rows are prefilled in groups by uncached length; results equal uncached forwards."""
    model, tok = policy
    b = HFBackend.from_model(model, tok)
    probs = arithmetic.problems("test", 2, seed=3)
    warm = b.encode_prompt(probs[0].prompt)
    first = b.generate([warm], SamplingParams(temperature=0.0, max_tokens=30))
    long_ctx = warm + list(first[0][0].token_ids)  # cached up to its last token
    cold = b.encode_prompt(probs[1].prompt)  # never seen
    before = b.stats.snapshot()
    outs = b.generate([long_ctx, cold], SamplingParams(temperature=1.0, max_tokens=8, seed=0))
    d = b.stats.since(before)
    assert d.prefill_tokens == 1 + len(cold)  # not len(cold) for both rows
    for ctx, o in zip([long_ctx, cold], outs):
        ref = _full_logprobs(model, ctx, list(o[0].token_ids))
        assert max(abs(x - y) for x, y in zip(ref, o[0].logprobs)) < 1e-4
    scored = b.logprobs([long_ctx, cold], [list(o[0].token_ids) for o in outs])
    for s_, o in zip(scored, outs):
        assert max(abs(x - y) for x, y in zip(s_, o[0].logprobs)) < 1e-4
