"""Text and ids agree everywhere, on tiny random models around the real Qwen3, Llama-3 and
SentencePiece tokenizers, through the HF backend: completions, MCTS and tree-segment trees, pairs,
one Step-DPO step and one RFT step.

The random models are nudged (`favour_tokens`) towards tokens that merge text across a newline
(``":\\n\\n"``, ``")\\n"``), digits, multi-byte characters and every end token, so a small search
meets what breaks naive code: a stop string ending inside a token, a split UTF-8 character, an
EOS id only generation_config names.
"""
import copy
import dataclasses
import json

import pytest
import torch

from tasks import get_task
from treesearch.backends.base import SamplingParams
from treesearch.backends.hf import HFBackend
from treesearch.backends.text import end_token_ids, find_stop
from treesearch.pairs import PairConfig, correct_solutions, extract_pairs
from treesearch.search import MCTSConfig, SegmentConfig, run_search
from treesearch.testing_models import MODELS, favour_tokens, force_token, save_checkpoint, tiny_model
from treesearch.tree import CORRECT, WRONG

NAMES = ("qwen3", "llama3", "llama2")
EXPECTED_ENDS = {"qwen3": {151645, 151643}, "qwen2": {151645, 151643}, "llama3": {128001, 128008, 128009},
                 "llama2": {2}}
PIECES = [":\n\n", ")\n", ".\n", "\n", "\n\n", " 1", "2", "34", " +", " =", "Answer", ": ", "7", " apples", "é",
          "😀", "日本", "  ", "\n\n\n"]
GSM8K = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
    {"question": "A box holds 12 pens. How many pens are in 5 boxes?", "answer": "12*5=<<12*5=60>>60\n#### 60"},
    {"question": "Sara read 20 pages on Monday and half as many on Tuesday. How many pages in total?",
     "answer": "20/2=<<20/2=10>>10\n20+10=<<20+10=30>>30\n#### 30"},
]


def _backend(name: str):
    model, tok = tiny_model(name, seed=0)
    backend = HFBackend.from_model(model, tok, template=MODELS[name].template)
    ids = {i for p in PIECES for i in tok(p, add_special_tokens=False)["input_ids"]}
    favour_tokens(model, {**{i: 12.0 for i in ids}, **{e: 10.0 for e in backend.eos_token_ids}})
    return backend


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    return request.param, _backend(request.param)


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory):
    path = tmp_path_factory.mktemp("gsm8k") / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    task = get_task(f"gsm8k:test={path}")
    return task, task.problems("test", len(GSM8K))


def _ids_without_end(backend, ids, finish_reason):
    if finish_reason == "eos":
        assert ids[-1] in backend.eos_token_ids
        return list(ids[:-1])
    return list(ids)


def test_completion_text_is_the_decode_of_whole_tokens(fixture):
    name, backend = fixture
    prompts = [backend.encode_prompt(r["question"]) for r in GSM8K]
    outs = backend.generate(prompts, SamplingParams(n=8, temperature=1.0, max_tokens=24, stop=("\n",), seed=3))
    past_stop = 0
    for o in outs:
        for c in o:
            body = _ids_without_end(backend, c.token_ids, c.finish_reason)
            assert c.text == backend.decode(body)
            if c.finish_reason == "stop":  # ends at the FIRST token after which the text holds the stop
                assert "\n" in c.text and find_stop(backend.decode(body[:-1]), ("\n",)) is None
                past_stop += not c.text.endswith("\n") or c.text.endswith("\n\n")
            else:
                assert "\n" not in c.text
    if name != "llama2":  # byte-level BPE merges newlines into tokens: the text runs past the stop string
        assert past_stop > 0


