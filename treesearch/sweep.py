"""The accuracy-vs-compute frontier: every strategy at every budget, several seeds, confidence bands.

Each strategy has one budget knob (`KNOBS`: samples for maj@k and the
best-of-N family, samples per step for beam and DVTS, simulations for MCTS,
width for tree-segment rollouts). The sweep records, per (strategy, budget,
seed), accuracy and model tokens computed per problem (prefill + decode, after
prefix-cache reuse, as the backend counts them) plus each problem's
correctness, in ``sweep.jsonl``; `frontier` pools the seeds into one point per
(strategy, budget) with a 95% band, written to ``sweep.md`` and drawn in
``sweep.png``.

Subsampling (search-and-learn's method). The strategies that only *select
among independent samples* (`SAMPLED`: maj@k, best-of-N by log-probability,
best-of-N by PRM, weighted best-of-N) share one sampling run per (seed,
temperature) at the largest budget N: a `SampleTable` per problem (each
sample's answer group, verdict, mean log-probability, PRM score and decoded
tokens). Budget k < N is then scored on ``draws`` random k-subsets of those
samples (without replacement; k = N uses all of them), so a budget costs no
new sampling, every budget sees the same samples, and any k can be read off
the table (`curve`), which is how equal-token comparisons are made. Tokens at
k are the run's measured prefill per problem plus the subset's decoded
tokens. Search strategies (beam, DVTS, MCTS, segments) run once per budget
and seed; their tokens are measured.

Bands: a point's accuracy is the mean over problems of each problem's mean
correctness over seeds (and draws); its band is ±1.96 standard errors of that
mean over problems, so it holds both the problem sample and the seed noise.
``seed_sd`` is the spread of the per-seed accuracies.

Temperature is part of each strategy's settings (``temperature`` for all,
``temperatures`` per strategy); `bench/testtime.py` tunes it for every
strategy alike on problems the sweep does not score.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from treesearch.io import append_jsonl, atomic_write_text, read_jsonl, save_figure, write_jsonl

KNOBS = {"maj": "k", "best-of-n": "n", "best-of-n-prm": "n", "weighted-bon": "n", "beam": "beam_width",
         "dvts": "n", "mcts": "simulations", "segments": "max_width"}
SAMPLED = ("maj", "best-of-n", "best-of-n-prm", "weighted-bon")  # selectors over independent samples
from treesearch.evaluate import NEEDS_PRM as _EVAL_NEEDS_PRM

NEEDS_PRM = ("best-of-n-prm",) + tuple(_EVAL_NEEDS_PRM)
BEAM_EXPANSIONS = 4  # beam: budget B = B samples per step = B/4 beams x 4 expansions (search-and-learn's N and M)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    strategies: tuple[str, ...] = ("greedy", "maj", "best-of-n", "beam", "mcts", "segments")
    budgets: tuple[int, ...] = (4, 16)
    seeds: tuple[int, ...] = (0,)
    temperature: float = 1.0
    temperatures: tuple[tuple[str, float], ...] = ()  # per-strategy overrides of `temperature`
    max_tokens: int = 128
    prm: str = ""  # PRM checkpoint for the PRM-guided strategies (and beam / MCTS when given)
    prm_aggregate: str = "last"
    prm_sets: tuple[str, ...] = ()  # PRMConfig overrides KEY=VALUE
    prm_device: str = "auto"  # where the PRM runs (EvalConfig.prm_device)
    draws: int = 8  # random subsets per problem and budget when subsampling
    subsample: bool = True  # False: SAMPLED strategies sample anew at every budget (for checking)
    batch_problems: int = 64

    def __post_init__(self):
        unknown = [s for s in self.strategies if s != "greedy" and s not in KNOBS]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; expected greedy or one of {', '.join(KNOBS)}")
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"budgets must be positive integers, got {self.budgets}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        needs = [s for s in self.strategies if s in NEEDS_PRM]
        if needs and not self.prm:
            raise ValueError(f"strategy {needs[0]!r} needs a PRM (--prm PATH)")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")

    def temperature_of(self, strategy: str) -> float:
        return 0.0 if strategy == "greedy" else dict(self.temperatures).get(strategy, self.temperature)


# -- the sample table: one sampling run, read at any budget -------------------------------------

@dataclasses.dataclass
class SampleTable:
    """N independent samples of one problem, as the selectors see them (lists of length N).

    key: answer group (None: cut or unreadable), correct: the verifier's verdict, logprob: mean
    token log-probability, prm: the PRM's solution score in [0, 1] (None without a PRM), tokens:
    decoded tokens, prefill: prompt tokens computed for this problem (the measured share), prm_tokens:
    the PRM's tokens read per sample (its own cost, counted apart)."""

    id: str
    key: list
    correct: list
    logprob: list
    tokens: list
    prefill: float
    prm: list | None = None
    prm_tokens: list | None = None

    def pick(self, strategy: str, idx: Sequence[int]) -> int | None:
        """The sample `strategy` selects among `idx` (None: no answer to give)."""
        from treesearch.voting import weighted_plurality

        if strategy == "maj":
            votes = collections.Counter(self.key[i] for i in idx if self.key[i] is not None)
            if not votes:
                return None
            top = max(votes.values())
            return next(i for i in idx if self.key[i] is not None and votes[self.key[i]] == top)
        if strategy == "weighted-bon":
            _, j = weighted_plurality([self.key[i] for i in idx], [self.prm[i] for i in idx])
            return idx[j] if j >= 0 else None
        score = self.logprob if strategy == "best-of-n" else self.prm
        return max(idx, key=lambda i: (score[i], -i))

    def at(self, strategy: str, k: int, draws: int, rng: np.random.Generator) -> tuple[float, float, float]:
        """(accuracy, coverage, tokens computed) of `strategy` at budget k, averaged over `draws` k-subsets."""
        n = len(self.key)
        if k > n:
            raise ValueError(f"budget {k} exceeds the {n} samples in the table of {self.id}")
        subsets = [list(range(n))] if k == n else [sorted(rng.choice(n, size=k, replace=False).tolist()) for _ in range(draws)]
        acc = cov = tok = 0.0
        for idx in subsets:
            j = self.pick(strategy, idx)
            acc += float(j is not None and self.correct[j])
            cov += float(any(self.correct[i] for i in idx))
            tok += self.prefill + sum(self.tokens[i] for i in idx)
        m = len(subsets)
        return acc / m, cov / m, tok / m

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def sample_tables(backend, task, problems, n: int, temperature: float, seed: int, *, max_tokens: int,
                  prm=None, batch_problems: int = 64) -> list[SampleTable]:
    """Sample n solutions per problem (one best-of-n run) and tabulate what every SAMPLED selector reads."""
    from treesearch.search import BestOfNConfig, best_of_n, make_trees, mean_logprob
    from treesearch.search.expand import finished
    from treesearch.voting import AnswerGroups, answer_reading

    extract, same, _ = answer_reading(task)
    template = getattr(task, "prompt_template", None)
    cfg = BestOfNConfig(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    tables: list[SampleTable] = []
    for start in range(0, len(problems), batch_problems):
        chunk = problems[start : start + batch_problems]
        trees = make_trees(backend, chunk, template=template)
        res = best_of_n(backend, trees, cfg, scorer=mean_logprob)  # each sample's value is its mean log-prob
        decoded = sum(len(t.token_ids[c]) for t in trees for c in t.children[0])
        prefill = (res.cost.computed_tokens - decoded) / len(chunk)
        flat_t = [t for t in trees for _ in t.children[0]]
        flat_n = [c for t in trees for c in t.children[0]]
        scores = [float(v) for v in prm(flat_t, flat_n)] if prm is not None else None  # one PRM call per chunk
        prm_tok = [int(x) for x in prm.last_tokens] if prm is not None else None
        at = 0
        for p, t in zip(chunk, trees):
            kids = list(t.children[0])
            groups = AnswerGroups(same)
            keys, correct = [], []
            for c in kids:
                done = finished(t, c)
                a = extract(t.text[c]) if done else None
                keys.append(groups.key(a) if a is not None else None)
                correct.append(bool(done and task.score(p, t.text[c])))
            mine = slice(at, at + len(kids))
            at += len(kids)
            tables.append(SampleTable(p.id, keys, correct, [float(t.value[c]) for c in kids],
                                      [len(t.token_ids[c]) for c in kids], prefill,
                                      scores[mine] if scores is not None else None,
                                      prm_tok[mine] if prm_tok is not None else None))
    return tables


def curve(tables: Sequence[SampleTable], strategy: str, k: int, *, draws: int = 8, seed: int = 0) -> dict:
    """One SAMPLED strategy at budget k over all problems: accuracy, coverage, tokens per problem and
    each problem's correctness (subset draws seeded by (seed, k, problem index))."""
    per, cov, tok, prm_tok = [], [], [], []
    reads_prm = strategy in ("best-of-n-prm", "weighted-bon")
    for i, t in enumerate(tables):
        rng = np.random.default_rng([seed, k, i])
        a, c, x = t.at(strategy, k, draws, rng)
        per.append(a)
        cov.append(c)
        tok.append(x)
        prm_tok.append(k * float(np.mean(t.prm_tokens)) if reads_prm and t.prm_tokens else 0.0)  # expected over subsets
    return {"accuracy": float(np.mean(per)), "coverage": float(np.mean(cov)), "tokens_per_problem": float(np.mean(tok)),
            "prm_tokens_per_problem": float(np.mean(prm_tok)), "correct": per}


# -- the sweep ---------------------------------------------------------------------------------

def _load_prm(cfg: SweepConfig, task):
    """The one PRM scorer (p in [0, 1], steps read at the task's delimiter) every strategy shares; None without."""
    from treesearch.evaluate import EvalConfig, load_prm

    return load_prm(EvalConfig(prm=cfg.prm, prm_aggregate=cfg.prm_aggregate, prm_sets=cfg.prm_sets,
                               prm_device=cfg.prm_device), task) if cfg.prm else None


def _table_path(out: Path, temperature: float, seed: int, n: int, scored: bool) -> Path:
    return out / "samples" / f"T{temperature:g}_seed{seed}_n{n}{'_prm' if scored else ''}.jsonl"


def cached_tables(backend, task, problems, cfg: SweepConfig, out: Path, temperature: float, seed: int, n: int, prm):
    """The sample tables of (temperature, seed, n), sampled once and kept in ``samples/`` for resumes; a
    table with PRM scores serves a request without a PRM too."""
    for path in [_table_path(out, temperature, seed, n, True)] + ([] if prm else [_table_path(out, temperature, seed, n, False)]):
        if path.is_file():
            return [SampleTable(**r) for r in read_jsonl(path)]
    backend.reset_cache()  # tokens computed are measured from a cold cache, like every other run
    tables = sample_tables(backend, task, problems, n, temperature, seed, max_tokens=cfg.max_tokens, prm=prm,
                           batch_problems=cfg.batch_problems)
    path = _table_path(out, temperature, seed, n, prm is not None)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [t.to_json() for t in tables])  # atomic: complete or absent
    return tables


