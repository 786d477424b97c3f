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
                     "--step-delimiter", "\n\n", "--gradient-checkpointing", "true", "--batch-tokens", "64",
                     "--progress", "false"]) == 0
    info = json.loads((out / "prm.json").read_text())
    assert info["config"]["gradient_checkpointing"] is True and info["config"]["progress"] is False
    assert info["micro_batches"] > info["steps"]
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
    # a trained PRM is reused without reading the round's trees again (value_of runs once per round's search)
    (run.round_dir(0) / "trees.jsonl").write_text("not json\n")
    assert run.value_of(1) == v


def _embedded_scorer():
    from treesearch.rewards.prm import PRMConfig
    from treesearch.rewards.prm_train import _load_base

    model, tok = _load_base("embedded", 0, "float32", "cpu")
    return PRMScorer(model, tok, PRMConfig(head="token_classification"))


def test_micro_batches_give_the_whole_batch_gradient():
    """An optimizer step's trees cut into micro-batches accumulate the very loss and gradient of one pass
    (weighted BCE and the sibling-pair term both normalised by the step's totals)."""
    import torch

    from treesearch.rewards.prm_train import _batch_loss, _micro_batches, _pairs, encode_rows

    cfg = PRMTrainConfig(pairwise=0.5, pair_margin=0.2, batch_tokens=0)
    scorer = _embedded_scorer()
    model = scorer.model.eval()  # no dropout: the two runs see the same function
    rows, cut = encode_rows(step_rows(_trees(7, 96)[:16], cfg), scorer)
    assert cut == 0
    assert len(_pairs(rows, cfg.pair_margin)[0]) > 0  # the pairwise term is exercised
    runs = {}
    for tokens in (0, 96):
        model.zero_grad(set_to_none=True)
        loss, got, micro = _batch_loss(model, rows, dataclasses.replace(cfg, batch_tokens=tokens), scorer.pad_id, "cpu",
                                       backward=True)
        runs[tokens] = (loss, got, micro, [p.grad.clone() for p in model.parameters()])
    assert runs[0][2] == 1 and runs[96][2] == len(_micro_batches(rows, 96)) > 4
    assert runs[96][0] == pytest.approx(runs[0][0], rel=1e-5)
    assert [y for _, y in runs[96][1]] == [y for _, y in runs[0][1]]
    for g_micro, g_whole in zip(runs[96][3], runs[0][3]):
        assert torch.allclose(g_micro, g_whole, atol=1e-6, rtol=1e-4)
    # a micro-batch never splits a tree (sibling pairs stay together)
    for group in _micro_batches(rows, 96):
        for t in {e.tree for e in group}:
            assert sum(e.tree == t for e in group) == sum(e.tree == t for e in rows)


def test_max_length_cuts_rows_and_keeps_the_exact_scores_of_the_kept_steps():
    import torch

    from treesearch.rewards.prm_train import _scores, encode_rows

    scorer = _embedded_scorer()
    model = scorer.model.eval()
    total_cut = 0
    with torch.no_grad():
        for row in step_rows(_trees(7, 96)[:8], PRMTrainConfig()):
            (full,), _ = encode_rows([row], scorer)
            short, cut = encode_rows([row], scorer, max_length=24)
            total_cut += cut
            assert cut == sum(a >= 24 for a in full.at)  # exactly the steps whose tag lies past the cut
            if not short:  # a row left with no labelled step is dropped
                assert all(a >= 24 for a in full.at)
                continue
            (short,) = short
            assert len(short.ids) <= 24 and short.ids == full.ids[: len(short.ids)]
            assert short.at == [a for a in full.at if a < 24] and short.labels == full.labels[: len(short.at)]
            kept = _scores(model, [full], scorer.pad_id, "cpu")[: len(short.at)]
            assert torch.allclose(kept, _scores(model, [short], scorer.pad_id, "cpu"), atol=1e-5)
    assert total_cut > 0


@pytest.mark.parametrize("name,arch", [("qwen3", "Qwen3ForTokenClassification"), ("llama3", "LlamaForTokenClassification")])
def test_prm_trains_on_real_architectures_and_tokenizers(tmp_path, name, arch):
    """A PRM from a tiny Qwen3 / Llama-3 checkpoint with its real 128k-151k-token tokenizer (Llama-3 has no
    pad token), trained the way a real one is (bf16 with fp32 masters, gradient checkpointing, micro-batches,
    a length cut), loads in the PRM scorer with its head, pads with a token it has and scores a row the
    same alone or beside a longer one."""
    import torch

    from treesearch import testing_models

    base = testing_models.save_checkpoint(name, tmp_path / name)
    trees = _trees(7, 96)[:24]
    cfg = PRMTrainConfig(base=str(base), epochs=3, learning_rate=3e-3, holdout=0.0, dtype="bfloat16",
                         gradient_checkpointing=True, batch_tokens=512, max_length=48, progress=False)
    info = train_prm(trees, cfg, tmp_path / "prm")
    assert info["micro_batches"] > info["steps"] and info["cut_steps"] > 0
    assert info["train_loss"] < info["first_loss"]  # it learned something, in bf16
    scorer = PRMScorer.from_pretrained(tmp_path / "prm" / "model")
    assert type(scorer.model).__name__ == arch and scorer.head == "token_classification"
    assert len(scorer.tokenizer) > 100_000 and scorer.pad_id == scorer.tokenizer.pad_token_id is not None
    from safetensors import safe_open

    with safe_open(str(tmp_path / "prm" / "model" / "model.safetensors"), "pt") as f:  # saved in its training dtype
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert next(scorer.model.parameters()).dtype == torch.float32  # and read in the scorer's
    short = [trees[0].prompt, [trees[0].text[trees[0].children[ROOT][0]]]]
    long_tree = max(trees, key=lambda t: len(t.best_path()))
    long = [long_tree.prompt, [long_tree.text[n] for n in long_tree.best_path()[1:]]]
    alone = scorer.score_steps([short[0]], [short[1]])[0]
    beside = scorer.score_steps([short[0], long[0]], [short[1], long[1]])
    assert len(beside[1]) == len(long[1]) > 1 and all(0.0 < p < 1.0 for p in beside[0] + beside[1])
    assert alone == pytest.approx(beside[0], abs=1e-5)


def test_rows_are_cut_at_the_base_models_context_by_default(tmp_path):
    """Without max_length a row never runs past the base's positions: a base with a 32-position
    context gets its rows cut there, the steps past the cut counted."""
    from treesearch.policy import load_policy

    model, tok = load_policy("embedded", device="cpu")
    model.config.max_position_embeddings = 32
    model.save_pretrained(tmp_path / "short")
    tok.save_pretrained(tmp_path / "short")
    trees = _trees(7, 96)[:8]
    short = train_prm(trees, PRMTrainConfig(base=str(tmp_path / "short"), epochs=1, holdout=0.0, progress=False),
                      tmp_path / "prm_short")
    full = train_prm(trees, PRMTrainConfig(epochs=1, holdout=0.0, progress=False), tmp_path / "prm_full")
    assert full["cut_steps"] == 0 and short["cut_steps"] > 0
