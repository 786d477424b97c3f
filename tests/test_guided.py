"""PRM-guided test-time strategies on the embedded policy, guided by a real PRM the session fixture trains
(`trained_prm`): weighted best-of-N, DVTS, beam search and MCTS with a PRM value, and `treesearch eval`."""
import json

import pytest

from treesearch.backends.hf import HFBackend
from treesearch.cli import main as cli_main
from treesearch.evaluate import EvalConfig, evaluate_search, prm_answer, search_defaults
from treesearch.rewards.prm import aggregate
from treesearch.rewards.prm_train import load_value_prm
from treesearch.search import (
    BeamConfig, BestOfNConfig, DVTSConfig, MCTSConfig, beam_search, choose, dvts, make_trees, mcts, weighted_best_of_n,
)
from treesearch.search.expand import finished
from treesearch.tree import ROOT, UNKNOWN, Tree
from treesearch.voting import plurality, weighted_plurality


@pytest.fixture(scope="module")
def problems(arithmetic):
    return arithmetic.problems("test", 3, seed=5, n_ops=3)


class Spy:
    """The real backend, recording (prompts, n) of every generate call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params.n))
        return self.inner.generate(prompts, params)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _answers(task, tree, nodes):
    return [task.extract_answer(tree.text_of(c)) if finished(tree, c) else None for c in nodes]


def test_weighted_bon_is_the_weighted_plurality_of_the_prm_scores(policy, trained_prm, problems, arithmetic):
    backend = HFBackend.from_model(*policy)
    prm = load_value_prm(trained_prm, aggregate="min", signed=False)
    res = weighted_best_of_n(backend, make_trees(backend, problems), BestOfNConfig(n=8, max_tokens=96), scorer=prm,
                             extract=arithmetic.extract_answer, same=arithmetic.same_answer)
    fresh = load_value_prm(trained_prm, aggregate="min", signed=False)  # recomputed by a second PRM instance
    voted = 0
    for t, sel in zip(res.trees, res.selected):
        kids = t.children[ROOT]
        scores = fresh([t] * len(kids), kids)
        assert len(kids) == 8 and scores == pytest.approx([t.value[c] for c in kids], rel=1e-5)
        assert all(0.0 <= s <= 1.0 for s in scores)
        _, index = weighted_plurality(_answers(arithmetic, t, kids), scores, arithmetic.same_answer)
        if index >= 0:
            voted += 1
            assert sel == kids[index]
    assert voted and prm.tokens_read > 0


def test_weighted_vote_differs_from_plurality_and_cut_samples_do_not_vote(arithmetic):
    t = Tree(problem_id="p", prompt="Q: 2+3=?", prompt_ids=[1])
    nodes = [t.add_child(ROOT, text=text, token_ids=[2], logprobs=[-0.1], finish_reason=why, terminal=True)
             for text, why in [("5\nAnswer: 5\n", "eos"), ("5\nAnswer: 5\n", "eos"), ("7\nAnswer: 7\n", "eos"),
                               ("9\nAnswer: 9\n", "max_tokens")]]
    answers = _answers(arithmetic, t, nodes)
    assert answers[3] is None  # cut at the token limit: no answer is read from it
    assert plurality(answers)[0] == "5"
    kw = dict(extract=arithmetic.extract_answer, same=arithmetic.same_answer)
    assert choose(t, nodes, [0.2, 0.2, 0.9, 5.0], select="vote", **kw) == nodes[2]  # 0.9 outweighs 0.2 + 0.2
    assert choose(t, nodes, [0.5, 0.5, 0.9, 5.0], select="vote", **kw) == nodes[0]  # 1.0 outweighs 0.9
    assert choose(t, nodes, [0.5, 0.5, 0.9, 5.0], select="score", **kw) == nodes[2]  # the cut one never wins


def test_dvts_runs_n_over_m_subtrees_one_solution_each(policy, trained_prm, problems, arithmetic):
    spy = Spy(HFBackend.from_model(*policy))
    cfg = DVTSConfig(n=8, beam_width=2, max_tokens=96)
    res = dvts(spy, make_trees(spy, problems), cfg, scorer=load_value_prm(trained_prm, signed=False),
               extract=arithmetic.extract_answer, same=arithmetic.same_answer, is_final=arithmetic.is_final)
    assert spy.calls[0] == (len(problems), 8)  # step 1: N samples from each root, dealt M to a subtree
    assert sum(p * n for p, n in spy.calls) == sum(sum(t.meta["dvts"]["samples"]) for t in res.trees)
    for t, sel in zip(res.trees, res.selected):
        sol, samples = t.meta["dvts"]["solutions"], t.meta["dvts"]["samples"]
        assert len(sol) == 4 and all(t.terminal[c] for c in sol) and sel in sol
        # step d samples M steps for every subtree still live, i.e. whose solution is deeper than d
        assert samples == [2 * sum(int(t.depth[c]) > d for c in sol) for d in range(len(samples))]
        assert len(samples) == max(int(t.depth[c]) for c in sol) and t.expanded[ROOT] == 1
        # the PRM keeps a subtree's best step: where one subtree alone extended a node, its kept child
        # is the best-scored of that node's children
        paths = [t.path(c) for c in sol]
        for path in paths:
            for p, n in zip(path[1:], path[2:]):
                if sum(p in q for q in paths) == 1:
                    assert t.value[n] == max(t.value[k] for k in t.children[p])
    with pytest.raises(ValueError, match="multiple of beam_width"):
        DVTSConfig(n=6, beam_width=4)


def test_aggregate_changes_the_ranking_and_beam_scores_use_it(policy, trained_prm, problems, arithmetic):
    a, b = [0.9, 0.2, 0.8], [0.5, 0.6, 0.7]
    assert aggregate(a, "last") > aggregate(b, "last") and aggregate(a, "min") < aggregate(b, "min")
    assert aggregate(a, "prod") < aggregate(b, "prod")
    backend = HFBackend.from_model(*policy)
    prm = load_value_prm(trained_prm, aggregate="min", signed=False)
    res = beam_search(backend, make_trees(backend, problems[:2]), BeamConfig(beam_width=2, expansions=2, max_tokens=96),
                      scorer=prm, is_final=arithmetic.is_final)
    fresh = load_value_prm(trained_prm, signed=False)
    differs = 0
    for t in res.trees:
        nodes = [n for n in range(1, t.num_nodes) if t.evals[n]]
        steps = fresh.score_steps([t.prompt] * len(nodes), [[t.text[k] for k in t.path(n)[1:]] for n in nodes])
        assert [t.value[n] for n in nodes] == pytest.approx([min(s) for s in steps], rel=1e-5)
        differs += sum(min(s) != s[-1] for s in steps)
    assert differs  # min and last disagree on some path, so the check above tells them apart


def test_mcts_with_a_prm_never_consults_the_task(policy, trained_prm, problems, arithmetic):
    backend = HFBackend.from_model(*policy)
    prm = load_value_prm(trained_prm, aggregate="last", signed=True)
    trees = make_trees(backend, problems)
    for t in trees:
        t.answer = ""  # no gold anywhere

    def never(tree, text):
        raise AssertionError("the task scorer was consulted")

    res = mcts(backend, trees, MCTSConfig(simulations=6, width=2, max_tokens=96), score=never, value_fn=prm,
               reward_fn=prm, is_final=arithmetic.is_final)
    fresh = load_value_prm(trained_prm, aggregate="last", signed=True)
    ends = 0
    for t in res.trees:
        t.check_values()
        done = [n for n in range(1, t.num_nodes) if finished(t, n)]
        ends += len(done)
        if done:  # a finished terminal's reward is its signed PRM score
            assert [t.reward[n] for n in done] == pytest.approx(fresh([t] * len(done), done), rel=1e-5)
            assert prm_answer(t, "vote", arithmetic.extract_answer, arithmetic.same_answer) in done
        assert all(v == UNKNOWN for v in t.verdict)  # nothing was verified
    assert ends


@pytest.mark.parametrize("strategy", ["best-of-n", "weighted-bon", "mcts"])
def test_evaluate_with_a_prm_reports_coverage_and_prm_tokens(policy, trained_prm, problems, arithmetic, strategy):
    backend = HFBackend.from_model(*policy)
    cfg = EvalConfig(strategy=strategy, k=4, max_tokens=96, prm=str(trained_prm))
    scfg = search_defaults(cfg)[strategy]
    if strategy == "mcts":
        import dataclasses

        scfg = dataclasses.replace(scfg, simulations=4, width=2)
    records, s = evaluate_search(backend, arithmetic, problems, cfg, search_config=scfg, progress=False)
    assert s["prm_tokens_per_problem"] > 0 and s["tokens_per_problem"] > 0
    assert s["coverage"] == sum(r["covered"] for r in records) / len(records) >= s["accuracy"]
    assert all(r["covered"] for r in records if r["correct"][0])


def test_search_defaults_temper_every_strategy_alike():
    cfg = EvalConfig(strategy="best-of-n", temperature=0.6, top_p=0.9, seed=3, max_tokens=77, k=8)
    for name, c in search_defaults(cfg).items():
        assert (c.temperature, c.top_p, c.seed, c.max_tokens) == (0.6, 0.9, 3, 77), name
    d = search_defaults(cfg)["dvts"]
    assert (d.n, d.beam_width, d.subtrees) == (8, 4, 2)


def test_eval_cli_prm_strategies(tmp_path, trained_prm, capsys):
    bad = tmp_path / "bad"
    assert cli_main(["eval", "--strategy", "weighted-bon", "--n-problems", "2", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a process reward model" in err and "--prm" in err
    assert not bad.exists()
    out = tmp_path / "dvts"
    assert cli_main(["eval", "--strategy", "dvts", "--prm", str(trained_prm), "--prm-aggregate", "min", "--k", "4",
                     "--set", "beam_width=2", "--n-problems", "3", "--n-ops", "2", "--max-tokens", "96",
                     "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["prm_aggregate"] == "min" and (s["search_config"]["n"], s["search_config"]["beam_width"]) == (4, 2)
    assert s["prm_tokens_per_problem"] > 0 and s["tokens_per_problem"] > 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert s["coverage"] == sum(r["covered"] for r in records) / 3
    assert "prm_tokens_per_problem" in (out / "summary.md").read_text()
    assert s["config"]["prm_device"] == "auto"
    # the PRM's device is the command's to choose; a bad one is a one-line error before anything is written
    odd = tmp_path / "odd"
    capsys.readouterr()
    assert cli_main(["eval", "--strategy", "dvts", "--prm", str(trained_prm), "--prm-device", "gpu0", "--k", "4",
                     "--n-problems", "2", "--out", str(odd)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown device 'gpu0'" in err and not odd.exists()


def test_the_prm_runs_where_it_is_told_in_the_dtype_of_its_device(trained_prm):
    import torch

    from treesearch.policy import PolicyError, resolve_device, resolve_dtype
    from treesearch.search.values import ValueConfig, build_value

    assert resolve_dtype("auto", "cuda:1") == torch.bfloat16 and resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16 and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(PolicyError, match="unknown dtype"):
        resolve_dtype("float13", "cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    auto = load_value_prm(trained_prm)  # auto: CUDA when present (bf16), else CPU (fp32)
    assert auto.device.type == expected and next(auto.model.parameters()).dtype == resolve_dtype("auto", expected)
    value = build_value(ValueConfig(method="prm", prm=str(trained_prm), prm_device="cpu"), None, None)
    assert value.device.type == "cpu" and next(value.model.parameters()).dtype == torch.float32


def test_prm_reads_a_best_of_n_solution_step_by_step(policy, trained_prm, problems, arithmetic):
    from treesearch.search import best_of_n

    backend = HFBackend.from_model(*policy)
    prm = load_value_prm(trained_prm, aggregate="min", signed=False, step_delimiter=arithmetic.step_delimiter)
    res = best_of_n(backend, make_trees(backend, problems[:2]), BestOfNConfig(n=4, max_tokens=96), scorer=prm)
    rows = [(t, c) for t in res.trees for c in t.children[ROOT]]
    lines = [t.text[c].splitlines(keepends=True) for t, c in rows]
    assert max(len(x) for x in lines) > 2  # whole solutions: several task steps in one node
    steps = prm.score_steps([t.prompt for t, _ in rows], lines)
    assert [t.value[c] for t, c in rows] == pytest.approx([min(s) for s in steps], rel=1e-5)
    # a prefix-cached PRM computes the whole sample anew: all its steps (and the question once)
    prm([t for t, _ in rows], [c for _, c in rows])
    assert prm.last_tokens[1] == len(prm.encode(rows[1][0].prompt, lines[1])[0]) - len(prm.prompt_ids(rows[1][0].prompt))


@pytest.mark.parametrize("algo", ["dvts", "weighted-bon"])
def test_search_cli_prm_algorithms_write_graded_trees(tmp_path, trained_prm, arithmetic, capsys, algo):
    """`treesearch search --algo dvts|weighted-bon --prm DIR`: the PRM-guided trees, each answer graded
    by the verifier; without --prm, one line and exit 2."""
    from treesearch.search.runner import read_trees

    bad = tmp_path / "bad"
    assert cli_main(["search", "--algo", algo, "--n-problems", "2", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--prm" in err and not bad.exists()
    out = tmp_path / algo
    sets = ["n=4", "beam_width=2", "max_tokens=96"] if algo == "dvts" else ["n=4", "max_tokens=96"]
    argv = ["search", "--algo", algo, "--prm", str(trained_prm), "--prm-aggregate", "min", "--n-problems", "3",
            "--n-ops", "2", "--seed", "1", "--out", str(out)]
    assert cli_main(argv + [a for s in sets for a in ("--set", s)]) == 0
    trees = read_trees(out / "trees.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == algo and len(trees) == 3
    problems = arithmetic.problems("test", 3, seed=1, n_ops=2)
    for p, t in zip(problems, trees):
        node = t.meta["search"]["selected"]
        assert t.meta["search"]["algo"] == algo and node > 0
        assert t.meta["search"]["correct"] == (arithmetic.score(p, t.text_of(node)) == 1.0)
        # the selection is the PRM's: every candidate carries its PRM score in [0, 1]
        ends = t.children[0] if algo == "weighted-bon" else t.meta["dvts"]["solutions"]
        assert all(0.0 <= float(t.value[n]) <= 1.0 for n in ends)
