"""Train a process reward model on the labels search trees give, saved as a checkpoint `PRMScorer` loads.

TRL removed its PRM trainer (PR #7133), so the process labels our trees carry
had no consumer; this is ours. The PRM is the policy's architecture with a
one-logit token-classification head (``AutoModelForTokenClassification``,
``num_labels=1``), its backbone initialised from a policy checkpoint. It reads
a solution exactly as `PRMScorer` does (`PRMScorer.encode`: the question, each
step closed by its tag) and is trained at each step's tag token.

Labels, per step node n of a tree, from its judged outcomes (`judged_stats`:
c verified-correct of m judged terminals below n, plus recorded rollouts)::

    soft  = c / m                      Math-Shepherd soft label (MC estimate of P(correct | prefix))
    beta  = (c + 1) / (m + 2)          its Beta(1, 1) posterior mean (shrunk toward 1/2 when m is small)
    hard  = 1 if c > 0 else 0          Math-Shepherd hard label

A node with fewer than ``min_judged`` judged outcomes is unlabelled (masked),
so an unexplored step never teaches "bad". A first error in OmegaPRM's sense
(nothing correct below n, something correct below its parent) gets soft label 0
and, with ``first_error_weight`` > 1, extra weight. Loss: weighted BCE at the
tag tokens, plus (``pairwise`` > 0) rStar-Math's process-preference loss over
sibling steps whose labels differ by at least ``pair_margin``:
``−log σ(s_w − s_l)`` on the PRM's logits. Each tree's rows (one per leaf; a
node is labelled in the first row that holds it) stay in one batch so sibling
pairs meet.

    trees = read_trees("runs/x/round_0/trees.jsonl")
    info = train_prm(trees, PRMTrainConfig(base="embedded"), "runs/x/round_0/prm")
    scorer = load_value_prm("runs/x/round_0/prm/model")   # a ValueFn: 2·p_last − 1

The output directory gets ``model/`` (written under a temporary name, then
renamed: complete or absent) and ``prm.json`` (config and metrics); a finished
directory is not trained again. The arithmetic step checker is never used here.
"""
from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path
from typing import Sequence

from treesearch.config import field as _f
from treesearch.tree import Tree

LABELS = ("soft", "beta", "hard")
MODEL_DIR = "model"
INFO = "prm.json"


