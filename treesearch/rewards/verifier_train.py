"""A verifier trained from the policy's own samples: the policy fine-tuned to rank a problem's right
solutions above its wrong ones by its mean token log-probability.

The policy's mean log-probability already ranks a problem's samples better than chance (it is
best-of-N's default score), but as a generator's likelihood, not a judge's. Here a copy of the
policy is trained on the judged samples of training problems with a Bradley–Terry loss over
pairs (right y⁺, wrong y⁻) of the same problem, on length-normalised log-likelihoods (as in
SimPO)::

    s(y) = mean_i log πθ(y_i | x, y_<i)        L = −log σ(β·(s(y⁺) − s(y⁻)))

Only within-problem pairs enter: the verifier learns what separates solutions of one question,
never how hard a question looks (what the PRMs trained on step labels learned here). It is saved
as a causal-LM checkpoint with a ``prm_config.json`` for the ``likelihood`` head, so `PRMScorer`
reads ``p = exp(β·s)`` (the Bradley–Terry strength it was trained with) and every PRM-guided
strategy can use it; its rows are encoded by that very scorer, so training and test time read
the same tokens. The samples come from any trees: every finished leaf is a solution, graded by
the task's verifier against the tree's gold answer (`graded_samples`).

Its backbone can first learn the task on its own (``sft_steps``): supervised fine-tuning on
reference solutions of training problems, the way Cobbe et al.'s verifiers start from a model
fine-tuned on the training set. The policy stays as it is; only its judge gets the task's
references, so a weak policy can be searched with a stronger verifier (a PRM on a stronger base,
as in search-and-learn). That stage's own greedy skill is worth reporting beside any gain it buys.

    rows = graded_samples(read_trees("runs/bon/trees.jsonl"), task)   # best-of-N trees of training problems
    refs = references(task.problems("train", 32_000, seed=1))          # (prompt, reference solution) records
    info = train_verifier(rows, VerifierTrainConfig(base="embedded", sft_steps=500), "runs/verifier", references=refs)
    prm = load_value_prm("runs/verifier/model", signed=False)         # head: likelihood
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Callable, Sequence

from treesearch.config import field
from treesearch.tree import Tree

MODEL_DIR = "model"


@dataclasses.dataclass(frozen=True)
class VerifierTrainConfig:
    """How the verifier is trained (`train_verifier`)."""

    base: str = field("embedded", "the model it starts from: the policy whose samples it ranks (checkpoint or 'embedded')")
    beta: float = field(20.0, "β of the Bradley–Terry loss on mean log-probability differences (and of the saved head)")
    lr: float = field(3e-5, "AdamW learning rate")
    epochs: int = field(1, "passes over the pairs (each epoch draws new pairs)")
    pairs_per_problem: int = field(4, "(right, wrong) pairs drawn per problem and epoch")
    batch_pairs: int = field(32, "pairs per optimizer step")
    holdout: float = field(0.1, "share of problems held out for the within-problem AUC (0: none)")
    prompt_template: str = field("chat", "the question before the steps, as the policy saw it: chat (the base tokenizer's chat template) or a format string with {prompt}")
    final_tag: str = field("eos", "read after a solution's last step when the sample ended there: 'eos' (the base "
                                  "tokenizer's end-of-turn token, as the policy wrote it) or any text; '' = step_delimiter")
    step_delimiter: str = field("\n", "the task's step delimiter (how the scorer splits a solution into steps)")
    sft_steps: int = field(0, "optimizer steps of supervised fine-tuning on reference solutions before the ranking "
                              "loss (0: none; needs references): the verifier's backbone learns the task beyond the policy")
    sft_lr: float = field(1e-3, "peak AdamW learning rate of the reference fine-tuning (linear warm-up, cosine decay)")
    sft_batch: int = field(64, "reference solutions per fine-tuning step")
    seed: int = field(0, "pair draws, holdout split and initialisation")
    device: str = field("auto", "auto (CUDA when present), cpu, cuda[:N]")
    dtype: str = field("float32", "float32, or bfloat16 (bf16 weights trained through fp32 master copies and AdamW state)")
    gradient_checkpointing: bool = field(False, "recompute each layer's activations in the backward pass (a real base's long rows)")
    progress: bool = field(True, "a tqdm bar over the optimizer steps")

    def __post_init__(self):
        for name in ("beta", "lr", "sft_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VerifierTrainConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("epochs", "pairs_per_problem", "batch_pairs", "sft_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"VerifierTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"VerifierTrainConfig.dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.sft_steps < 0:
            raise ValueError(f"VerifierTrainConfig.sft_steps must be >= 0, got {self.sft_steps}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"VerifierTrainConfig.holdout must be in [0, 1), got {self.holdout}")


@dataclasses.dataclass(frozen=True)
class Graded:
    """One problem's solutions, each (text, right)."""

    id: str
    prompt: str
    solutions: tuple[tuple[str, bool], ...]


