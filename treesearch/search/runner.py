"""Run a search over many problems: batches of trees, JSONL out, a summary with accuracy and cost.

    task = tasks.get_task("arithmetic")
    problems = task.problems("test", 30, seed=0, n_ops=3)
    result = run_search("mcts", backend, task, problems, MCTSConfig(simulations=16))
    summary = write_run("runs/mcts", result, task, problems, {"algo": "mcts"})

`run_search` turns the task into the callables the search core takes (an
outcome `Scorer`, `is_final`, an answer extractor), searches ``batch_size``
problems at a time (each wave of a batch is one backend call), and adds up the
cost. `write_run` writes ``trees.jsonl`` (one `Tree.to_json()` per line; the
tree's ``meta["search"]`` holds the algorithm, its config, the selected node and
whether its answer verifies) and ``summary.json``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from treesearch.io import atomic_write_text
from treesearch.search.baselines import BeamConfig, BestOfNConfig, GreedyConfig, beam_search, best_of_n, greedy, majority_vote
from treesearch.search.expand import answer_line_done
from treesearch.search.guided import DVTSConfig, dvts, weighted_best_of_n
from treesearch.search.mcts import MCTSConfig, mcts
from treesearch.search.result import Cost, SearchResult
from treesearch.search.segments import SegmentConfig, segment_rollouts
from treesearch.search.values import VALUE_METHODS, RolloutConfig, Scorer, Signed, ValueConfig, ValueFn, build_value
from treesearch.tree import ROOT, Tree

CONFIGS: dict[str, type] = {
    "mcts": MCTSConfig,
    "segments": SegmentConfig,
    "best-of-n": BestOfNConfig,
    "weighted-bon": BestOfNConfig,
    "beam": BeamConfig,
    "dvts": DVTSConfig,
    "majority": BestOfNConfig,
    "greedy": GreedyConfig,
}
NEEDS_PRM = ("weighted-bon", "dvts")  # their selection is a verifier-weighted vote
VALUES = VALUE_METHODS
# value used when none is named: MCTS gets its signal from terminal outcomes; the selectors rank by confidence
DEFAULT_VALUE = {"mcts": "zero", "segments": "logprob", "best-of-n": "logprob", "beam": "logprob"}


def make_trees(backend, problems: Sequence[Any], *, template: str | None = None) -> list[Tree]:
    """A bare root per problem; the root context is the prompt template (the task's, else the
    model's chat template) applied to the problem."""
    return [
        Tree(problem_id=p.id, prompt=p.prompt, prompt_ids=backend.encode_prompt(p.prompt, template), answer=p.answer,
             meta=dict(p.meta))
        for p in problems
    ]


def task_scorer(task, problems: Sequence[Any]) -> Scorer:
    """``score(tree, text)`` from ``task.score(problem, text)``, matching trees to problems by id."""
    by_id = {p.id: p for p in problems}

    def score(tree: Tree, text: str) -> float:
        return float(task.score(by_id[tree.problem_id], text))

    return score


def make_value(name: str | ValueConfig, backend, score: Scorer, rollout: RolloutConfig = RolloutConfig()) -> ValueFn:
    """The value function of a method name (with `rollout` for ``rollout``) or of a `ValueConfig`."""
    cfg = name if isinstance(name, ValueConfig) else ValueConfig(method=name, rollout=rollout)
    return build_value(cfg, backend, score)


def run_search(
    algo: str,
    backend,
    task,
    problems: Sequence[Any],
    config=None,
    *,
    value: str | ValueConfig | None = None,
    rollout: RolloutConfig = RolloutConfig(),
    prm: ValueFn | None = None,
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search all `problems` with `algo` (a key of CONFIGS), `batch_size` problems per batch.

    `prm`: a process reward model's scores p in [0, 1] (`load_value_prm(..., signed=False)`); it ranks
    for the selectors (best-of-n, weighted-bon, beam, dvts, segments) and is MCTS's value as 2p − 1,
    while finished answers are still judged by the task's verifier. weighted-bon and dvts need it."""
    if algo not in CONFIGS:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {', '.join(CONFIGS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if algo in NEEDS_PRM and prm is None:
        raise ValueError(f"algorithm {algo!r} needs a process reward model (--prm DIR)")
    config = config if config is not None else CONFIGS[algo]()
    if not isinstance(config, CONFIGS[algo]):
        raise ValueError(f"algorithm {algo!r} takes a {CONFIGS[algo].__name__}, got {type(config).__name__}")
    delimiter = getattr(task, "step_delimiter", "\n")
    if hasattr(config, "step_delimiter") and config.step_delimiter != delimiter:
        config = dataclasses.replace(config, step_delimiter=delimiter)
    score = task_scorer(task, problems)
    if prm is not None:
        value_fn = Signed(prm) if algo == "mcts" else prm
    else:
        value_fn = make_value(value or DEFAULT_VALUE.get(algo, "zero"), backend, score, rollout)

    def one_batch(trees: list[Tree]) -> SearchResult:
        if algo == "mcts":
            return mcts(backend, trees, config, score=score, value_fn=value_fn, is_final=getattr(task, "is_final", answer_line_done))
        return search_batch(algo, backend, task, trees, config, scorer=value_fn)

    problems = list(problems)
    total = SearchResult([], [], Cost())
    t0, solved = time.perf_counter(), 0
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        result = one_batch(make_trees(backend, batch, template=getattr(task, "prompt_template", None)))
        total = total + result
        if progress:
            solved += sum(_correct(task, p, t, n) for p, t, n in zip(batch, result.trees, result.selected))
            progress(f"{algo}: {len(total.trees)}/{len(problems)} problems, {solved} solved, {time.perf_counter() - t0:.1f}s")
    return total


def search_batch(algo: str, backend, task, trees: list[Tree], config, *, scorer: ValueFn) -> SearchResult:
    """One batch of a search that needs no verifier (everything but MCTS): the selectors rank by
    `scorer` (weighted-bon and dvts take a PRM's p in [0, 1]). Shared by `run_search` and test-time
    evaluation (`treesearch.evaluate`)."""
    from treesearch.voting import answer_reading

    is_final = getattr(task, "is_final", answer_line_done)
    extract, same, _ = answer_reading(task)
    if algo == "segments":
        return segment_rollouts(backend, trees, config, scorer=scorer, is_final=is_final)
    if algo == "best-of-n":
        return best_of_n(backend, trees, config, scorer=scorer)
    if algo == "weighted-bon":
        return weighted_best_of_n(backend, trees, config, scorer=scorer, extract=extract, same=same)
    if algo == "beam":
        return beam_search(backend, trees, config, scorer=scorer, is_final=is_final)
    if algo == "dvts":
        return dvts(backend, trees, config, scorer=scorer, extract=extract, same=same, is_final=is_final)
    if algo == "majority":
        return majority_vote(backend, trees, config, extract=extract, same=same)
    if algo == "greedy":
        return greedy(backend, trees, config)
    raise ValueError(f"search_batch: {algo!r} is not a verifier-free search")


def _correct(task, problem, tree: Tree, node: int) -> bool:
    """The solution ending at `node` finished (not cut at a limit) and verifies."""
    from treesearch.search.expand import finished

    return node != ROOT and finished(tree, node) and verifies(task, problem, tree.text_of(node))


def verifies(task, problem, text: str) -> bool:
    """The task's verifier accepts `text` as a solution of `problem` (score >= 0.5)."""
    return float(task.score(problem, text)) >= 0.5


def search_record(task, reading, problem, tree: Tree, node: int) -> dict[str, Any]:
    """One searched problem: the solution ending at the selected `node` graded by the task's verifier,
    its answer read by `reading` (`voting.answer_reading`; none from a cut or empty selection), and
    whether any finished solution in the tree verifies (``covered``; each distinct text graded once).
    Per-problem records of `summarize` and of test-time search evaluation (`treesearch.evaluate`)."""
    from treesearch.search.expand import finished

    text = tree.text_of(node)
    done = node != ROOT and finished(tree, node)
    ok = done and verifies(task, problem, text)
    pred = reading.extract(text) if done else None
    ends = {tree.text_of(n) for n in range(1, tree.num_nodes) if finished(tree, n)} - {text}
    covered = ok or any(verifies(task, problem, t) for t in ends)
    return {"id": problem.id, "answer": problem.answer, "predictions": [pred], "correct": [ok], "covered": covered,
            "unparsed": int(reading.states and pred is None), "unfinished": int(node != ROOT and not done),
            "tokens": tree.num_tokens(node), "nodes": tree.num_nodes, "completion": text}


def search_records(result: SearchResult, task, problems: Sequence[Any]) -> list[dict[str, Any]]:
    """`search_record` of every problem of `result`, in problem order."""
    from treesearch.voting import answer_reading

    reading = answer_reading(task)
    return [search_record(task, reading, p, t, s) for p, t, s in zip(problems, result.trees, result.selected)]


def summarize(result: SearchResult, task, problems: Sequence[Any]) -> dict[str, Any]:
    """Accuracy of the selected answers, coverage (some finished solution verifies), tree sizes, cost."""
    return summarize_records(search_records(result, task, problems), result.cost)


def summarize_records(records: list[dict[str, Any]], cost: Cost) -> dict[str, Any]:
    """`summarize` of per-problem `search_record`s and the search's total `cost`."""
    n = len(records)
    solved = sum(r["correct"][0] for r in records)
    return {
        "n_problems": n,
        "accuracy": solved / n if n else 0.0,
        "solved": solved,
        "unparsed": sum(r["unparsed"] for r in records),  # selected answers that could not be read (cut ones included)
        "unfinished": sum(r["unfinished"] for r in records),  # selected paths cut at the depth or token limit
        "coverage": sum(r["covered"] for r in records) / n if n else 0.0,
        "mean_nodes": sum(r["nodes"] for r in records) / n if n else 0.0,
        "tokens_per_problem": cost.computed_tokens / n if n else 0.0,
        "cost": cost.as_dict(),
    }


def write_run(
    out_dir: str | Path, result: SearchResult, task, problems: Sequence[Any], info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``trees.jsonl`` and ``summary.json`` (`info` + `summarize`) under `out_dir`; returns the summary.

    Each file is written whole to a temporary sibling and renamed into place: a run killed or failing
    here leaves the files of an earlier run at `out_dir` as they were."""
    out = Path(out_dir)
    records = search_records(result, task, problems)
    summary = {**(info or {}), **summarize_records(records, result.cost)}
    lines = []
    for r, t, s in zip(records, result.trees, result.selected):
        t.meta.setdefault("search", {})
        t.meta["search"].update(selected=int(s), correct=r["correct"][0])
        lines.append(json.dumps(t.to_json(), separators=(",", ":")) + "\n")
    atomic_write_text(out / "trees.jsonl", "".join(lines))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def read_trees(path: str | Path) -> list[Tree]:
    """Trees from a JSONL file written by `write_run` (``.gz`` read transparently); errors name the file and line."""
    from treesearch.io import read_jsonl_numbered

    return [Tree.from_json(d, where=f"{path}:{lineno}") for lineno, d in read_jsonl_numbered(path)]
