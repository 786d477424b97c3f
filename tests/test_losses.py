"""Preference losses: equal to TRL's DPO on the same batch, hand-computed values, reductions to DPO."""
from __future__ import annotations

import copy
import math
import os
import tempfile

import pytest
import torch

from treesearch.train import losses

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

POLICY = "embedded"


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


# ----------------------------------------------------------------- pure functions, hand-computed


def test_sigmoid_dpo_hand_values():
    h = torch.tensor([1.0, -2.0, 0.0])
    got = losses.sigmoid_dpo_loss(h, beta=0.5)
    want = [math.log1p(math.exp(-0.5)), math.log1p(math.exp(1.0)), math.log(2.0)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)


def test_reward_margin_is_difference_of_log_ratios():
    h = losses.reward_margin(torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5]))
    assert h.item() == pytest.approx((-3 + 4) - (-5 + 4.5))  # 1.5


def test_conservative_dpo_hand_values():
    h, beta, eps = torch.tensor([2.0, -1.0]), 0.3, 0.2
    got = losses.conservative_dpo_loss(h, beta=beta, epsilon=eps)
    want = [-(1 - eps) * logsig(beta * x) - eps * logsig(-beta * x) for x in (2.0, -1.0)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # ε = 0.5 makes the loss symmetric in h: no preference is learned
    sym = losses.conservative_dpo_loss(torch.tensor([3.0, -3.0]), beta=1.0, epsilon=0.5)
    assert sym[0].item() == pytest.approx(sym[1].item(), abs=1e-6)


def test_step_apo_hand_values():
    h = torch.tensor([1.0, 1.0])
    qw, ql = torch.tensor([0.9, 0.2]), torch.tensor([-0.8, 0.1])
    got = losses.step_apo_loss(h, beta=0.3, alpha=1.0, value_w=qw, value_l=ql)
    want = [-logsig(0.3 * 1.0 - 1.0 * (0.9 + 0.8)), -logsig(0.3 * 1.0 - 1.0 * (0.2 - 0.1))]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # a larger value gap asks for a larger margin: same h, larger loss
    assert got[0] > got[1]


def test_preference_loss_combines_smoothing_and_advantage():
    h, gap = torch.tensor([0.7]), torch.tensor([0.4])
    got = losses.preference_loss(h, beta=0.5, epsilon=0.1, apo_alpha=2.0, value_gap=gap).item()
    z = 0.5 * 0.7 - 2.0 * 0.4
    assert got == pytest.approx(-0.9 * logsig(z) - 0.1 * logsig(-z), abs=1e-6)


def test_visit_label_smoothing_hand_values():
    eps = losses.visit_label_smoothing(torch.tensor([1, 1, 3, 5, 0]), torch.tensor([4, 1, 1, 0, 2]))
    # the loser's visit share, capped at 0.5: 4/5 -> 0.5; 1/2; 1/4; N_l = 0 counts as 1 -> 1/6; N_w = 0 -> 2/3 -> 0.5
    assert eps.tolist() == pytest.approx([0.5, 0.5, 0.25, 1 / 6, 0.5], abs=1e-6)


def test_visit_smoothing_keeps_lopsided_pairs_learning():
    """The more the search favoured the winner, the smaller ε and the larger the push on the margin."""
    eps = losses.visit_label_smoothing(torch.tensor([2, 4, 16]), torch.tensor([2, 2, 2]))
    assert eps[0] > eps[1] > eps[2]
    h = torch.zeros(3, requires_grad=True)
    losses.conservative_dpo_loss(h, beta=0.5, epsilon=eps).sum().backward()
    assert h.grad[0] == pytest.approx(0.0, abs=1e-7)  # equal visits: no pull either way
    assert (h.grad[1:] < 0).all() and h.grad[2] < h.grad[1]


def test_nll_is_per_token_mean_over_batch():
    got = losses.nll_loss(torch.tensor([-3.0, -5.0]), torch.tensor([2, 3]))
    assert got.item() == pytest.approx(8.0 / 5.0)


def test_token_logps_and_row_sums():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g)
    targets = torch.tensor([0, 6, 3, 3, 1])
    lp = losses.token_logps(logits, targets)
    want = logits.log_softmax(-1)[torch.arange(5), targets]
    assert torch.allclose(lp, want, atol=1e-6)
    sums = losses.sum_by_row(lp, torch.tensor([0, 0, 2, 2, 2]), 3)
    assert torch.allclose(sums, torch.stack([want[:2].sum(), torch.tensor(0.0), want[2:].sum()]), atol=1e-6)


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_variants_reduce_to_dpo_at_zero_weight(beta):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(16, generator=g) * 5
    dpo = losses.sigmoid_dpo_loss(h, beta=beta)
    gap = torch.randn(16, generator=g)
    assert torch.allclose(losses.conservative_dpo_loss(h, beta=beta, epsilon=0.0), dpo, atol=1e-7)
    assert torch.allclose(losses.conservative_dpo_loss(h, beta=beta, epsilon=torch.zeros(16)), dpo, atol=1e-7)
    assert torch.allclose(losses.step_apo_loss(h, beta=beta, alpha=0.0, value_w=gap, value_l=-gap), dpo, atol=1e-7)
    assert torch.allclose(losses.preference_loss(h, beta=beta), dpo, atol=1e-7)
    assert torch.allclose(losses.preference_loss(h, beta=beta, epsilon=0.0, apo_alpha=0.0, value_gap=gap), dpo,
                          atol=1e-7)


