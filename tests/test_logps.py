"""Chunked selected-token log-probabilities equal the plain full-vocabulary computation (values and
gradients, 1e-5), never hold more than one chunk of logits, and serve the trainer, RFT and scoring."""
from __future__ import annotations

import copy

import pytest
import torch

from treesearch.train.logps import (causal_lm_loss, chunk_rows, plain_logps, position_logps, selected_logps,
                                    sequence_logps)

torch.set_num_threads(1)


def _case(n=37, h=24, v=1001, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64).float().requires_grad_()
    weight = (torch.randn(v, h, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, b, targets


@pytest.mark.parametrize("chunk", [1, 5, 37, 64])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_equal_the_plain_computation(chunk, bias):
    hidden, weight, b, targets = _case(bias=bias)
    upstream = torch.linspace(-1.5, 2.0, hidden.shape[0])  # a non-uniform gradient into every row
    ours = selected_logps(hidden, weight, targets, b, chunk=chunk)
    (ours * upstream).sum().backward()
    mine = [t.grad.clone() for t in (hidden, weight, b) if t is not None]
    for t in (hidden, weight, b):
        if t is not None:
            t.grad = None
    plain = plain_logps(hidden, weight, targets, b)
    (plain * upstream).sum().backward()
    assert ours.dtype == torch.float32 and ours.shape == targets.shape
    assert torch.allclose(ours, plain, atol=1e-5, rtol=0), (ours - plain).abs().max()
    for got, want in zip(mine, [t.grad for t in (hidden, weight, b) if t is not None]):
        assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


def test_bf16_weights_follow_the_plain_path_within_bf16_rounding():
    hidden, weight, _, targets = _case(bias=False)
    h16, w16 = hidden.detach().bfloat16().requires_grad_(), weight.detach().bfloat16().requires_grad_()
    ours = selected_logps(h16, w16, targets, chunk=8)
    plain = plain_logps(h16, w16, targets)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, plain, atol=1e-5, rtol=0)  # same bf16 logits, same fp32 log-softmax
    ours.sum().backward()
    assert w16.grad.dtype == torch.bfloat16 and h16.grad.dtype == torch.bfloat16


def test_no_more_than_one_chunk_of_logits_is_allocated():
    """No single op of forward + backward allocates more than ~one chunk of logits (the profiler's
    per-op CPU allocation), while the plain path's log-softmax alone allocates the full [N, V]."""
    n, h, v, chunk = 512, 16, 20000, 16
    hidden, weight, _, targets = _case(n=n, h=h, v=v, bias=False)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        selected_logps(hidden, weight, targets, chunk=chunk).sum().backward()
    biggest = max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        plain_logps(hidden, weight, targets).sum().backward()
    plain = max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)
    full = n * v * 4
    assert plain >= full  # the plain path holds the whole [N, V] fp32 logits
    assert biggest <= 1.1 * max(chunk * v * 4, v * h * 4), (biggest, full)  # a chunk, or the [V, H] weight grad


def test_chunk_rows_follow_the_vocabulary():
    assert chunk_rows(151_669) == 2 ** 25 // 151_669 == 221
    assert chunk_rows(10 ** 9) == 1


@pytest.fixture(scope="module")
def policy():
    from treesearch.policy import load_policy

    return load_policy("embedded", device="cpu", dtype="float32")


def test_causal_lm_loss_equals_transformers_labels_loss(policy):
    model, _ = policy
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, model.config.vocab_size, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 15:] = 0
    labels = ids.clone()
    labels[:, :8] = -100
    labels[2, 15:] = -100
    ours = causal_lm_loss(model, ids, mask, labels)
    ours.backward()
    mine = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5
    for k, p in model.named_parameters():
        assert torch.allclose(mine[k], p.grad, atol=1e-5), k


def test_position_logps_equal_full_logits(policy):
    model, _ = policy
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(4))
    rows, cols = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([3, 4, 0, 7, 11])
    targets = torch.tensor([5, 9, 100, 2, 361])
    with torch.no_grad():
        got = position_logps(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, rows, cols, targets)
        full = model(input_ids=ids).logits.log_softmax(-1)[rows, cols, targets]
    assert torch.allclose(got, full, atol=1e-5)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "score_rows": rows, "score_cols": cols,
             "score_targets": targets, "score_seq": torch.tensor([0, 0, 1, 2, 2]), "n_seqs": 4}
    with torch.no_grad():
        sums, counts = sequence_logps(model, batch)
    assert counts.tolist() == [2, 1, 2, 0]
    assert torch.allclose(sums, torch.stack([full[:2].sum(), full[2], full[3:].sum(), torch.tensor(0.0)]), atol=1e-5)


def test_hf_backend_scores_long_continuations_through_the_chunked_head(policy, monkeypatch):
    """With a logits budget too small for a whole continuation, HFBackend.logprobs runs it through
    the decoder and the chunked head: the same numbers as the cached full-logits path."""
    import treesearch.train.logps as lp_mod
    from treesearch.backends.hf import HFBackend

    model, tok = policy
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (5, 9, 14)]
    conts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (3, 30, 12)]
    want = HFBackend.from_model(model, tok).logprobs(prompts, conts)
    monkeypatch.setattr(lp_mod, "CHUNK_ELEMENTS", 362 * 8)  # 8 logit rows: the 30- and 12-token ones overflow it
    backend = HFBackend.from_model(model, tok)
    got = backend.logprobs(prompts, conts)
    assert [len(x) for x in got] == [3, 30, 12]
    for a, b in zip(got, want):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
    assert backend.stats.scored_tokens >= sum(len(c) for c in conts)


def test_autocast_recomputes_in_the_forward_dtype():
    """Under bf16 autocast (CUDA's mixed precision; CPU autocast here) the backward recomputes the
    chunks in bf16 as the forward did: values equal the plain path under the same autocast, and the
    gradients agree with it to bf16 rounding."""
    hidden, weight, _, targets = _case(bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = selected_logps(hidden, weight, targets, chunk=7)
        plain = plain_logps(hidden, weight, targets)
    assert torch.allclose(ours, plain, atol=1e-5)
    ours.sum().backward()
    mine = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    plain.sum().backward()
    assert hidden.grad.dtype == mine[0].dtype == torch.float32
    for got, want in zip(mine, (hidden.grad, weight.grad)):
        assert torch.allclose(got, want, atol=2e-2, rtol=2e-2), (got - want).abs().max()
