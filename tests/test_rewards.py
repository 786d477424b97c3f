"""Process rewards on the embedded policy through real transformers: every value checked against an
independent computation (greedy rollouts scored by the task, full forward passes without the KV cache)."""
import copy
import json
import dataclasses
import math

import pytest
import torch

from treesearch.backends.base import SamplingParams
from treesearch.backends.hf import HFBackend
from treesearch.policy import resolve
from treesearch.rewards import (
    ImplicitPRM,
    ImplicitPRMConfig,
    MCConfig,
    MCValue,
    PAVConfig,
    PAVValue,
    PRMConfig,
    PRMScorer,
    SelfEvalConfig,
    SelfEvalValue,
    best_of_k,
    effective_reward,
    hard_label,
    mc_step_labels,
    solution_tree,
    yes_probability,
)
from treesearch.search import MCTSConfig, make_trees, mcts, task_scorer
from treesearch.search.testing import ScriptedBackend, bandit_policy
from treesearch.search.values import RolloutConfig, RolloutValue
from treesearch.tree import CORRECT, WRONG, Tree

GREEDY = SamplingParams(n=1, temperature=0.0, max_tokens=64)


@pytest.fixture(scope="module")
def problems(arithmetic):
    return arithmetic.problems("test", 10, seed=0, n_ops=3)


@pytest.fixture(scope="module")
def score(arithmetic, problems):
    return task_scorer(arithmetic, problems)


@pytest.fixture(scope="module")
def perturbed(policy):
    """A different model with the same tokenizer: the policy with small seeded noise on every weight."""
    model, tokenizer = policy
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return other.eval(), tokenizer


def _steps(problem):
    return problem.solution.split("\n")


def _wrong_first_step(arithmetic, problem):
    """The reference with its first line off by one, continued consistently (so the answer is wrong)."""
    from tasks.arithmetic import parse, render, solve

    nums, ops = parse(_steps(problem)[0])
    nums = [nums[0] + 1] + nums[1:]
    steps = [render(nums, ops)] + solve(nums, ops)
    assert not arithmetic.check_step(problem.prompt, steps[0])
    assert arithmetic.score(problem, "\n".join(steps)) == 0.0
    return steps


def _greedy_verifies(backend, arithmetic, problem, tree, nodes):
    outs = backend.generate([tree.context_ids(n) for n in nodes], GREEDY)
    return [arithmetic.score(problem, tree.text_of(n) + o[0].text) for n, o in zip(nodes, outs)]


