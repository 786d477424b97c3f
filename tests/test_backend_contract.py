"""One contract for every backend: HF and vLLM (the CPU build here, the official wheel on a GPU).

Both run on every machine `make test` sets up; the vLLM cases share one engine (conftest).
"""
import pytest

from treesearch.backends.base import SamplingParams


@pytest.fixture(params=["hf", pytest.param("vllm", marks=pytest.mark.xdist_group("vllm"))])
def backend(request, policy):
    if request.param == "hf":
        from treesearch.backends.hf import HFBackend

        model, tokenizer = policy
        return HFBackend.from_model(model, tokenizer)
    return request.getfixturevalue("vllm_backend")


@pytest.fixture()
def prompts(backend, arithmetic):
    return [backend.encode_prompt(p.prompt) for p in arithmetic.problems("test", 4, seed=0, n_ops=3)]


def test_n_completions_per_prompt_with_aligned_logprobs(backend, prompts):
    outs = backend.generate(prompts, SamplingParams(n=3, temperature=1.0, max_tokens=40, seed=0))
    assert len(outs) == len(prompts) and all(len(o) == 3 for o in outs)
    for o in outs:
        for c in o:
            assert len(c.logprobs) == len(c.token_ids) > 0
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "eos", "length")
            if c.finish_reason == "eos":
                assert c.token_ids[-1] in backend.eos_token_ids and backend.eos_token_id in backend.eos_token_ids
            if c.finish_reason == "length":
                assert len(c.token_ids) == 40


def test_greedy_is_deterministic_and_solves_the_format(backend, prompts):
    p = SamplingParams(temperature=0.0, max_tokens=96)
    a = backend.generate(prompts, p)
    b = backend.generate(prompts[::-1], p)[::-1]
    assert [o[0].token_ids for o in a] == [o[0].token_ids for o in b]
    assert all(o[0].finish_reason == "eos" and "Answer:" in o[0].text for o in a)


def test_seeded_sampling_is_reproducible_and_batch_independent(backend, prompts):
    p = SamplingParams(n=4, temperature=1.0, max_tokens=30, seed=123)
    batch = backend.generate(prompts, p)
    alone = backend.generate(prompts[2:3], p)
    again = backend.generate(prompts, p)
    assert [c.token_ids for c in batch[2]] == [c.token_ids for c in alone[0]]
    assert [[c.token_ids for c in o] for o in batch] == [[c.token_ids for c in o] for o in again]
    other = backend.generate(prompts, SamplingParams(n=4, temperature=1.0, max_tokens=30, seed=124))
    assert [[c.token_ids for c in o] for o in batch] != [[c.token_ids for c in o] for o in other]


def test_stop_string_ends_a_step(backend, prompts):
    outs = backend.generate(prompts, SamplingParams(n=2, temperature=0.7, max_tokens=40, stop=("\n",), seed=1))
    for o in outs:
        for c in o:
            if c.finish_reason == "stop":
                assert c.text.endswith("\n") and c.text.count("\n") == 1
            assert c.text == backend.decode(c.token_ids[:-1] if c.finish_reason == "eos" else c.token_ids)
    # text is the decode of whole tokens: it cannot leave out the stop string
    with pytest.raises(ValueError, match="include_stop_str_in_output"):
        SamplingParams(stop=("\n",), include_stop_str_in_output=False)


def test_max_tokens_is_honoured(backend, prompts):
    outs = backend.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=5, seed=0))
    assert all(len(c.token_ids) <= 5 for o in outs for c in o)
    assert any(c.finish_reason == "length" for o in outs for c in o)


def test_scoring_matches_sampling_logprobs(backend, prompts):
    outs = backend.generate(prompts, SamplingParams(temperature=1.0, max_tokens=30, seed=5))
    conts = [list(o[0].token_ids) for o in outs]
    scored = backend.logprobs(prompts, conts)
    for o, s in zip(outs, scored):
        assert len(s) == len(o[0].logprobs)
        assert max(abs(a - b) for a, b in zip(s, o[0].logprobs)) < 1e-3


def test_step_continuation_matches_one_shot_greedy(backend, prompts):
    """Decoding step by step from token-id contexts gives the same text as one greedy call."""
    whole = backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=96))
    ctx = [list(p) for p in prompts]
    texts = [""] * len(prompts)
    for _ in range(8):
        steps = backend.generate(ctx, SamplingParams(temperature=0.0, max_tokens=40, stop=("\n",)))
        for i, s in enumerate(steps):
            if ctx[i] and ctx[i][-1] == backend.eos_token_id:
                continue
            ctx[i] = ctx[i] + list(s[0].token_ids)
            texts[i] += s[0].text
    assert texts == [o[0].text for o in whole]


def test_stats_count_tokens(backend, prompts):
    before = backend.stats.snapshot()
    outs = backend.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=20, seed=0))
    d = backend.stats.since(before)
    assert d.calls == 1
    assert d.prompt_tokens == sum(map(len, prompts))
    assert d.decode_tokens == sum(len(c.token_ids) for o in outs for c in o)
    # HF prefills a prompt once for its n samples; each vLLM sample is a request that recomputes at
    # least the prompt's last, partial KV block
    n_prefills = 1 if backend.__class__.__name__ == "HFBackend" else 2
    assert 0 < d.prefill_tokens <= n_prefills * d.prompt_tokens