def graded_samples(trees: Sequence[Tree], task) -> list[Graded]:
    """Every finished leaf of every tree as a solution, judged by `task.score` against the tree's gold
    answer (a leaf cut at a limit is skipped: nothing to judge)."""
    from tasks.base import Problem
    from treesearch.search.expand import finished

    out = []
    for t in trees:
        problem = Problem(id=t.problem_id, prompt=t.prompt, answer=t.answer,
                          meta={k: v for k, v in t.meta.items() if k != "search"})
        texts = [t.text_of(n) for n in t.leaves() if n and finished(t, n)]
        sols = tuple((text, float(task.score(problem, text)) >= 0.5) for text in texts)
        if sols:
            out.append(Graded(t.problem_id, t.prompt, sols))
    return out


def references(problems) -> list[Graded]:
    """Problems with a reference solution (`Problem.solution`) as one-solution records for the fine-tuning
    stage; problems without one are skipped."""
    return [Graded(p.id, p.prompt, ((p.solution, True),)) for p in problems if p.solution]


def _encode(scorer, g: Graded) -> list[tuple[list[int], int, bool]]:
    """(PRM token ids, first step token, right) of each solution, encoded as the likelihood head reads it."""
    start = len(scorer.prompt_ids(g.prompt))
    rows = []
    for text, right in g.solutions:
        ids, ends = scorer.clip(*scorer.encode(g.prompt, scorer.steps_of(text)))
        if ends and ends[-1] >= start:
            rows.append((ids[: ends[-1] + 1], start, right))
    return rows


def mean_logps(model, rows: Sequence[tuple[list[int], int]], pad_id: int, device) -> "torch.Tensor":
    """Mean log πθ of each row's tokens from its start to its end: [len(rows)] float32, differentiable."""
    import torch

    from treesearch.train.logps import continuation_logps, right_pad

    ids, mask = right_pad([r for r, _ in rows], pad_id)
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    lp, own = continuation_logps(model, inputs, [r for r, _ in rows], [s0 for _, s0 in rows])
    total = torch.zeros(len(rows), device=lp.device).index_add(0, own, lp)
    count = torch.zeros(len(rows), device=lp.device).index_add(0, own, torch.ones_like(lp))
    return total / count.clamp(min=1)


def within_auc(scores: Sequence[Sequence[float]], right: Sequence[Sequence[bool]]) -> float:
    """P(a right solution outscores a wrong one of the same problem), ties half: each problem's AUC
    (`prm_train.auc`) weighted by its (right, wrong) pair count; nan without such pairs."""
    from treesearch.rewards.prm_train import auc

    num = den = 0.0
    for s, r in zip(scores, right):
        pairs = sum(r) * (len(r) - sum(r))
        if pairs:
            num += pairs * auc(s, r)
            den += pairs
    return num / den if den else float("nan")


def _score(model, encoded, pad_id, device, batch: int = 64) -> list[list[float]]:
    import torch

    model.eval()
    with torch.no_grad():
        out = []
        for rows in encoded:
            vals = []
            for k in range(0, len(rows), batch):
                vals += mean_logps(model, [(r, s) for r, s, _ in rows[k : k + batch]], pad_id, device).tolist()
            out.append(vals)
    return out