def _forward_logprobs(model, ids, start):
    """log π(ids[i] | ids[:i]) for i >= start, from one full forward pass (no cache)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[i - 1, ids[i]]) for i in range(start, len(ids))]


# -- Math-Shepherd MC labels --------------------------------------------------------------------
def test_greedy_mc_value_is_whether_the_greedy_completion_verifies(hf_backend, arithmetic, problems, score):
    trees, nodes, want = [], [], []
    for p in problems:
        tree, leaf = solution_tree(hf_backend, p, _steps(p))
        inner = tree.path(leaf)[:-1]  # root and every unfinished prefix
        want += _greedy_verifies(hf_backend, arithmetic, p, tree, inner)
        trees += [tree] * len(inner)
        nodes += inner
    before = hf_backend.stats.calls
    value = MCValue(hf_backend, score, MCConfig(k=1, temperature=0.0, max_tokens=64, signed=False))
    got = value(trees, nodes)
    assert hf_backend.stats.calls == before + 1  # one generate for the whole batch
    assert got == want
    assert 0 < sum(want) < len(want)  # both outcomes occur, so the check has teeth
    signed = MCValue(hf_backend, score, MCConfig(k=1, temperature=0.0, max_tokens=64, label="hard"))(trees, nodes)
    assert signed == [2.0 * w - 1.0 for w in want]


def test_finished_solutions_are_judged_exactly(hf_backend, arithmetic, problems, score):
    p = problems[0]
    right, right_leaf = solution_tree(hf_backend, p, _steps(p))
    wrong_answer = _steps(p)[:-1] + [f"Answer: {int(p.answer) + 1}"]
    wrong, wrong_leaf = solution_tree(hf_backend, p, wrong_answer)
    value = MCValue(hf_backend, score, MCConfig(k=4, signed=False))
    assert value([right, wrong], [right_leaf, wrong_leaf]) == [1.0, 0.0]
    assert right.verdict[right_leaf] == CORRECT and wrong.verdict[wrong_leaf] == WRONG


def test_soft_label_is_the_fraction_and_hard_label_is_any(hf_backend, arithmetic, problems, score):
    cfg = MCConfig(k=6, temperature=1.0, max_tokens=64, seed=3, signed=False)
    trees, nodes = [], []
    for p in problems:
        tree, leaf = solution_tree(hf_backend, p, _steps(p))
        trees.append(tree)
        nodes.append(tree.path(leaf)[1])  # after the first (correct) step
        bad, bad_leaf = solution_tree(hf_backend, p, _wrong_first_step(arithmetic, p))
        trees.append(bad)
        nodes.append(bad.path(bad_leaf)[1])  # after a wrong first step
    soft_fn = MCValue(hf_backend, score, cfg)
    soft = soft_fn(trees, nodes)
    hard = MCValue(hf_backend, score, dataclasses.replace(cfg, label="hard"))(trees, nodes)
    # independently: the same seeded samples (seeded per context and sample index), scored by the task
    outs = hf_backend.generate([t.context_ids(n) for t, n in zip(trees, nodes)],
                               SamplingParams(n=6, temperature=1.0, max_tokens=64, seed=3))
    by_id = {p.id: p for p in problems}
    for t, n, comps, s, h in zip(trees, nodes, outs, soft, hard):
        wins = sum(arithmetic.score(by_id[t.problem_id], t.text_of(n) + c.text) for c in comps)
        assert s == wins / 6
        assert h == float(wins > 0) == float(hard_label(s))
    assert soft_fn.last_soft == soft
    assert any(0 < s < 1 for s in soft) or len(set(soft)) > 1


def test_step_labels_of_whole_solutions_in_one_call(hf_backend, arithmetic, problems, score):
    sols = [solution_tree(hf_backend, p, _steps(p)) for p in problems[:3]]
    sols.append(solution_tree(hf_backend, problems[3], _wrong_first_step(arithmetic, problems[3])))
    before = hf_backend.stats.calls
    labels = mc_step_labels(hf_backend, score, sols, MCConfig(k=2, temperature=0.0, max_tokens=64))
    assert hf_backend.stats.calls == before + 1
    for (tree, leaf), lab in zip(sols, labels):
        assert lab.nodes == tree.path(leaf)[1:] and len(lab.soft) == len(lab.hard) == len(lab.steps) == len(lab.nodes)
        assert lab.hard == [s > 0 for s in lab.soft]
    assert [lab.soft[-1] for lab in labels] == [1.0, 1.0, 1.0, 0.0]  # the finished step is its own outcome


# -- implicit PRM -----------------------------------------------------------------------------
def _sampled_trees(backend, problems, n_problems=3):
    """Trees with real sampled steps (a short MCTS), for rewards over the policy's own tokens."""
    from treesearch.search.values import zero_value

    trees = make_trees(backend, problems[:n_problems])
    mcts(backend, trees, MCTSConfig(simulations=3, width=2, max_tokens=64, seed=5), score=lambda t, x: 0.0, value_fn=zero_value)
    return trees


def test_implicit_prm_is_zero_when_policy_is_reference(hf_backend, problems):
    trees = _sampled_trees(hf_backend, problems)
    pairs = [(t, n) for t in trees for n in range(1, t.num_nodes)]
    prm = ImplicitPRM(hf_backend, hf_backend, ImplicitPRMConfig(beta=0.5))
    rewards = prm.step_rewards([t for t, _ in pairs], [n for _, n in pairs])
    assert all(r == 0.0 for row in rewards for r in row)
    assert all(len(row) == t.depth[n] for (t, n), row in zip(pairs, rewards))