@pytest.mark.parametrize("name", ["qwen3", "qwen2", "llama3", "llama2"])
def test_every_end_token_ends_with_eos(name):
    """Each id of the tokenizer's EOS, generation_config's list and the chat template's end of turn."""
    model, tok = tiny_model(name, seed=1)
    backend = HFBackend.from_model(model, tok, template=MODELS[name].template)
    assert backend.eos_token_ids == EXPECTED_ENDS[name] and backend.eos_token_id == tok.eos_token_id
    prompt = backend.encode_prompt("1+1?")
    for end in sorted(backend.eos_token_ids):
        force_token(model, end)
        backend.reset_cache()
        (c,), = backend.generate([prompt], SamplingParams(temperature=0.0, max_tokens=5, stop=("\n",)))
        assert (c.finish_reason, c.token_ids, c.text) == ("eos", (end,), "")
    plain = tok("7", add_special_tokens=False)["input_ids"][-1]
    force_token(model, plain)
    backend.reset_cache()
    (c,), = backend.generate([prompt], SamplingParams(temperature=0.0, max_tokens=5))
    assert c.finish_reason == "length" and c.token_ids == (plain,) * 5


def _check_tree_nodes(backend, trees):
    """text == decode(ids) on every node; a path's text is the decode of its ids; returns counts."""
    counts = {"nodes": 0, "eos": set(), "stop": 0}
    for tree in trees:
        tree.check()
        n_prompt = len(tree.prompt_ids)
        for n in range(1, tree.num_nodes):
            body = _ids_without_end(backend, tree.token_ids[n], tree.finish_reason[n])
            assert tree.text[n] == backend.decode(body), (tree.problem_id, n)
            whole = backend.decode(tree.context_ids(n)[n_prompt:])
            if "\ufffd" not in whole:  # joining steps is exact unless a character is split between two
                assert tree.text_of(n) == whole, (tree.problem_id, n)
            counts["nodes"] += 1
            counts["stop"] += tree.finish_reason[n] == "stop"
            if tree.finish_reason[n] == "eos":
                assert tree.terminal[n]
                counts["eos"].add(tree.token_ids[n][-1])
    return counts


def _label(trees):
    """Mark alternate terminals correct (a random model solves nothing), so every pair kind appears."""
    for tree in trees:
        for i, n in enumerate(n for n in range(1, tree.num_nodes) if tree.terminal[n]):
            tree.verdict[n] = CORRECT if i % 2 == 0 else WRONG


def _expected_ids(backend, tree, node, kind):
    """What training must see: the sampled ids, a step's or a whole trajectory's (which ends in an
    end token only when the policy stopped there: one cut at a depth or token limit gets no EOS)."""
    if kind == "trajectory":
        return tree.context_ids(node)[len(tree.prompt_ids):]
    return list(tree.token_ids[node])


def _search(backend, gsm8k):
    task, problems = gsm8k
    mcts = run_search("mcts", backend, task, problems,
                      MCTSConfig(simulations=8, width=3, max_depth=4, step_max_tokens=24, max_tokens=96, seed=0))
    segs = run_search("segments", backend, task, problems, SegmentConfig(segment_len=8, max_width=6, max_tokens=40))
    return mcts, segs


def test_search_trees_and_pairs_hold_exact_ids(fixture, gsm8k, tmp_path):
    from treesearch.train.data import load_pairs, tokenize_pairs

    name, backend = fixture
    mcts, segs = _search(backend, gsm8k)
    a, b = _check_tree_nodes(backend, mcts.trees), _check_tree_nodes(backend, segs.trees)
    assert a["nodes"] > 30 and b["nodes"] > 30 and a["stop"] > 0
    assert a["eos"] | b["eos"], "the favoured end tokens end some paths"
    trees = mcts.trees + segs.trees
    _label(trees)
    cfg = PairConfig(kinds=("sibling", "first_error", "trajectory"), margin=0.0, require_correct_prefix=False)
    decode = lambda ids: backend.tokenizer.decode(list(ids))  # noqa: E731
    records, source = [], []
    for tree in trees:
        mine = extract_pairs([tree], cfg, decode=decode)
        records += mine
        source += [tree] * len(mine)
    assert {r["kind"] for r in records} == {"sibling", "first_error", "trajectory"}
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    tp = tokenize_pairs(load_pairs(path), backend.tokenizer, max_length=4096, end_ids=backend.eos_token_ids)
    assert tp.dropped == 0 and len(tp) == len(records)
    for i, (r, tree) in enumerate(zip(records, source)):
        parent, chosen, rejected = r["node_ids"]
        assert tp.prompt_ids[i] == tree.context_ids(parent)
        assert tp.chosen_ids[i] == _expected_ids(backend, tree, chosen, r["kind"])
        assert tp.rejected_ids[i] == _expected_ids(backend, tree, rejected, r["kind"])