def search_config(strategy: str, ecfg, budget: int):
    """The strategy's config (`evaluate.search_defaults`) with its budget knob set to `budget`."""
    from treesearch.evaluate import search_defaults

    base = search_defaults(ecfg)[strategy]
    if strategy == "beam":
        m = min(BEAM_EXPANSIONS, budget)
        return dataclasses.replace(base, beam_width=max(1, budget // m), expansions=m)
    return dataclasses.replace(base, **{KNOBS[strategy]: budget})


def _run_one(backend, task, problems, cfg: SweepConfig, strategy: str, budget: int, seed: int, prm=None) -> dict:
    """A strategy that is not subsampled, run at one budget and seed: accuracy, coverage, tokens, per problem."""
    from treesearch.evaluate import EvalConfig, evaluate, evaluate_search

    t = cfg.temperature_of(strategy)
    backend.reset_cache()  # each run starts cold: no prefix reuse from an earlier run
    kw = dict(k=budget, seed=seed, max_tokens=cfg.max_tokens, temperature=t if t > 0 else 1.0,
              batch_problems=cfg.batch_problems)
    if strategy in ("greedy", "maj"):
        ecfg = EvalConfig(strategy="greedy" if strategy == "greedy" else "sample", **kw)
        records, summary = evaluate(backend, task, problems, ecfg, progress=False)
        correct = [float(r["correct"][0] if strategy == "greedy" else r["majority_correct"]) for r in records]
        cover = [float(any(r["correct"])) for r in records]
    else:
        # the eval strategy it is: best-of-n ranks by log-prob without a PRM, by the PRM with one
        name, guided = {"best-of-n": ("best-of-n", False), "best-of-n-prm": ("best-of-n", True)}.get(strategy, (strategy, True))
        ecfg = EvalConfig(strategy=name, **kw, **({"prm": cfg.prm, "prm_aggregate": cfg.prm_aggregate} if guided else {}))
        records, summary = evaluate_search(backend, task, problems, ecfg, progress=False, prm=prm if guided else None,
                                           search_config=search_config(name, ecfg, budget))
        correct = [float(r["correct"][0]) for r in records]
        cover = [float(r["covered"]) for r in records]
    return {"accuracy": float(np.mean(correct)), "coverage": float(np.mean(cover)),
            "tokens_per_problem": float(summary["tokens_per_problem"]),
            "prm_tokens_per_problem": float(summary.get("prm_tokens_per_problem", 0.0)), "correct": correct}


def run_sweep(backend, task, problems, cfg: SweepConfig, out_dir, *, log: Callable[[str], None] = print) -> list[dict]:
    """Rows {strategy, budget, seed, temperature, accuracy, coverage, tokens_per_problem, correct}, one per
    (strategy, budget, seed) of `cfg`; resumes rows already in sweep.jsonl (rows another config left
    there, e.g. at a temperature since tuned away, stay in the file but are not returned or drawn);
    writes sweep.md and sweep.png."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.jsonl"
    rows = list(read_jsonl(path, allow_torn_tail=True)) if path.is_file() else []
    done = {(r["strategy"], r["budget"], r["seed"], r["temperature"]) for r in rows}
    prm = _load_prm(cfg, task)
    top = max(cfg.budgets)
    todo = [(s, b, seed) for seed in cfg.seeds for s in cfg.strategies for b in ([1] if s == "greedy" else cfg.budgets)
            if (s, b, seed, cfg.temperature_of(s)) not in done]
    bar = tqdm(todo, desc="sweep", dynamic_ncols=True, disable=not todo)
    for strategy, budget, seed in bar:
        t = cfg.temperature_of(strategy)
        bar.set_postfix_str(f"{strategy} {budget} seed {seed}")
        if strategy in SAMPLED and cfg.subsample:
            tables = cached_tables(backend, task, problems, cfg, out, t, seed, top, prm)
            res = curve(tables, strategy, budget, draws=cfg.draws, seed=seed)
        else:
            res = _run_one(backend, task, problems, cfg, strategy, budget, seed, prm)
        row = {"strategy": strategy, "budget": budget, "seed": seed, "temperature": t, "problems": len(problems), **res}
        append_jsonl(path, [row])
        rows.append(row)
        log(f"{strategy:>13} budget {budget:>3} seed {seed}: accuracy {res['accuracy']:.3f} "
            f"at {res['tokens_per_problem']:.0f} tokens/problem")
    want = {(s, b, seed, cfg.temperature_of(s)) for seed in cfg.seeds for s in cfg.strategies
            for b in ([1] if s == "greedy" else cfg.budgets)}
    rows = [r for r in rows if (r["strategy"], r["budget"], r["seed"], r["temperature"]) in want]
    points = frontier(rows)
    atomic_write_text(out / "sweep.md", frontier_table(points))
    plot_sweep(points, out / "sweep.png")
    return rows


# -- pooling and drawing -----------------------------------------------------------------------

def frontier(rows: Sequence[dict]) -> list[dict]:
    """One point per (strategy, budget, temperature): accuracy pooled over seeds, its 95% band over problems,
    the seed spread, mean tokens; in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["budget"], r["temperature"]), []).append(r)
    points = []
    for (strategy, budget, temperature), rs in groups.items():
        per = np.mean(np.asarray([r["correct"] for r in rs], dtype=np.float64), axis=0)  # [problems]
        se = float(np.std(per, ddof=1) / math.sqrt(len(per))) if len(per) > 1 else 0.0
        accs = [r["accuracy"] for r in rs]
        points.append({"strategy": strategy, "budget": budget, "temperature": temperature, "seeds": len(rs),
                       "problems": len(per), "accuracy": float(per.mean()), "ci95": 1.96 * se,
                       "seed_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                       "coverage": float(np.mean([r["coverage"] for r in rs])),
                       "tokens_per_problem": float(np.mean([r["tokens_per_problem"] for r in rs])),
                       "prm_tokens_per_problem": float(np.mean([r.get("prm_tokens_per_problem", 0.0) for r in rs]))})
    return points