def _pairs(encoded, n: int, rng: random.Random):
    pairs = []
    for rows in encoded:
        pos = [(r, s) for r, s, ok in rows if ok]
        neg = [(r, s) for r, s, ok in rows if not ok]
        if pos and neg:
            pairs += [(rng.choice(pos), rng.choice(neg)) for _ in range(n)]
    rng.shuffle(pairs)
    return pairs


def _sft(model, rows, cfg: VerifierTrainConfig, pad_id: int, device, rng: random.Random, log) -> tuple[float, float]:
    """`cfg.sft_steps` steps of next-token NLL on reference rows (mean over each row's solution tokens), linear
    warm-up over the first 10% then cosine decay from `cfg.sft_lr`; gradients clipped at norm 1. Returns the
    mean loss of the first and of the last ten steps."""
    import math

    from treesearch.train.precision import AdamWStep

    opt = AdamWStep(model, lr=cfg.sft_lr, bf16=cfg.dtype == "bfloat16", clip=1.0)
    warm = max(1, cfg.sft_steps // 10)
    steps = range(cfg.sft_steps)
    if cfg.progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="verifier references", unit="step")
    model.train()
    losses = []
    for k in steps:
        lr = cfg.sft_lr * min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * k / cfg.sft_steps))
        loss = -mean_logps(model, rng.sample(rows, min(cfg.sft_batch, len(rows))), pad_id, device).mean()
        loss.backward()
        opt.step(lr)
        losses.append(float(loss.detach()))
    first, last = sum(losses[:10]) / len(losses[:10]), sum(losses[-10:]) / len(losses[-10:])
    log(f"verifier references: {cfg.sft_steps} steps over {len(rows)} solutions, loss {first:.4f} -> {last:.4f}")
    return first, last


def _fit(model, encoded, cfg: VerifierTrainConfig, pad_id: int, device, rng: random.Random, log) -> tuple[list[float], int]:
    """The optimizer steps over `cfg.epochs` epochs of freshly drawn pairs: (losses, pairs drawn)."""
    import torch

    from treesearch.train.precision import AdamWStep

    opt = AdamWStep(model, lr=cfg.lr, bf16=cfg.dtype == "bfloat16")
    losses, n_pairs = [], 0
    for epoch in range(cfg.epochs):
        pairs = _pairs(encoded, cfg.pairs_per_problem, rng)
        if not pairs:
            raise ValueError("no problem has both a right and a wrong solution: nothing to train the verifier on")
        n_pairs += len(pairs)
        steps = range(0, len(pairs), cfg.batch_pairs)
        if cfg.progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"verifier epoch {epoch + 1}/{cfg.epochs}", unit="step")
        model.train()
        for k in steps:
            chunk = pairs[k : k + cfg.batch_pairs]
            s = mean_logps(model, [p for p, _ in chunk] + [q for _, q in chunk], pad_id, device)
            loss = -torch.nn.functional.logsigmoid(cfg.beta * (s[: len(chunk)] - s[len(chunk):])).mean()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        log(f"verifier epoch {epoch + 1}: {len(pairs)} pairs, loss {sum(losses[-len(steps):]) / len(steps):.4f}")
    return losses, n_pairs


def _likelihood_scorer(model, tok, cfg: VerifierTrainConfig):
    """The PRM scorer that reads the verifier as it will be loaded: the likelihood head on the last step,
    the solution closed by `cfg.final_tag` ('eos': the tokenizer's own)."""
    from treesearch.rewards.prm import PRMConfig, PRMScorer

    final_tag = tok.eos_token if cfg.final_tag == "eos" else cfg.final_tag
    if final_tag is None:
        raise ValueError(f"{cfg.base}: the tokenizer has no eos token for final_tag 'eos'; give the text")
    return PRMScorer(model, tok, PRMConfig(head="likelihood", beta=cfg.beta, aggregate="last",
                                           step_delimiter=cfg.step_delimiter, step_tag=cfg.step_delimiter or "\n",
                                           final_tag=final_tag, prompt_template=cfg.prompt_template))