@pytest.mark.parametrize("delimiter", ["\n", "\n\n", "####"])
def test_split_completion_cuts_where_the_whole_step_first_holds_the_delimiter(fixture, delimiter):
    """The windowed splitter against its definition (the step's whole decode, after every token) on
    random ids of a real vocabulary, rich in merged newlines, digits and multi-byte characters."""
    import random
    import runpy
    from pathlib import Path

    from treesearch.backends.base import Completion
    from treesearch.rewards.omega import split_completion

    # the definition, as bench/split.py times it (loading the bench puts only the repo root on sys.path)
    definition = runpy.run_path(str(Path(__file__).resolve().parent.parent / "bench" / "split.py"))["whole_decode_split"]
    name, backend = fixture
    tok = backend.tokenizer
    rich = sorted({i for p in PIECES + ["####", "#", "##", " ####"] for i in tok(p, add_special_tokens=False)["input_ids"]})

    whole = tok(delimiter, add_special_tokens=False)["input_ids"]  # the delimiter as the tokenizer writes it
    rng = random.Random(0)
    cuts = 0
    for _ in range(40):
        ids = []
        for _ in range(rng.randrange(1, 120)):
            u = rng.random()
            ids += whole if u < 0.03 else [rng.choice(rich) if u < 0.6 else rng.randrange(len(tok))]
        comp = Completion(text=backend.decode(ids), token_ids=tuple(ids), logprobs=(), finish_reason="length")
        got = split_completion(backend, comp, delimiter)
        assert got == definition(backend, comp, delimiter), (name, ids)
        cuts += len(got) - 1
    assert cuts > 40  # the delimiter was met often
    # the filter is only offered where it is exact
    assert backend.token_text.ids_holding("é") is None and backend.token_text.ids_holding(" ") is None


def _check_loop_search(backend, gsm8k):
    """configs/bench_loop.yaml's search (root samples merged as a trie of steps, judged-outcome values,
    a token budget) at small limits: exact ids and texts, one delimiter per step, ending its last
    token, every root sample judged and every sampled token counted. Returns the result."""
    from pathlib import Path

    from treesearch.loop import load_loop_config
    from treesearch.pairs import judged_stats
    from treesearch.tree import ROOT

    task, problems = gsm8k
    loop = load_loop_config(Path(__file__).resolve().parent.parent / "configs" / "bench_loop.yaml")
    assert loop.search.root_samples > 0  # what this test is for
    cfg = dataclasses.replace(loop.search, token_budget=160, max_depth=4, step_max_tokens=24, max_tokens=96, seed=0)
    res = run_search("mcts", backend, task, problems, cfg, value=loop.value)
    assert _check_tree_nodes(backend, res.trees)["nodes"] > 3 * len(problems)
    for tree in res.trees:
        assert judged_stats(tree)[1][ROOT] >= cfg.root_samples
        for n in range(1, tree.num_nodes):
            ids = list(tree.token_ids[n])
            assert len({tuple(tree.token_ids[c]) for c in tree.children[n]}) == len(tree.children[n])
            if not tree.terminal[n]:  # a step ends at the first token whose text closes the delimiter
                assert "\n" in backend.decode(ids) and "\n" not in backend.decode(ids[:-1]), (tree.problem_id, n)
    assert sum(t.meta["search"]["sampled_tokens"] for t in res.trees) == res.cost.as_dict()["decode_tokens"]
    return res


def test_the_loops_search_splits_root_samples_into_exact_steps(fixture, gsm8k):
    _check_loop_search(fixture[1], gsm8k)


