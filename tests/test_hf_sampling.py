"""The HF backend's seeded sampler: counter-based uniforms and inverse-CDF draws, and on the real policy."""
import numpy as np
import torch

from treesearch.backends.hf import _inverse_cdf, _splitmix64, _uniforms


def test_uniforms_are_a_pure_function_of_seed_and_step_and_look_uniform():
    seeds = [12345 + 7919 * i for i in range(4000)]
    a = _uniforms(seeds, 3)
    assert a == _uniforms(seeds, 3)
    assert a != _uniforms(seeds, 4), "the token index must change the draw"
    u = np.array(a)
    assert ((0 <= u) & (u < 1)).all()
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    chi2 = ((counts - 400) ** 2 / 400).sum()
    assert chi2 < 30, counts  # 9 dof: p < 0.001 at 27.9
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.06, "neighbouring rows' draws are correlated"
    assert _splitmix64(0) != _splitmix64(1) and 0 <= _splitmix64(2**64 - 1) < 2**64


def test_inverse_cdf_matches_the_distribution_and_never_picks_a_zero():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    n = 20000
    u = torch.tensor(_uniforms([99 + i for i in range(n)], 0), dtype=torch.float64)
    draws = _inverse_cdf(probs.expand(n, -1), u)
    freq = torch.bincount(draws, minlength=6).double() / n
    assert freq[[0, 2, 5]].sum() == 0
    assert torch.allclose(freq, probs.double(), atol=0.015), freq
    # edges: u = 0 takes the first token with mass, u just below 1 the last one
    edge = _inverse_cdf(probs.expand(2, -1), torch.tensor([0.0, 1 - 2.0**-53], dtype=torch.float64))
    assert edge.tolist() == [1, 4]


def test_seeded_generation_follows_the_models_next_token_distribution(hf_backend, arithmetic):
    from collections import Counter

    from treesearch.backends.base import SamplingParams
    from treesearch.search import make_trees

    problem = arithmetic.problems("test", 5, seed=0, n_ops=3)[4]  # a prompt whose first step is uncertain
    ids = list(make_trees(hf_backend, [problem])[0].prompt_ids)
    with torch.no_grad():
        p = torch.softmax(hf_backend.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    n = 2000
    outs = hf_backend.generate([ids], SamplingParams(n=n, temperature=1.0, max_tokens=2, seed=7))[0]
    counts = Counter(o.token_ids[0] for o in outs)
    emp = torch.zeros_like(p)
    for tok, c in counts.items():
        emp[tok] = c / n
    assert p.max() < 0.9, "the prompt should leave the first token uncertain"
    assert 0.5 * (emp - p).abs().sum() < 0.06  # total variation; sampling noise alone is about 0.02
    again = hf_backend.generate([ids], SamplingParams(n=n, temperature=1.0, max_tokens=2, seed=7))[0]
    assert [o.token_ids for o in again] == [o.token_ids for o in outs]