def frontier_table(points: Sequence[dict]) -> str:
    lines = ["| strategy | budget | T | seeds | accuracy | ±95% | seed sd | coverage | tokens/problem |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['strategy']} | {p['budget']} | {p['temperature']:g} | {p['seeds']} | {p['accuracy']:.3f} | "
              f"{p['ci95']:.3f} | {p['seed_sd']:.3f} | {p['coverage']:.3f} | {p['tokens_per_problem']:.0f} |"
              for p in points]
    return "\n".join(lines) + "\n"


def plot_sweep(points: Sequence[dict], path: Path, *, title: str = "", levels: dict[str, float] | None = None) -> None:
    """Accuracy against tokens computed (log scale), one line per strategy, its 95% band shaded; `levels` are
    labelled horizontal reference lines (e.g. what a verifier's own backbone decodes greedily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for strategy in dict.fromkeys(p["strategy"] for p in points):
        pts = sorted((p for p in points if p["strategy"] == strategy), key=lambda p: p["tokens_per_problem"])
        x = [p["tokens_per_problem"] for p in pts]
        y = np.asarray([p["accuracy"] for p in pts])
        band = np.asarray([p["ci95"] for p in pts])
        (line,) = ax.plot(x, y, "o-" if len(pts) > 1 else "o", ms=3.5, lw=1.4, label=strategy)
        if len(pts) > 1:
            ax.fill_between(x, y - band, y + band, color=line.get_color(), alpha=0.15, lw=0)
        else:
            ax.errorbar(x, y, yerr=band, color=line.get_color(), capsize=2, lw=1)
    for label, level in (levels or {}).items():
        ax.axhline(level, color="0.4", ls="--", lw=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("policy tokens computed per problem (prefill + decode)")
    ax.set_ylabel("accuracy")
    top = max([p["accuracy"] + p["ci95"] for p in points] + list((levels or {}).values()))
    ax.set_ylim(0, max(0.05, min(1.0, top + 0.08)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


__all__ = ["KNOBS", "SAMPLED", "SampleTable", "SweepConfig", "curve", "frontier", "frontier_table", "plot_sweep",
           "run_sweep", "sample_tables", "cached_tables", "search_config"]