def test_one_step_dpo_and_one_rft_step_train_on_the_sampled_ids(fixture, gsm8k, tmp_path, monkeypatch):
    """The trainers see exactly the ids the search sampled (spied at their entry points)."""
    from treesearch import rft
    from treesearch.loop import RFTSettings
    from treesearch.train import trainer
    from treesearch.train.config import StepDPOConfig

    name, backend = fixture
    mcts, segs = _search(backend, gsm8k)
    trees = mcts.trees + segs.trees
    _label(trees)
    records, expected = [], []
    for tree in trees:
        for r in extract_pairs([tree], PairConfig(kinds=("sibling", "first_error", "trajectory"), margin=0.0,
                                                  require_correct_prefix=False),
                               decode=lambda ids: backend.tokenizer.decode(list(ids))):
            records.append(r)
            expected.append([r["prompt_ids"]] + [_expected_ids(backend, tree, n, r["kind"]) for n in r["node_ids"][1:]])
    keep = [i for kind in ("sibling", "first_error", "trajectory")
            for i in [j for j, r in enumerate(records) if r["kind"] == kind][:2]]  # two of each kind
    records, expected = [records[i] for i in keep], [expected[i] for i in keep]
    assert len(records) == 6 and "trajectory" in {r["kind"] for r in records}
    seen = {}

    def spy(real, key):
        def wrapper(*args, **kw):
            seen[key] = out = real(*args, **kw)
            return out
        return wrapper

    monkeypatch.setattr(trainer, "tokenize_pairs", spy(trainer.tokenize_pairs, "dpo"))
    model = copy.deepcopy(backend.model).train()
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.train_step_dpo(model, records, StepDPOConfig(batch_size=len(records), learning_rate=1e-3,
                                                                  progress=False, save_steps=0, device="cpu"),
                                    tmp_path / "dpo", tokenizer=backend.tokenizer)
    tp = seen["dpo"]
    assert result.steps == 1 and tp.dropped == 0
    assert [list(x) for x in zip(tp.prompt_ids, tp.chosen_ids, tp.rejected_ids)] == expected
    assert any(not torch.equal(a, b) for a, b in zip(before, result.model.parameters()))

    solutions = correct_solutions(trees, per_problem=2)
    assert solutions
    ckpt = save_checkpoint(name, tmp_path / "ckpt", seed=0)
    monkeypatch.setattr(rft, "_examples", spy(rft._examples, "rft"))
    info = rft.train_rft(str(ckpt), solutions, RFTSettings(batch_size=len(solutions)), tmp_path / "rft", device="cpu")
    assert info["steps"] == 1
    ends, eos = backend.eos_token_ids, backend.tokenizer.eos_token_id
    for (prompt, completion), s in zip(seen["rft"], solutions):
        assert prompt == s["prompt_ids"]
        sampled = s["completion_ids"]
        assert completion == sampled + ([] if sampled[-1] in ends else [eos])


def test_a_pair_too_long_is_dropped_never_cut(real_tokenizers):
    from treesearch.train.data import as_pairs, tokenize_pairs

    tok = real_tokenizers["llama3"]
    prompt = [128000] + tok("Question: what is 2+2?\n", add_special_tokens=False)["input_ids"]
    short = {"prompt": "q", "chosen": "4", "rejected": "5", "prompt_ids": prompt, "chosen_ids": [19], "rejected_ids": [20]}
    long = dict(short, prompt_ids=prompt + [220] * 50)
    tp = tokenize_pairs(as_pairs([short, long, short]), tok, max_length=len(prompt) + 10)
    assert tp.dropped == 1 and len(tp) == 2 and tp.prompt_ids == [prompt, prompt]
    with pytest.raises(ValueError, match="no pair fits"):
        tokenize_pairs(as_pairs([long]), tok, max_length=len(prompt) + 10)
    with pytest.raises(ValueError, match="'rejected_ids'"):
        as_pairs([{k: v for k, v in short.items() if k != "rejected_ids"}])