def test_implicit_prm_equals_beta_times_logprob_difference(hf_backend, policy, perturbed, problems):
    trees = _sampled_trees(hf_backend, problems)
    ref = HFBackend.from_model(*perturbed)
    pairs = [(t, n) for t in trees for n in range(1, t.num_nodes)]
    ts, ns = [t for t, _ in pairs], [n for _, n in pairs]
    beta = 0.1
    before = (hf_backend.stats.calls, ref.stats.calls)
    rewards = ImplicitPRM(hf_backend, ref, ImplicitPRMConfig(beta=beta)).step_rewards(ts, ns)
    assert (hf_backend.stats.calls, ref.stats.calls) == (before[0] + 1, before[1] + 1)  # one call per model
    for (t, n), row in zip(pairs, rewards):
        ids = t.context_ids(n)
        start = len(t.prompt_ids)
        diff = [a - b for a, b in zip(_forward_logprobs(policy[0], ids, start), _forward_logprobs(perturbed[0], ids, start))]
        at, want = 0, []
        for m in t.path(n)[1:]:
            want.append(beta * sum(diff[at : at + len(t.token_ids[m])]))
            at += len(t.token_ids[m])
        assert row == pytest.approx(want, abs=2e-4)
    assert any(abs(r) > 1e-2 for row in rewards for r in row)  # the models really differ
    for agg, pick in (("min", min), ("step", lambda r: r[-1]), ("sum", sum)):
        vals = ImplicitPRM(hf_backend, ref, ImplicitPRMConfig(beta=beta, aggregate=agg))(ts, ns)
        assert vals == pytest.approx([pick(r) for r in rewards], abs=1e-9)


# -- a PRM checkpoint ---------------------------------------------------------------------------
def _solutions(arithmetic, problems):
    prompts, steps = [], []
    for p in problems[:3]:
        prompts += [p.prompt, p.prompt]
        steps += [[s + "\n" for s in _steps(p)[:-1]] + [_steps(p)[-1]], [s + "\n" for s in _wrong_first_step(arithmetic, p)]]
    return prompts, steps


@pytest.fixture(scope="module")
def token_prm_dir(tmp_path_factory, policy):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)  # the new head is randomly initialised
    out = tmp_path_factory.mktemp("token_prm")
    AutoModelForTokenClassification.from_pretrained(resolve("embedded"), num_labels=2).save_pretrained(out)
    policy[1].save_pretrained(out)
    return out


def test_token_classification_prm_scores_every_step_end(token_prm_dir, arithmetic, problems):
    scorer = PRMScorer.from_pretrained(token_prm_dir, PRMConfig(batch_size=4))
    assert scorer.head == "token_classification"
    prompts, steps = _solutions(arithmetic, problems)
    scores = scorer.score_steps(prompts, steps)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    assert all(0.0 <= x <= 1.0 for row in scores for x in row)
    assert scorer.score_steps(prompts, steps) == scores  # deterministic
    one_by_one = [scorer.score_steps([p], [s])[0] for p, s in zip(prompts, steps)]
    assert [x for row in one_by_one for x in row] == pytest.approx([x for row in scores for x in row], abs=1e-5)
    # read at the last token of each step: equal to a standalone forward pass over the prefix
    ids, ends = scorer.encode(prompts[0], steps[0])
    for e, got in zip(ends, scores[0]):
        with torch.no_grad():
            logits = scorer.model(input_ids=torch.tensor([ids[: e + 1]])).logits[0, -1]
        assert got == pytest.approx(float(torch.softmax(logits, -1)[1]), abs=1e-5)


