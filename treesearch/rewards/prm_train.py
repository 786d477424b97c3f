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

At a real model's scale (2k-token solutions, a 150k-token vocabulary, billions
of weights) a batch of 16 trees does not fit one forward pass, so an optimizer
step's trees go through in micro-batches of whole trees of at most
``batch_tokens`` padded tokens, the gradients accumulated with the step's
totals as the normalisers (the same update as one pass, so sibling pairs still
meet). ``max_length`` (default: the base's context) cuts a row after that
many PRM tokens; the steps whose tag lies past the cut lose their label
(counted as ``cut_steps``), and the others keep exactly their scores, since
the model is causal. ``dtype:
bfloat16`` holds the weights in bf16 with fp32 master copies and AdamW state
(`treesearch.train.precision`), and ``gradient_checkpointing`` recomputes each
layer in the backward pass.

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
DTYPES = ("float32", "bfloat16")
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
    batch_tokens: int = _f(16384, "most padded PRM tokens per forward pass: an optimizer step's trees run in "
                                  "micro-batches of whole trees, gradients accumulated exactly (a tree over the cap "
                                  "runs alone); 0 = all of them in one pass")
    max_length: int = _f(0, "cut each row after this many PRM tokens; steps whose tag lies past the cut are unlabelled "
                            "(cut_steps in prm.json), the rest keep their exact scores; 0 = the base's context "
                            "(max_position_embeddings)")
    dtype: str = _f("float32", "weights held for training: float32, or bfloat16 with fp32 master weights and AdamW state")
    gradient_checkpointing: bool = _f(False, "recompute each decoder layer in the backward pass instead of storing its activations")
    progress: bool = _f(True, "show a tqdm bar over the optimizer steps")
    seed: int = _f(0, "seed of the head's initialisation, the split and the batch order")
    device: str = _f("auto", "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")

    def __post_init__(self):
        if self.label not in LABELS:
            raise ValueError(f"PRMTrainConfig.label must be one of {', '.join(LABELS)}, got {self.label!r}")
        if self.min_judged < 1 or self.epochs < 1 or self.batch_trees < 1:
            raise ValueError("PRMTrainConfig.min_judged, epochs and batch_trees must be >= 1")
        if self.batch_tokens < 0 or self.max_length < 0:
            raise ValueError("PRMTrainConfig.batch_tokens and max_length must be >= 0 (0 = off)")
        if self.dtype not in DTYPES:
            raise ValueError(f"PRMTrainConfig.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
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


def _load_base(base: str, seed: int, dtype: str, device: str):
    import torch
    import transformers
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from treesearch.policy import resolve, resolve_dtype

    where = resolve(base)
    torch.manual_seed(seed)  # the new head's initialisation
    tok = AutoTokenizer.from_pretrained(where)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the new score head is "missing" from a policy checkpoint, as meant
    try:
        model = AutoModelForTokenClassification.from_pretrained(where, num_labels=1, dtype=resolve_dtype(dtype, device))
    finally:
        transformers.logging.set_verbosity(verbosity)
    if tok.pad_token_id is None:  # Llama-3 ships none; padding sits after every scored position anyway
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


@dataclasses.dataclass
class _Encoded:
    """A StepRow as the PRM reads it: token ids (cut at max_length) and, per labelled step kept, its
    tag position, label, weight and sibling key (tree, parent)."""

    tree: int
    ids: list[int]
    at: list[int]
    labels: list[float]
    weights: list[float]
    keys: list[tuple[int, int]]


def encode_rows(rows: Sequence[StepRow], scorer, max_length: int = 0) -> tuple[list[_Encoded], int]:
    """(rows encoded as `scorer` reads them, steps unlabelled by the cut): a row is cut after
    `max_length` tokens (0: never), and a step whose tag lies past the cut loses its label."""
    out, cut = [], 0
    for r in rows:
        ids, ends = scorer.encode(r.prompt, r.steps)
        if max_length and len(ids) > max_length:
            ids = ids[:max_length]
        enc = _Encoded(r.tree, ids, [], [], [], [])
        for e, lab, w, parent in zip(ends, r.labels, r.weights, r.parents):
            if lab is None:
                continue
            if e >= len(ids):
                cut += 1
                continue
            enc.at.append(e)
            enc.labels.append(lab)
            enc.weights.append(w)
            enc.keys.append((r.tree, parent))
        if enc.at:
            out.append(enc)
    return out, cut


def _pairs(group: Sequence[_Encoded], margin: float) -> tuple[list[int], list[int]]:
    """(hi, lo) indices into the group's labelled steps, in order: sibling steps (same tree and
    parent) whose labels differ by at least `margin`."""
    labels = [y for e in group for y in e.labels]
    keys = [k for e in group for k in e.keys]
    by_key: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    hi, lo = [], []
    for idx in by_key.values():
        for a in idx:
            for b in idx:
                if a != b and labels[a] - labels[b] >= margin:
                    hi.append(a)
                    lo.append(b)
    return hi, lo


def _scores(model, group: Sequence[_Encoded], pad_id: int, device):
    """The PRM's logits [labelled steps of the group, in order] from one right-padded forward pass."""
    import torch

    from treesearch.train.logps import right_pad

    ids, mask = right_pad([e.ids for e in group], pad_id)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., 0]  # [B, L]
    rows = torch.tensor([i for i, e in enumerate(group) for _ in e.at], device=device)
    cols = torch.tensor([t for e in group for t in e.at], device=device)
    return logits[rows, cols].float()


def _loss_terms(s, group: Sequence[_Encoded], pairs: tuple[list[int], list[int]]):
    """(weighted BCE sum, sum of −log σ(s_w − s_l) over `pairs` (hi, lo)) of one micro-batch's logits `s`."""
    import torch
    import torch.nn.functional as F

    y = torch.tensor([v for e in group for v in e.labels], dtype=s.dtype, device=s.device)
    w = torch.tensor([v for e in group for v in e.weights], dtype=s.dtype, device=s.device)
    bce = (F.binary_cross_entropy_with_logits(s, y, reduction="none") * w).sum()
    hi, lo = pairs
    pair = F.softplus(s[lo] - s[hi]).sum() if hi else s.new_zeros(())  # −log σ(s_w − s_l)
    return bce, pair


def _by_tree(rows: Sequence[_Encoded]) -> list[list[_Encoded]]:
    """`rows` grouped by tree, trees in order of first appearance."""
    trees: dict[int, list[_Encoded]] = {}
    for e in rows:
        trees.setdefault(e.tree, []).append(e)
    return list(trees.values())


def _micro_batches(batch: Sequence[_Encoded], batch_tokens: int) -> list[list[_Encoded]]:
    """`batch` cut into runs of whole trees whose padded size (rows × longest row) stays within
    `batch_tokens` (0: one run); a tree over the cap runs alone."""
    if not batch_tokens:
        return [list(batch)]
    out: list[list[_Encoded]] = []
    cur: list[_Encoded] = []
    for rows in _by_tree(batch):
        grown = cur + rows
        if cur and len(grown) * max(len(e.ids) for e in grown) > batch_tokens:
            out.append(cur)
            grown = list(rows)
        cur = grown
    if cur:
        out.append(cur)
    return out


def _batch_loss(model, batch: Sequence[_Encoded], cfg: PRMTrainConfig, pad_id: int, device, *, backward: bool):
    """(loss, [(logit, label)] per labelled step, micro-batches run) of one optimizer step's rows:
    weighted-mean BCE + pairwise × mean pair term, each micro-batch's share of the step's totals
    backpropagated as it goes (`backward`), so the gradient is that of the whole batch."""
    total_w = sum(w for e in batch for w in e.weights)
    micro = _micro_batches(batch, cfg.batch_tokens)  # whole trees: every sibling pair lies in one micro-batch
    pairs = [_pairs(g, cfg.pair_margin) if cfg.pairwise > 0 else ([], []) for g in micro]
    total_pairs = sum(len(hi) for hi, _ in pairs)
    loss_value, got = 0.0, []
    for group, group_pairs in zip(micro, pairs):
        s = _scores(model, group, pad_id, device)
        bce, pair = _loss_terms(s, group, group_pairs)
        loss = bce / max(total_w, 1e-8) + (cfg.pairwise * pair / total_pairs if total_pairs else 0.0)
        if backward:
            loss.backward()
        loss_value += float(loss.detach())
        got.extend(zip(s.detach().cpu().tolist(), [y for e in group for y in e.labels]))
    return loss_value, got, len(micro)


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


def _batches(rows: list[_Encoded], per: int, rng: random.Random | None) -> list[list[_Encoded]]:
    """Optimizer steps of `per` whole trees each, trees shuffled by `rng` (None: in order)."""
    trees = _by_tree(rows)
    if rng is not None:
        rng.shuffle(trees)
    return [[r for t in trees[i : i + per] for r in t] for i in range(0, len(trees), per)]


def _fit(model, rows: list[_Encoded], cfg: PRMTrainConfig, pad_id: int, device, rng: random.Random, log) -> dict:
    """The optimizer steps over `cfg.epochs` shuffled passes over `rows` (`cfg.batch_trees` trees a step)."""
    from tqdm.auto import tqdm

    from treesearch.train.precision import AdamWStep, checkpointing

    opt = AdamWStep(model, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, bf16=cfg.dtype == "bfloat16", clip=1.0)
    model.train()
    passes = [_batches(rows, cfg.batch_trees, rng) for _ in range(cfg.epochs)]
    bar = tqdm(total=sum(len(p) for p in passes), desc="train-prm", disable=not cfg.progress, leave=False)
    losses, micro = [], 0
    with checkpointing(model, cfg.gradient_checkpointing):
        for epoch, batches in enumerate(passes):
            for batch in batches:
                loss, _, m = _batch_loss(model, batch, cfg, pad_id, device, backward=True)
                opt.step()
                losses.append(loss)
                micro += m
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            if log:
                log(f"prm epoch {epoch + 1}/{cfg.epochs}: loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    bar.close()
    return {"steps": len(losses), "micro_batches": micro, "first_loss": round(losses[0], 5),
            "train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 5)}


def trained(out: str | Path) -> dict | None:
    """What `train_prm` wrote to `out` when it holds a finished model (``prm.json``), else None."""
    out = Path(out)
    if (out / MODEL_DIR / "config.json").is_file() and (out / INFO).is_file():
        return json.loads((out / INFO).read_text())
    return None


def train_prm(trees: Sequence[Tree], cfg: PRMTrainConfig, out: str | Path, *, log=None) -> dict:
    """Train a PRM on `trees` into ``out/model``; returns (and writes to ``out/prm.json``) config + metrics.

    A directory holding a finished model is returned as it is (rerunning is free)."""
    import torch

    from treesearch.io import atomic_write_text
    from treesearch.policy import resolve_device
    from treesearch.rewards.prm import PRMConfig, PRMScorer

    out = Path(out)
    done = trained(out)
    if done is not None:
        return done
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    rng = random.Random(cfg.seed)
    order = list(range(len(trees)))
    rng.shuffle(order)
    n_val = int(round(cfg.holdout * len(trees)))
    val_ids = set(order[:n_val])
    model, tok = _load_base(cfg.base, cfg.seed, cfg.dtype, device)
    model.to(device)
    prm_cfg = PRMConfig(head="token_classification", step_delimiter=cfg.step_delimiter)
    scorer = PRMScorer(model, tok, prm_cfg)  # its encoding is the one the PRM is read with
    limit = cfg.max_length or int(getattr(model.config, "max_position_embeddings", 0) or 0)
    rows, cut = encode_rows(step_rows(trees, cfg), scorer, limit)
    train_rows = [r for r in rows if r.tree not in val_ids]
    val_rows = [r for r in rows if r.tree in val_ids]
    if not train_rows:
        raise ValueError(f"no labelled steps in {len(trees) - n_val} training trees (min_judged {cfg.min_judged})")
    metrics = {"train_rows": len(train_rows), "cut_steps": cut,
               **_fit(model, train_rows, cfg, scorer.pad_id, device, rng, log)}
    if val_rows:
        model.eval()
        with torch.no_grad():
            vloss, pairs, _ = _batch_loss(model, val_rows, cfg, scorer.pad_id, device, backward=False)
        metrics.update(val_rows=len(val_rows), val_loss=round(vloss, 5),
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


def saved_prm_config(path: str | Path):
    """The `PRMConfig` a checkpoint was saved with (its ``prm_config.json``; unknown keys ignored), or
    `PRMConfig`'s defaults for any other Hugging Face PRM checkpoint."""
    from treesearch.rewards.prm import PRMConfig

    p = Path(path) / "prm_config.json"
    known = {f.name for f in dataclasses.fields(PRMConfig)}
    saved = json.loads(p.read_text()) if p.is_file() else {}
    return PRMConfig(**{k: v for k, v in saved.items() if k in known})


def load_value_prm(path: str | Path, *, device: str = "auto", aggregate: str = "last", signed: bool = True,
                   step_delimiter: str | None = None, sets: Sequence[str] = ()):
    """A trained PRM as a search ValueFn: V = 2·p − 1 of the node's last step (its P(correct | prefix)),
    read with the encoding it was trained with (``prm_config.json`` when present; any other Hugging
    Face PRM checkpoint with `PRMConfig`'s defaults). `aggregate` (last / min / prod) and `signed`
    (2p − 1, else p in [0, 1]) say what a node's value is; `step_delimiter`, when given, is the
    task's step delimiter, stripped from each tree step before the PRM's tag; `sets` (``KEY=VALUE``,
    the ``--prm-set`` flags) override `PRMConfig` fields last, e.g. a Math-Shepherd checkpoint's
    ``step_tag= ки``."""
    from treesearch.config import apply_overrides
    from treesearch.rewards.prm import PRMScorer

    p = Path(path)
    cfg = dataclasses.replace(saved_prm_config(p), aggregate=aggregate, signed=signed)
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