def test_no_pad_token_is_invented_and_batches_still_pad(tmp_path):
    """Llama-3 has no pad token: loading does not add one, and a batch of unequal prompts decodes
    each row as it decodes alone."""
    from treesearch.policy import load_policy

    ckpt = save_checkpoint("llama3", tmp_path / "llama3", seed=2)
    model, tok = load_policy(str(ckpt), device="cpu")
    assert tok.pad_token_id is None
    assert end_token_ids(tok, ckpt) == {128001, 128008, 128009}  # read from generation_config.json
    backend = HFBackend.from_model(model, tok)
    prompts = [backend.encode_prompt(q) for q in ("1+1?", "What is the sum of 12, 30 and 45, then halved?")]
    p = SamplingParams(temperature=0.0, max_tokens=12)
    together = backend.generate(prompts, p)
    backend.reset_cache()
    alone = [backend.generate([q], p)[0] for q in prompts]
    assert [o[0].token_ids for o in together] == [o[0].token_ids for o in alone]


@pytest.mark.parametrize("name", NAMES)
def test_decode_loop_is_incremental(name):
    """The decode loop decodes a few tokens per step, not the whole row (quadratic on long solutions)."""
    model, tok = tiny_model(name, seed=3)  # unnudged: it rarely samples an end token
    backend = HFBackend.from_model(model, tok, template=MODELS[name].template)
    decoded = []
    real = tok.decode

    def counting(ids, *args, **kw):
        decoded.append(len(ids))
        return real(ids, *args, **kw)

    tok.decode = counting
    try:
        (c,), = backend.generate([backend.encode_prompt("2+2?")], SamplingParams(temperature=1.0, max_tokens=300, seed=0))
    finally:
        del tok.decode
    n = len(c.token_ids)
    assert n > 100 and sum(decoded) < 12 * n, (n, sum(decoded))  # a full decode per step would be ~n²/2


def test_prm_guided_strategies_read_a_real_tokenizer_policy_step_by_step(fixture, gsm8k, tmp_path):
    """A PRM from a tiny Qwen3 base with the real tokenizer, trained by `train_prm` on this policy's own
    trees, guides weighted best-of-N, DVTS and MCTS over a policy whose tokens merge text across
    newlines (":\\n\\n", ")\\n"): each strategy answers with one of its own samples, the PRM's
    tokens are counted, and the PRM reads every solution in exactly the steps the task's delimiter cuts,
    whatever tokens the policy wrote them in."""
    from treesearch.evaluate import EvalConfig, evaluate_search
    from treesearch.rewards.prm import split_after
    from treesearch.rewards.prm_train import PRMTrainConfig, load_value_prm, train_prm
    from treesearch.search import BestOfNConfig, make_trees
    from treesearch.search.runner import search_batch

    name, backend = fixture
    task, problems = gsm8k
    trees, _ = _search(backend, gsm8k)
    trees = trees.trees
    _label(trees)
    base = save_checkpoint("qwen3", tmp_path / "base")
    info = train_prm(trees, PRMTrainConfig(base=str(base), epochs=1, holdout=0.0, progress=False), tmp_path / "prm")
    assert info["steps"] >= 1
    prm = load_value_prm(tmp_path / "prm" / "model", aggregate="min", signed=False, step_delimiter=task.step_delimiter)
    res = search_batch("weighted-bon", backend, task, make_trees(backend, problems),
                       BestOfNConfig(n=6, temperature=1.0, max_tokens=40, seed=1), scorer=prm)
    multi = 0
    for tree, chosen in zip(res.trees, res.selected):
        assert chosen in tree.children[0]
        for c in tree.children[0]:
            prm([tree], [c])
            pieces = split_after(tree.text[c], task.step_delimiter)
            assert len(prm.last_step_scores[0]) == max(1, len(pieces))
            multi += len(pieces) > 1
    assert multi > 0, "some sampled solution spans several lines"
    for strategy in ("weighted-bon", "dvts", "mcts"):
        cfg = EvalConfig(strategy=strategy, k=4, max_tokens=40, prm=str(tmp_path / "prm" / "model"), prm_aggregate="min")
        records, summary = evaluate_search(backend, task, problems, cfg, progress=False, prm=prm)
        assert len(records) == len(problems) and summary["prm_tokens_per_problem"] > 0, strategy
        assert summary["tokens_per_problem"] > 0, strategy