def test_prm_rows_are_cut_at_its_context_and_keep_the_scores_that_fit(token_prm_dir, arithmetic, problems):
    """A solution longer than the PRM's context is read up to it: the steps that fit keep their exact
    scores, the rest are counted as cut, and a node whose own steps all lie past the cut adds no PRM tokens."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    prompts, steps = _solutions(arithmetic, problems)
    whole = PRMScorer.from_pretrained(token_prm_dir)
    assert whole.max_length == whole.model.config.max_position_embeddings
    ids, ends = whole.encode(prompts[0], steps[0])
    assert len(ends) >= 3
    limit = ends[1] + 1  # room for exactly the first two steps
    full = whole.score_steps(prompts[:2], steps[:2])
    cut = PRMScorer.from_pretrained(token_prm_dir, PRMConfig(max_length=limit, aggregate="last"))
    got = cut.score_steps(prompts[:2], steps[:2])
    assert got[0] == pytest.approx(full[0][:2], abs=1e-5)
    ids1, ends1 = whole.encode(prompts[1], steps[1])
    assert got[1] == pytest.approx(full[1][: sum(e < limit for e in ends1)], abs=1e-5)
    assert cut.steps_cut == len(ends) - 2 + sum(e >= limit for e in ends1) > 0
    # the default is the model's own context
    model = AutoModelForTokenClassification.from_pretrained(token_prm_dir)
    model.config.max_position_embeddings = limit
    short = PRMScorer(model, AutoTokenizer.from_pretrained(token_prm_dir), PRMConfig(aggregate="last"))
    assert short.max_length == limit and short.score_steps(prompts[:1], steps[:1])[0] == pytest.approx(got[0], abs=1e-5)
    # over a tree: the value reads the steps that fit; a step wholly past the cut costs nothing new
    tree = Tree(problem_id="p0", prompt=prompts[0], prompt_ids=[1])
    node = 0
    for s in steps[0]:
        node = tree.add_child(node, text=s, token_ids=[1], logprobs=[0.0], finish_reason="stop")
    path = tree.path(node)[1:]
    values = cut([tree] * len(path), path)
    assert values[-1] == pytest.approx(full[0][1], abs=1e-5)  # last: the last step that fit
    assert cut.last_tokens[2:] == [0] * (len(path) - 2) and cut.last_tokens[1] > 0
    with pytest.raises(ValueError, match="max_length"):
        PRMConfig(max_length=-1)


def test_implicit_head_reads_the_log_ratio_of_two_checkpoints(tmp_path, policy, perturbed, arithmetic, problems):
    """An implicit PRM given as a checkpoint and its reference: p_t = σ(β·Σ log πθ/πref) over step t's
    tokens and tag, the same alone or padded in a batch; the same model twice gives 1/2."""
    perturbed[0].save_pretrained(tmp_path / "theta")
    perturbed[1].save_pretrained(tmp_path / "theta")
    beta = 0.5
    scorer = PRMScorer.from_pretrained(tmp_path / "theta", PRMConfig(head="implicit", reference="embedded", beta=beta,
                                                                     batch_size=4))
    prompts, steps = _solutions(arithmetic, problems)
    scores = scorer.score_steps(prompts, steps)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    one_by_one = [scorer.score_steps([p], [s])[0] for p, s in zip(prompts, steps)]
    assert [x for r in one_by_one for x in r] == pytest.approx([x for r in scores for x in r], abs=1e-5)
    for j in (0, 1):
        ids, ends = scorer.encode(prompts[j], steps[j])
        start = len(scorer.prompt_ids(prompts[j]))
        x = torch.tensor([ids])
        with torch.no_grad():
            lp = [torch.log_softmax(m(input_ids=x).logits[0, :-1], -1).gather(-1, x[0, 1:, None])[:, 0]
                  for m in (perturbed[0], policy[0])]
        diff = (lp[0] - lp[1])[start - 1 :]  # the step tokens: ids[start:]
        bounds = [start - 1] + ends  # step t: tokens bounds[t] + 1 .. ends[t]
        want = [float(torch.sigmoid(beta * diff[a - start + 1 : b - start + 1].sum())) for a, b in zip(bounds, ends)]
        assert scores[j] == pytest.approx(want, abs=1e-5)
    assert len({round(x, 4) for r in scores for x in r}) > 3  # the models really differ
    same = PRMScorer(policy[0], policy[1], PRMConfig(head="implicit", beta=beta), reference=policy[0])
    assert all(x == pytest.approx(0.5, abs=1e-6) for r in same.score_steps(prompts, steps) for x in r)
    n = same.tokens_read
    assert n == 2 * sum(len(same.encode(p, s)[0]) for p, s in zip(prompts, steps))  # both models' tokens
    with pytest.raises(ValueError, match="reference"):
        PRMScorer.from_pretrained(tmp_path / "theta", PRMConfig(head="implicit"))
    with pytest.raises(ValueError, match="reference"):
        PRMScorer(policy[0], policy[1], PRMConfig(head="implicit"))
    # at test time, from the command line: an implicit PRM guides weighted best-of-N
    from treesearch.cli import main as cli_main

    out = tmp_path / "eval"
    assert cli_main(["eval", "--strategy", "weighted-bon", "--prm", str(tmp_path / "theta"), "--prm-set", "head=implicit",
                     "--prm-set", "reference=embedded", "--prm-set", f"beta={beta}", "--k", "4", "--n-problems", "2",
                     "--n-ops", "2", "--max-tokens", "96", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prm_tokens_per_problem"] > 0 and summary["config"]["prm_sets"][0] == "head=implicit"


def test_reward_token_prm_with_the_causal_lm(policy, arithmetic, problems):
    model, tokenizer = policy
    scorer = PRMScorer(model, tokenizer, PRMConfig(head="reward_token", good_token="+", bad_token="-", step_tag="\n"))
    prompts, steps = _solutions(arithmetic, problems)
    scores = scorer.score_steps(prompts, steps)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    good, bad = tokenizer("+", add_special_tokens=False)["input_ids"][0], tokenizer("-", add_special_tokens=False)["input_ids"][0]
    ids, ends = scorer.encode(prompts[1], steps[1])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    want = [float(torch.softmax(logits[e, [good, bad]], -1)[0]) for e in ends]
    assert scores[1] == pytest.approx(want, abs=1e-5)
    assert all(0.0 <= x <= 1.0 for row in scores for x in row)
    with pytest.raises(ValueError, match="good_token"):
        PRMScorer(model, tokenizer, PRMConfig(head="reward_token", good_token="Answer: 1"))


def test_sequence_classification_prm_one_score_per_prefix(tmp_path, policy, arithmetic, problems):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(resolve("embedded"), num_labels=1).save_pretrained(tmp_path)
    policy[1].save_pretrained(tmp_path)
    scorer = PRMScorer.from_pretrained(tmp_path)
    assert scorer.head == "sequence_classification"
    prompts, steps = _solutions(arithmetic, problems)
    scores = scorer.score_steps(prompts[:2], steps[:2])
    ids, ends = scorer.encode(prompts[0], steps[0])
    with torch.no_grad():
        want = [float(torch.sigmoid(scorer.model(input_ids=torch.tensor([ids[: e + 1]])).logits[0, 0])) for e in ends]
    assert scores[0] == pytest.approx(want, abs=1e-5)


def test_prm_runs_inside_mcts_as_value_fn(hf_backend, token_prm_dir, problems, score):
    scorer = PRMScorer.from_pretrained(token_prm_dir, PRMConfig(aggregate="min"))
    trees = make_trees(hf_backend, problems[:2])
    result = mcts(hf_backend, trees, MCTSConfig(simulations=4, width=2, max_tokens=64), score=score, value_fn=scorer)
    for tree in result.trees:
        tree.check_values()
        inner = [n for n in range(1, tree.num_nodes) if not tree.terminal[n]]
        assert inner, "the search made no unfinished nodes to value"
        again = scorer([tree] * len(inner), inner)
        assert [float(tree.value[n]) for n in inner] == pytest.approx(again, abs=1e-6)
        assert all(0.0 <= v <= 1.0 for v in again)


# -- self-evaluation ----------------------------------------------------------------------------
def test_self_evaluation_normalises_yes_against_no(policy, hf_backend, arithmetic, problems, score):
    model, _ = policy
    p = problems[0]
    tree, leaf = solution_tree(hf_backend, p, _steps(p))
    bad, bad_leaf = solution_tree(hf_backend, p, _wrong_first_step(arithmetic, p))
    nodes = [(tree, tree.path(leaf)[1]), (tree, tree.path(leaf)[2]), (bad, bad.path(bad_leaf)[1])]
    ev = SelfEvalValue(hf_backend, score, SelfEvalConfig(weight=0.5))
    before = hf_backend.stats.calls
    conf = ev.confidence([t for t, _ in nodes], [n for _, n in nodes])
    assert hf_backend.stats.calls == before + 1
    for (t, n), c in zip(nodes, conf):
        prompt = hf_backend.encode_prompt(ev.judge_prompt(t, n))
        ly = sum(_forward_logprobs(model, prompt + hf_backend.tokenize("Yes"), len(prompt)))
        ln = sum(_forward_logprobs(model, prompt + hf_backend.tokenize("No"), len(prompt)))
        assert c == pytest.approx(math.exp(ly) / (math.exp(ly) + math.exp(ln)), abs=1e-5)
        assert 0.0 < c < 1.0
    swapped = SelfEvalValue(hf_backend, score, SelfEvalConfig(yes="No", no="Yes")).confidence([t for t, _ in nodes], [n for _, n in nodes])
    assert [a + b for a, b in zip(conf, swapped)] == pytest.approx([1.0] * 3, abs=1e-9)
    values = ev([t for t, _ in nodes], [n for _, n in nodes])
    assert values == pytest.approx([0.5 * (2 * c - 1) for c in conf], abs=1e-12)


def test_self_evaluation_gives_terminals_their_outcome(hf_backend, problems, score):
    p = problems[1]
    right, right_leaf = solution_tree(hf_backend, p, _steps(p))
    wrong, wrong_leaf = solution_tree(hf_backend, p, _steps(p)[:-1] + [f"Answer: {int(p.answer) - 3}"])
    ev = SelfEvalValue(hf_backend, score)
    before = hf_backend.stats.calls
    assert ev([right, wrong], [right_leaf, wrong_leaf]) == [1.0, -1.0]
    assert hf_backend.stats.calls == before  # outcomes need no judging call
    assert ev.last_confidence == [None, None]


def test_yes_probability_is_stable_at_extremes():
    assert yes_probability(0.0, -1000.0) == 1.0 and yes_probability(-1000.0, 0.0) == 0.0
    assert yes_probability(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)


def test_self_evaluation_runs_inside_mcts(hf_backend, problems, score):
    ev = SelfEvalValue(hf_backend, score, SelfEvalConfig(weight=0.8))
    trees = make_trees(hf_backend, problems[:2])
    result = mcts(hf_backend, trees, MCTSConfig(simulations=4, width=2, max_tokens=64), score=score, value_fn=ev)
    for tree in result.trees:
        tree.check_values()
        inner = [n for n in range(1, tree.num_nodes) if not tree.terminal[n]]
        conf = ev.confidence([tree] * len(inner), inner)
        assert [float(tree.value[n]) for n in inner] == pytest.approx([0.8 * (2 * c - 1) for c in conf], abs=1e-6)


# -- process advantage (PAV) ----------------------------------------------------------------------
def test_process_advantage_with_a_greedy_prover(hf_backend, perturbed, arithmetic, problems, score):
    prover = HFBackend.from_model(*perturbed)
    trees, nodes = [], []
    for p in problems:
        tree, leaf = solution_tree(hf_backend, p, _steps(p))
        trees += [tree, tree]
        nodes += tree.path(leaf)[1:3]  # steps 1 and 2 (parents: root, step 1)
        bad, bad_leaf = solution_tree(hf_backend, p, _wrong_first_step(arithmetic, p))
        trees.append(bad)
        nodes.append(bad.path(bad_leaf)[1])
    by_id = {p.id: p for p in problems}
    cfg = PAVConfig(alpha=0.7, k=1, temperature=0.0, prover_temperature=0.0, max_tokens=64, signed=False)
    pav = PAVValue(hf_backend, prover, score, cfg)
    calls = (hf_backend.stats.calls, prover.stats.calls)
    got = pav(trees, nodes)
    assert (hf_backend.stats.calls, prover.stats.calls) == (calls[0] + 1, calls[1] + 1)
    for i, (t, n) in enumerate(zip(trees, nodes)):
        p = by_id[t.problem_id]
        q_mu, v_mu = _greedy_verifies(prover, arithmetic, p, t, [n, int(t.parent[n])])
        [q_pi] = _greedy_verifies(hf_backend, arithmetic, p, t, [n])
        assert (pav.last_q_mu[i], pav.last_v_mu[i], pav.last_q_pi[i]) == (q_mu, v_mu, q_pi)
        assert pav.last_advantage[i] == q_mu - v_mu
        assert got[i] == pytest.approx(q_pi + 0.7 * (q_mu - v_mu))
    assert any(a > 0 for a in pav.last_advantage) and any(a < 0 for a in pav.last_advantage)  # progress both ways
    signed = PAVValue(hf_backend, prover, score, dataclasses.replace(cfg, signed=True))(trees, nodes)
    assert signed == pytest.approx([2 * q - 1 + 0.7 * 2 * a for q, a in zip(pav.last_q_pi, pav.last_advantage)])


def test_best_of_k_prover(hf_backend, perturbed, problems, score):
    prover = HFBackend.from_model(*perturbed)
    p = problems[2]
    tree, leaf = solution_tree(hf_backend, p, _steps(p))
    nodes = tree.path(leaf)[1:-1]
    cfg = PAVConfig(best_of_k=3, k=4, temperature=0.0, prover_temperature=1.0, max_tokens=64, seed=2, signed=False)
    pav = PAVValue(hf_backend, prover, score, cfg)
    pav([tree] * len(nodes), nodes)
    raw = RolloutValue(prover, score, RolloutConfig(k=4, temperature=1.0, max_tokens=64, seed=2, signed=False))
    fr = raw([tree] * len(nodes), nodes)
    parent_fr = raw([tree] * len(nodes), [int(tree.parent[n]) for n in nodes])
    assert pav.last_q_mu == pytest.approx([1 - (1 - f) ** 3 for f in fr])
    assert pav.last_v_mu == pytest.approx([1 - (1 - f) ** 3 for f in parent_fr])
    assert best_of_k(0.5, 1) == 0.5 and best_of_k(0.5, 2) == 0.75 and best_of_k(0.0, 9) == 0.0
    assert effective_reward(0.25, -0.5, alpha=2.0) == -0.75


def test_prover_must_share_the_tokenizer(hf_backend, score):
    with pytest.raises(ValueError, match="tokenizer"):
        PAVValue(hf_backend, ScriptedBackend(bandit_policy({"a": 1.0})), score)



def test_prm_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="missing: cannot load PRM checkpoint"):
        PRMScorer.from_pretrained(tmp_path / "missing")


def test_prm_sets_read_a_checkpoint_the_way_its_format_needs(tmp_path, policy, arithmetic, problems, capsys):
    """`--prm-set` (`load_value_prm(sets=...)`): a causal-LM checkpoint read as a reward-token PRM
    (Math-Shepherd's kind) scores exactly as a PRMScorer built with those fields; a bad field is one line."""
    from treesearch.cli import main as cli_main
    from treesearch.rewards.prm_train import load_value_prm

    model, tokenizer = policy
    ckpt = tmp_path / "lm_prm"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    sets = ["head=reward_token", "good_token=+", "bad_token=-", "step_tag==\\n"]
    scorer = load_value_prm(ckpt, signed=False, sets=sets)
    assert (scorer.head, scorer.config.step_tag, scorer.config.good_token) == ("reward_token", "=\n", "+")
    direct = PRMScorer(model, tokenizer, PRMConfig(head="reward_token", good_token="+", bad_token="-", step_tag="=\n"))
    prompts, steps = _solutions(arithmetic, problems)
    flat = lambda s: [x for row in s.score_steps(prompts, steps) for x in row]  # noqa: E731
    assert flat(scorer) == pytest.approx(flat(direct), abs=1e-6)
    assert flat(scorer) != pytest.approx(flat(load_value_prm(ckpt, signed=False, sets=sets[:-1])), abs=1e-6)  # the tag matters
    out = tmp_path / "bon"
    argv = ["eval", "--strategy", "best-of-n", "--k", "2", "--n-problems", "2", "--n-ops", "2", "--max-tokens", "64",
            "--prm", str(ckpt), *[a for s in sets for a in ("--prm-set", s)], "--out", str(out)]
    assert cli_main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["prm_sets"] == sets
    capsys.readouterr()
    assert cli_main(argv[:-1] + [str(tmp_path / "bad"), "--prm-set", "tag=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prm-set 'tag=x'" in err[0] and not (tmp_path / "bad").exists()