def test_dpo_gradient_pushes_margin_up():
    h = torch.tensor([0.3, -0.4], requires_grad=True)
    losses.preference_loss(h, beta=0.1).sum().backward()
    assert (h.grad < 0).all()


# ----------------------------------------------------------------- against TRL on the real tiny model


@pytest.fixture(scope="module")
def setup():
    from treesearch.policy import load_policy
    from treesearch.prompting import render_prompt

    model, tok = load_policy(POLICY, device="cpu", dtype="float32")
    ref = copy.deepcopy(model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a reference unlike the policy, so the loss is not log 2
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    q = render_prompt(tok, "Q: 23+27*2-17=?")
    pairs = [
        {"prompt": q, "chosen": "23+54-17\n", "rejected": "23+55-17\n"},
        {"prompt": q + "23+54-17\n", "chosen": "77-17\n", "rejected": "50*2-17\n"},
        {"prompt": q + "23+54-17\n77-17\n", "chosen": "60\n", "rejected": "59\n"},
        {"prompt": q + "23+54-17\n77-17\n60\n", "chosen": "Answer: 60", "rejected": "Answer: 61"},
    ]
    # TRL appends EOS to every non-conversational completion; flag it so both score the same tokens
    pairs = [dict(p, chosen_eos=True, rejected_eos=True, kind="first_error") for p in pairs]
    return model, ref, tok, pairs


def _trl_loss(model, ref, tok, pairs, **dpo_kw) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    with tempfile.TemporaryDirectory() as d:
        args = DPOConfig(output_dir=d, per_device_train_batch_size=len(pairs), beta=0.1, use_cpu=True, bf16=False,
                         report_to="none", save_strategy="no", disable_tqdm=True, **dpo_kw)
        trainer = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(ref), args=args,
                             train_dataset=Dataset.from_list(pairs), processing_class=tok)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(pairs))])
        with torch.no_grad():
            return trainer.compute_loss(trainer.model, batch).item()


def _our_loss(model, ref, tok, pairs, *, packed: bool, rpo_alpha: float = 0.0) -> float:
    from treesearch.train import StepDPOConfig
    from treesearch.train.data import as_pairs, collate, tokenize_pairs
    from treesearch.train.trainer import reference_logps, sequence_logps, step_dpo_objective

    tp = tokenize_pairs(as_pairs(pairs), tok, max_length=512)
    ref_w, ref_l, _ = reference_logps(ref, tp, batch_size=2, pad_id=tok.pad_token_id, device="cpu", packed=packed)
    b = len(pairs)
    with torch.no_grad():
        logp, ntok = sequence_logps(model, collate(tp, list(range(b)), tok.pad_token_id, packed=packed))
    loss, _ = step_dpo_objective(logp, ntok, ref_w, ref_l, StepDPOConfig(beta=0.1, rpo_alpha=rpo_alpha))
    return loss.item()


@pytest.mark.parametrize("packed", [False, True])
def test_dpo_loss_equals_trl_sigmoid(setup, packed):
    model, ref, tok, pairs = setup
    theirs = _trl_loss(model, ref, tok, pairs, loss_type=["sigmoid"])
    ours = _our_loss(model, ref, tok, pairs, packed=packed)
    assert abs(theirs - math.log(2)) > 1e-3, "reference too close to the policy for a meaningful comparison"
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_rpo_loss_equals_trl_sigmoid_plus_sft(setup):
    model, ref, tok, pairs = setup
    theirs = _trl_loss(model, ref, tok, pairs, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    ours = _our_loss(model, ref, tok, pairs, packed=True, rpo_alpha=0.5)
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert abs(ours - _our_loss(model, ref, tok, pairs, packed=True)) > 0.1  # the NLL term is really there