def train_verifier(samples: Sequence[Graded], cfg: VerifierTrainConfig, out_dir: str | Path, *,
                   references: Sequence[Graded] = (), log: Callable[[str], None] = lambda _: None) -> dict:
    """Train the verifier on `samples` (see the module docstring), first fine-tuned for `cfg.sft_steps` on
    `references` (`references(problems)`) when asked; writes ``OUT/model`` (a causal-LM checkpoint with
    ``prm_config.json`` for the likelihood head) and ``OUT/verifier.json`` (config and metrics: pairs,
    losses, within-problem AUC of the held-out problems before, after the references and at the end). A
    finished output is reported, not retrained."""
    import torch

    from treesearch.policy import load_policy, resolve_device
    from treesearch.train.precision import checkpointing

    out = Path(out_dir)
    if (out / "verifier.json").is_file() and (out / MODEL_DIR / "config.json").is_file():
        return json.loads((out / "verifier.json").read_text())
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, tok = load_policy(cfg.base, device=device, dtype=cfg.dtype)
    scorer = _likelihood_scorer(model, tok, cfg)
    enc_train, enc_val = _split(scorer, samples, cfg.holdout, rng)
    right_val = [[ok for _, _, ok in rows] for rows in enc_val]

    def val_auc() -> float:  # within-problem AUC on the held-out problems, now
        return within_auc(_score(model, enc_val, scorer.pad_id, device), right_val)

    n_solutions = sum(len(r) for r in enc_train)
    info: dict = {"config": dataclasses.asdict(cfg), "problems": len(enc_train), "val_problems": len(enc_val),
                  "solutions": n_solutions,
                  "right_share": sum(ok for rows in enc_train for *_, ok in rows) / max(1, n_solutions)}
    refs = [(r, s0) for g in references for r, s0, _ in _encode(scorer, g)] if cfg.sft_steps else []
    if cfg.sft_steps and not refs:  # before any work: the stage cannot run
        raise ValueError("VerifierTrainConfig.sft_steps > 0 needs reference solutions (train_verifier(references=...))")
    if enc_val:
        info["val_auc_base"] = val_auc()
    with checkpointing(model, cfg.gradient_checkpointing):
        if refs:
            first, last = _sft(model, refs, cfg, scorer.pad_id, device, rng, log)
            info.update(references=len(refs), sft_first_loss=first, sft_loss=last)
            if enc_val:
                info["val_auc_sft"] = val_auc()
        losses, n_pairs = _fit(model, enc_train, cfg, scorer.pad_id, device, rng, log)
    info.update(pairs=n_pairs, cut_steps=scorer.steps_cut, first_loss=losses[0], train_loss=sum(losses[-10:]) / len(losses[-10:]))
    if enc_val:
        info["val_auc"] = val_auc()
    model.eval()
    _save(out, model, tok, scorer.config, info)
    return info


def _split(scorer, samples: Sequence[Graded], holdout: float, rng: random.Random) -> tuple[list, list]:
    """The problems shuffled by `rng` and encoded: (training, held-out), the held-out share `holdout`."""
    order = list(samples)
    rng.shuffle(order)
    n_val = int(round(holdout * len(order)))
    return [_encode(scorer, g) for g in order[n_val:]], [_encode(scorer, g) for g in order[:n_val]]


def _save(out: Path, model, tok, prm_config, info: dict) -> None:
    """``OUT/model`` (checkpoint, tokenizer, ``prm_config.json``) then ``OUT/verifier.json``, each atomic."""
    from treesearch.io import atomic_write_text
    from treesearch.train.checkpoints import atomic_dir

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "prm_config.json").write_text(json.dumps(dataclasses.asdict(prm_config), indent=2) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    atomic_dir(out / MODEL_DIR, write)
    atomic_write_text(out / "verifier.json", json.dumps(info, indent=2) + "\n")


__all__ = ["Graded", "MODEL_DIR", "VerifierTrainConfig", "graded_samples", "mean_logps", "references", "train_verifier",
           "within_auc"]