@dataclasses.dataclass(frozen=True)
class PRMTrainConfig:
    """A PRM trained on tree labels (see the module docstring)."""

    base: str = _f("embedded", "policy checkpoint whose backbone (and tokenizer) the PRM starts from")
    label: str = _f("soft", "soft (c/m, Math-Shepherd), beta ((c+1)/(m+2)) or hard (c > 0)")
    min_judged: int = _f(1, "judged outcomes below a step needed to label it (others are masked)")
    first_error_weight: float = _f(1.0, "loss weight of OmegaPRM first errors (nothing correct below, something below the parent)")
    pairwise: float = _f(0.0, "weight of the rStar-Math pairwise loss over sibling steps (0 = BCE only)")
    pair_margin: float = _f(0.5, "sibling steps form a pairwise term when their labels differ by at least this")
    epochs: int = _f(4, "passes over the rows")
    learning_rate: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    batch_trees: int = _f(16, "trees per optimizer step (all rows of a tree in one batch)")
    holdout: float = _f(0.1, "fraction of trees held out for the validation metrics (0 = none)")
    step_delimiter: str = _f("\n", "the trees' step delimiter (the task's), removed before each step's tag; saved with the PRM")
    seed: int = _f(0, "seed of the head's initialisation, the split and the batch order")
    device: str = _f("cpu", "'cpu', 'cuda' or 'auto'")

    def __post_init__(self):
        if self.label not in LABELS:
            raise ValueError(f"PRMTrainConfig.label must be one of {', '.join(LABELS)}, got {self.label!r}")
        if self.min_judged < 1 or self.epochs < 1 or self.batch_trees < 1:
            raise ValueError("PRMTrainConfig.min_judged, epochs and batch_trees must be >= 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"PRMTrainConfig.holdout must be in [0, 1), got {self.holdout}")


@dataclasses.dataclass
class StepRow:
    """One PRM input: a question and a path's steps; labels[t] is None where step t is masked.

    nodes: [T] node ids of the steps (siblings across rows are matched by parent id),
    weights: [T] loss weights, tree: index of the row's tree."""

    prompt: str
    steps: list[str]
    nodes: list[int]
    parents: list[int]
    labels: list[float | None]
    weights: list[float]
    tree: int


def step_label(correct: int, judged: int, how: str) -> float:
    """The label of a step with `correct` of `judged` outcomes verified below it."""
    if how == "soft":
        return correct / judged
    if how == "beta":
        return (correct + 1) / (judged + 2)
    return float(correct > 0)


def step_rows(trees: Sequence[Tree], cfg: PRMTrainConfig) -> list[StepRow]:
    """Rows of every tree: one per leaf path, each node labelled once (in the first row that holds it)."""
    from treesearch.pairs import judged_stats

    rows = []
    for ti, tree in enumerate(trees):
        correct, judged = judged_stats(tree)
        seen: set[int] = set()
        for leaf in tree.leaves():
            path = tree.path(leaf)[1:]
            if not path:
                continue
            labels, weights = [], []
            for n in path:
                p = int(tree.parent[n])
                if n in seen or judged[n] < cfg.min_judged:
                    labels.append(None)
                    weights.append(0.0)
                    continue
                seen.add(n)
                labels.append(step_label(int(correct[n]), int(judged[n]), cfg.label))
                first_error = correct[n] == 0 and correct[p] > 0
                weights.append(cfg.first_error_weight if first_error else 1.0)
            if any(x is not None for x in labels):
                rows.append(StepRow(tree.prompt, [tree.text[n] for n in path], path,
                                    [int(tree.parent[n]) for n in path], labels, weights, ti))
    return rows


def _load_base(base: str, seed: int):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from treesearch.policy import resolve

    where = resolve(base)
    torch.manual_seed(seed)  # the new head's initialisation
    tok = AutoTokenizer.from_pretrained(where)
    model = AutoModelForTokenClassification.from_pretrained(where, num_labels=1)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def _batch_loss(model, scorer, rows: list[StepRow], cfg: PRMTrainConfig, device):
    """(loss, [per labelled step] (logit, label)) of right-padded `rows` in one forward pass."""
    import torch
    import torch.nn.functional as F

    enc = [scorer.encode(r.prompt, r.steps) for r in rows]
    width = max(len(ids) for ids, _ in enc)
    ids = torch.full((len(rows), width), scorer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, _) in enumerate(enc):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., 0]  # [B, L]
    at_b, at_t, target, weight, keys = [], [], [], [], []
    for i, (row, (_, ends)) in enumerate(zip(rows, enc)):
        for t, (lab, w) in enumerate(zip(row.labels, row.weights)):
            if lab is not None:
                at_b.append(i)
                at_t.append(ends[t])
                target.append(lab)
                weight.append(w)
                keys.append((row.tree, row.parents[t]))
    s = logits[torch.tensor(at_b, device=device), torch.tensor(at_t, device=device)]
    y = torch.tensor(target, dtype=s.dtype, device=device)
    w = torch.tensor(weight, dtype=s.dtype, device=device)
    loss = (F.binary_cross_entropy_with_logits(s, y, reduction="none") * w).sum() / w.sum().clamp_min(1e-8)
    if cfg.pairwise > 0:
        hi, lo = [], []
        for a in range(len(keys)):
            for b in range(len(keys)):
                if keys[a] == keys[b] and target[a] - target[b] >= cfg.pair_margin:
                    hi.append(a)
                    lo.append(b)
        if hi:
            gap = s[torch.tensor(hi, device=device)] - s[torch.tensor(lo, device=device)]
            loss = loss + cfg.pairwise * F.softplus(-gap).mean()  # −log σ(s_w − s_l)
    return loss, list(zip(s.detach().cpu().tolist(), target))


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > that of a random negative), ties half."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return float("nan")
    order = sorted((s, i) for i, s in enumerate(list(pos) + list(neg)))
    ranks = [0.0] * len(order)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and order[j + 1][0] == order[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k][1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = sum(ranks[: len(pos)])
    return (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def _batches(rows: list[StepRow], per: int, rng: random.Random | None) -> list[list[StepRow]]:
    by_tree: dict[int, list[StepRow]] = {}
    for r in rows:
        by_tree.setdefault(r.tree, []).append(r)
    ids = list(by_tree)
    if rng is not None:
        rng.shuffle(ids)
    return [[r for t in ids[i : i + per] for r in by_tree[t]] for i in range(0, len(ids), per)]


def train_prm(trees: Sequence[Tree], cfg: PRMTrainConfig, out: str | Path, *, log=None) -> dict:
    """Train a PRM on `trees` into ``out/model``; returns (and writes to ``out/prm.json``) config + metrics.

    A directory holding a finished model is returned as it is (rerunning is free)."""
    import torch

    from treesearch.io import atomic_write_text
    from treesearch.policy import resolve_device
    from treesearch.rewards.prm import PRMConfig, PRMScorer

    out = Path(out)
    if (out / MODEL_DIR / "config.json").is_file() and (out / INFO).is_file():
        return json.loads((out / INFO).read_text())
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    rng = random.Random(cfg.seed)
    order = list(range(len(trees)))
    rng.shuffle(order)
    n_val = int(round(cfg.holdout * len(trees)))
    val_ids, train_ids = set(order[:n_val]), order[n_val:]
    rows = step_rows(trees, cfg)
    train_rows = [r for r in rows if r.tree not in val_ids]
    val_rows = [r for r in rows if r.tree in val_ids]
    if not train_rows:
        raise ValueError(f"no labelled steps in {len(train_ids)} training trees (min_judged {cfg.min_judged})")
    model, tok = _load_base(cfg.base, cfg.seed)
    model.to(device)
    prm_cfg = PRMConfig(head="token_classification", step_delimiter=cfg.step_delimiter)
    scorer = PRMScorer(model, tok, prm_cfg)  # its encoding is the one the PRM is read with
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps, losses = 0, []
    for epoch in range(cfg.epochs):
        model.train()
        for batch in _batches(train_rows, cfg.batch_trees, rng):
            loss, _ = _batch_loss(model, scorer, batch, cfg, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
            losses.append(float(loss.detach()))
        if log:
            log(f"prm epoch {epoch + 1}/{cfg.epochs}: loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    metrics = {"steps": steps, "train_rows": len(train_rows), "train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 5)}
    if val_rows:
        model.eval()
        pairs, vloss = [], []
        with torch.no_grad():
            for batch in _batches(val_rows, cfg.batch_trees, None):
                loss, got = _batch_loss(model, scorer, batch, cfg, device)
                vloss.append(float(loss))
                pairs.extend(got)
        metrics.update(val_rows=len(val_rows), val_loss=round(sum(vloss) / len(vloss), 5),
                       val_auc=round(auc([s for s, _ in pairs], [y > 0.5 for _, y in pairs]), 4))
    tmp = out / (MODEL_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "prm_config.json").write_text(json.dumps(dataclasses.asdict(prm_cfg), indent=2) + "\n")
    shutil.rmtree(out / MODEL_DIR, ignore_errors=True)
    tmp.rename(out / MODEL_DIR)
    info = {"config": dataclasses.asdict(cfg), "trees": len(trees), "val_trees": n_val, **metrics,
            "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(out / INFO, json.dumps(info, indent=2) + "\n")
    return info


def load_value_prm(path: str | Path, *, device: str = "cpu", aggregate: str = "last", signed: bool = True,
                   step_delimiter: str | None = None, sets: Sequence[str] = ()):
    """A trained PRM as a search ValueFn: V = 2·p − 1 of the node's last step (its P(correct | prefix)),
    read with the encoding it was trained with (``prm_config.json`` when present; any other Hugging
    Face PRM checkpoint with `PRMConfig`'s defaults). `aggregate` (last / min / prod) and `signed`
    (2p − 1, else p in [0, 1]) say what a node's value is; `step_delimiter`, when given, is the
    task's step delimiter, stripped from each tree step before the PRM's tag; `sets` (``KEY=VALUE``,
    the ``--prm-set`` flags) override `PRMConfig` fields last, e.g. a Math-Shepherd checkpoint's
    ``step_tag= ки``."""
    from treesearch.config import apply_overrides
    from treesearch.rewards.prm import PRMConfig, PRMScorer

    p = Path(path)
    known = {f.name for f in dataclasses.fields(PRMConfig)}
    saved = json.loads((p / "prm_config.json").read_text()) if (p / "prm_config.json").is_file() else {}
    cfg = dataclasses.replace(PRMConfig(**{k: v for k, v in saved.items() if k in known}), aggregate=aggregate, signed=signed)
    if step_delimiter is not None:
        cfg = dataclasses.replace(cfg, step_delimiter=step_delimiter)
    return PRMScorer.from_pretrained(p, apply_overrides(cfg, sets, where="--prm-set"), device=device)


def correct_steps_auc(scorer, trees: Sequence[Tree], check_step) -> tuple[float, int]:
    """(AUC, steps) of the PRM's step scores against a task's exact step checker on every node of
    `trees`: a diagnostic of what the PRM learned (the checker never enters training)."""
    prompts, step_lists, truth = [], [], []
    for tree in trees:
        for leaf in tree.leaves():
            path = tree.path(leaf)[1:]
            if not path:
                continue
            prompts.append(tree.prompt)
            step_lists.append([tree.text[n] for n in path])
            prev = tree.prompt
            row = []
            for n in path:
                step = tree.text[n].strip()
                row.append(bool(check_step(prev, step)))
                prev = step
            truth.append(row)
    scores = scorer.score_steps(prompts, step_lists)
    flat_s = [x for row in scores for x in row]
    flat_t = [x for row in truth for x in row]
    return auc(flat_s, flat_t), len(flat_s)


__all__ = ["PRMTrainConfig", "StepRow", "auc", "correct_steps_auc", "load_value_prm", "step_label", "step_rows", "train_prm"]
