"""Throughput of our Step-DPO trainer against TRL's DPOTrainer, and their loss on one batch.

    .venv/bin/python bench/trainer.py [--model embedded] [--pairs 256] [--batch-size 8] [--repeats 3]

Both trainers get the same model weights, the same 256 arithmetic pairs
(prompt = chat-templated question + reference-solution prefix, chosen = the correct
next step, rejected = that step with its first number corrupted), batch size 8,
1 epoch, β 0.1, the same learning rate, no warmup, clipping at 1.0, CPU, fp32, one
thread. TRL always appends EOS to non-conversational completions, so every pair here
sets chosen_eos/rejected_eos and both trainers score identical token sequences.

Throughput is pairs per second of one whole training call from an in-memory model and
pair list: tokenization, the reference pass and the epoch (ours also writes its final
checkpoint; TRL saves nothing). TRL runs with ``precompute_ref_log_probs=True`` (the
closest configuration: reference pass once, before training) and, for information,
with its default (reference forward on every step); ours runs with its default
prompt packing and, for information, without it (TRL's two-row layout), which
separates the gain from computing the shared prompt once from the leaner loop. Runs alternate and the best of
`--repeats` is kept, since the machine is shared.

`loss_abs_diff` is |our loss − TRL's loss| on the first 8 pairs, computed by each
trainer's own tokenization, collation and loss code, with a reference that differs
from the policy (the policy with Gaussian noise added), so the loss is not log 2.

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def arithmetic_pairs(tokenizer, n: int, *, seed: int = 0) -> list[dict]:
    """`n` pairs from reference solutions of train problems (2-5 operations)."""
    from tasks.arithmetic import ArithmeticTask
    from treesearch.prompting import render_prompt

    rng = random.Random(seed)
    out = []
    for problem in ArithmeticTask().problems("train", n, seed=seed):
        steps = problem.solution.split("\n")
        k = rng.randrange(len(steps))
        good = steps[k]
        m = re.search(r"\d+", good)
        bad = good[: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + good[m.end():]
        out.append({"prompt": render_prompt(tokenizer, problem.prompt) + "".join(s + "\n" for s in steps[:k]),
                    "chosen": good + "\n", "rejected": bad + "\n", "problem_id": problem.id, "round": 0,
                    "depth": k, "kind": "first_error", "chosen_eos": True, "rejected_eos": True})
    return out


def run_ours(model, tok, pairs, args, lr, *, packed: bool = True):
    from treesearch.train import StepDPOConfig, train_step_dpo

    cfg = StepDPOConfig(beta=0.1, learning_rate=lr, epochs=1, batch_size=args.batch_size, warmup_ratio=0.0,
                        max_grad_norm=1.0, save_steps=0, progress=False, device="cpu", seed=0, pack_prompt=packed)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        result = train_step_dpo(model, pairs, cfg, d, tokenizer=tok)
        return time.perf_counter() - t, result.metrics["train/loss_mean"]


def trl_args(out: str, args, lr, *, precompute: bool):
    from trl import DPOConfig

    return DPOConfig(output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, beta=0.1,
                     learning_rate=lr, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
                     use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
                     precompute_ref_log_probs=precompute, precompute_ref_batch_size=32, disable_tqdm=True,
                     dataloader_num_workers=0, seed=0, max_length=1024)


def run_trl(model, tok, pairs, args, lr, *, precompute: bool):
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        trainer = DPOTrainer(model=model, args=trl_args(d, args, lr, precompute=precompute),
                             train_dataset=Dataset.from_list(pairs), processing_class=tok)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict; ours logs to a file
        out = trainer.train()
        return time.perf_counter() - t, out.training_loss


def first_batch_losses(base, tok, pairs, args) -> tuple[float, float]:
    """(ours, TRL's) DPO loss on pairs[:batch] with a perturbed reference."""
    import torch
    from datasets import Dataset
    from trl import DPOTrainer

    from treesearch.train import StepDPOConfig
    from treesearch.train.data import as_pairs, collate, tokenize_pairs
    from treesearch.train.trainer import reference_logps, sequence_logps, step_dpo_objective

    policy = copy.deepcopy(base)
    ref = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    batch = pairs[: args.batch_size]
    tp = tokenize_pairs(as_pairs(batch), tok, max_length=1024)
    ref_w, ref_l, _ = reference_logps(ref, tp, batch_size=32, pad_id=tok.pad_token_id, device="cpu")
    idx = list(range(len(batch)))
    with torch.no_grad():
        logp, ntok = sequence_logps(policy, collate(tp, idx, tok.pad_token_id, packed=True))
        ours = step_dpo_objective(logp, ntok, ref_w, ref_l, StepDPOConfig(beta=0.1))[0].item()

    with tempfile.TemporaryDirectory() as d:
        trainer = DPOTrainer(model=copy.deepcopy(base), ref_model=copy.deepcopy(ref),
                             args=trl_args(d, args, 1e-5, precompute=False),
                             train_dataset=Dataset.from_list(batch), processing_class=tok)
        inputs = trainer.data_collator([trainer.train_dataset[i] for i in idx])
        with torch.no_grad():
            theirs = trainer.compute_loss(trainer.model, inputs).item()
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-5)
    args = ap.parse_args()

    import warnings

    import torch
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames inside TRL
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from treesearch.policy import load_policy

    base, tok = load_policy(args.model, device="cpu", dtype="float32")
    pairs = arithmetic_pairs(tok, args.pairs)
    times = {"ours": [], "ours_unpacked": [], "trl_precompute": [], "trl_default": []}
    losses_ = {}
    run_trl(copy.deepcopy(base), tok, pairs[:16], args, args.lr, precompute=True)  # warm up imports and kernels
    run_ours(copy.deepcopy(base), tok, pairs[:16], args, args.lr)
    for _ in range(args.repeats):
        for name in times:
            model = copy.deepcopy(base)
            if name.startswith("ours"):
                sec, loss = run_ours(model, tok, pairs, args, args.lr, packed=name == "ours")
            else:
                sec, loss = run_trl(model, tok, pairs, args, args.lr, precompute=name == "trl_precompute")
            times[name].append(sec)
            losses_[name] = loss
            print(f"{name:15s} {sec:7.3f} s  {len(pairs) / sec:7.1f} pairs/s  train loss {loss:.5f}", flush=True)
    ours_loss, trl_loss = first_batch_losses(base, tok, pairs, args)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "pairs": len(pairs), "batch_size": args.batch_size, "epochs": 1, "device": "cpu", "threads": 1,
        "ours_pairs_per_s": round(len(pairs) / best["ours"], 2),
        "ours_unpacked_pairs_per_s": round(len(pairs) / best["ours_unpacked"], 2),
        "trl_pairs_per_s": round(len(pairs) / best["trl_precompute"], 2),
        "trl_default_pairs_per_s": round(len(pairs) / best["trl_default"], 2),
        "speedup_vs_trl": round(best["trl_precompute"] / best["ours"], 3),
        "speedup_vs_trl_default": round(best["trl_default"] / best["ours"], 3),
        "first_batch_loss_ours": ours_loss, "first_batch_loss_trl": trl_loss,
        "loss_abs_diff": abs(ours_loss - trl_loss),
        "train_loss_mean_ours": losses_["ours"], "train_loss_mean_trl": losses_["trl_precompute"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
