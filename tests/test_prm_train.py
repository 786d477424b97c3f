"""The PRM trainer end to end on the embedded policy: trees from a real search, a trained checkpoint that
the PRM scorer loads, scores that separate right from wrong steps on held-out trees, and the PRM as
the search's value function. The arithmetic step checker only grades the result here."""
import dataclasses
import functools
import json

import pytest

from tasks import get_task
from treesearch.cli import main as cli_main
from treesearch.rewards.prm import PRMScorer
from treesearch.rewards.prm_train import PRMTrainConfig, auc, correct_steps_auc, load_value_prm, step_label, step_rows, train_prm
from treesearch.search.mcts import MCTSConfig
from treesearch.search.runner import run_search
from treesearch.tree import ROOT

SEARCH = MCTSConfig(simulations=6, width=2, max_tokens=96, revisit_terminals=False, end_cut_steps=True,
                    value_prior=2.0, rollouts=1)


@functools.lru_cache(maxsize=None)
def _trees(seed: int, n: int):
    from treesearch.backends.hf import HFBackend

    task = get_task("arithmetic")
    backend = HFBackend.from_pretrained("embedded", device="cpu")
    problems = task.problems("train", n, seed=seed)
    return tuple(run_search("mcts", backend, task, problems, SEARCH, value="counts", batch_size=n).trees)


def test_step_labels_and_rows():
    assert step_label(1, 4, "soft") == 0.25 and step_label(1, 4, "beta") == pytest.approx(2 / 6)
    assert step_label(0, 4, "hard") == 0.0 and step_label(3, 4, "hard") == 1.0
    trees = _trees(100, 16)
    rows = step_rows(trees, PRMTrainConfig(min_judged=2))
    labelled = [(r.tree, n) for r in rows for n, lab in zip(r.nodes, r.labels) if lab is not None]
    assert len(labelled) == len(set(labelled))  # each node labelled once
    from treesearch.pairs import judged_stats

    for r in rows:
        _, judged = judged_stats(trees[r.tree])
        assert all(judged[n] >= 2 for n, lab in zip(r.nodes, r.labels) if lab is not None)
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75


@pytest.mark.parametrize("seed", [0, 1])
def test_trained_prm_loads_and_separates_right_from_wrong_steps(tmp_path, seed):
    train, held_out = _trees(7, 96), _trees(8, 48)
    info = train_prm(train, PRMTrainConfig(epochs=3, seed=seed, holdout=0.0), tmp_path / "prm")
    model = tmp_path / "prm" / "model"
    scorer = PRMScorer.from_pretrained(model)  # the existing scorer, its head found from the checkpoint
    assert scorer.head == "token_classification" and info["steps"] > 0
    task = get_task("arithmetic")
    score, n_steps = correct_steps_auc(scorer, held_out, task.check_step)
    assert n_steps > 300
    assert score > 0.58, f"held-out step AUC {score:.3f} (0.5 = chance)"
    # a second call finds the finished checkpoint and does not train again
    assert train_prm(train, PRMTrainConfig(epochs=3, seed=seed, holdout=0.0), tmp_path / "prm") == info


def test_trained_prm_is_a_search_value_with_counted_tokens(tmp_path):
    from treesearch.backends.hf import HFBackend

    train_prm(_trees(7, 96)[:24], PRMTrainConfig(epochs=1, holdout=0.0), tmp_path / "prm")
    value = load_value_prm(tmp_path / "prm" / "model")
    task = get_task("arithmetic")
    backend = HFBackend.from_pretrained("embedded", device="cpu")
    problems = task.problems("test", 6, seed=3)
    cfg = dataclasses.replace(SEARCH, rollouts=0, simulations=4)
    from treesearch.search.mcts import mcts
    from treesearch.search.runner import make_trees, task_scorer

    trees = make_trees(backend, problems)
    res = mcts(backend, trees, cfg, score=task_scorer(task, problems), value_fn=value)
    for t in res.trees:
        t.check_values()
    interior = [t.value[n] for t in res.trees for n in range(1, t.num_nodes) if t.evals[n] and not t.terminal[n]]
    assert interior and all(-1.0 <= v <= 1.0 for v in interior)
    # PRM steps count toward the tree's sampled tokens, on top of what the policy decoded
    assert sum(t.meta["search"]["sampled_tokens"] for t in res.trees) > res.cost.decode_tokens
    assert value.tokens_read > 0
    # a prefix-cached PRM reads a question once: only a problem's first scored step pays for it
    fresh, t = load_value_prm(tmp_path / "prm" / "model"), res.trees[0]
    c = t.children[ROOT][0]
    fresh([t], [c])
    first = fresh.last_tokens[0]
    fresh([t], [c])
    assert first - fresh.last_tokens[0] == len(fresh.prompt_ids(t.prompt)) and fresh.last_tokens[0] > 0


def test_train_prm_command(tmp_path, capsys):
    from treesearch.io import write_jsonl

    path = tmp_path / "trees.jsonl"
    write_jsonl(path, [t.to_json() for t in _trees(100, 16)])
    out = tmp_path / "prm"
    assert cli_main(["train-prm", "--trees", str(path), "--out", str(out), "--epochs", "1", "--holdout", "0.25",
                     "--step-delimiter", "\n\n"]) == 0
    info = json.loads((out / "prm.json").read_text())
    assert info["trees"] == 16 and (out / "model" / "config.json").is_file() and "val_auc" in info
    assert json.loads((out / "model" / "prm_config.json").read_text())["step_delimiter"] == "\n\n"  # read back as trained
    assert cli_main(["train-prm", "--trees", str(path), "--out", str(tmp_path / "x"), "--label", "nope"]) == 2
    assert "PRMTrainConfig.label" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_loop_value_prm_uses_the_previous_rounds_trees(tmp_path):
    from treesearch.io import write_jsonl
    from treesearch.loop import LoopConfig, Run
    from treesearch.search.values import ValueConfig

    cfg = LoopConfig(value=ValueConfig(method="prm"), prm=PRMTrainConfig(epochs=1, holdout=0.0), device="cpu")
    run = Run(tmp_path / "run", cfg, log=lambda msg: None)
    assert run.value_of(0).method == "counts"  # round 0 has no earlier trees
    (run.round_dir(0)).mkdir(parents=True)
    write_jsonl(run.round_dir(0) / "trees.jsonl", [t.to_json() for t in _trees(100, 16)])
    v = run.value_of(1)
    assert v.method == "prm" and v.prm == str(run.round_dir(0) / "prm" / "model")
    assert load_value_prm(v.prm).head == "token_classification"
