"""The HF backend's seeded sampler: counter-based uniforms and inverse-CDF draws (pure tensor logic)."""
import numpy as np
import torch

from treesearch.backends.hf import _inverse_cdf, _splitmix64, _uniforms


def test_uniforms_are_a_pure_function_of_seed_and_step_and_look_uniform():
    seeds = [12345 + 7919 * i for i in range(4000)]
    a = _uniforms(seeds, [3] * len(seeds))
    assert a == _uniforms(seeds, [3] * len(seeds))
    assert a != _uniforms(seeds, [4] * len(seeds)), "the token index must change the draw"
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
    u = torch.tensor(_uniforms([99 + i for i in range(n)], [0] * n), dtype=torch.float64)
    draws = _inverse_cdf(probs.expand(n, -1), u)
    freq = torch.bincount(draws, minlength=6).double() / n
    assert freq[[0, 2, 5]].sum() == 0
    assert torch.allclose(freq, probs.double(), atol=0.015), freq
    # edges: u = 0 takes the first token with mass, u just below 1 the last one
    edge = _inverse_cdf(probs.expand(2, -1), torch.tensor([0.0, 1 - 2.0**-53], dtype=torch.float64))
    assert edge.tolist() == [1, 4]
