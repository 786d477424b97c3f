"""Peak memory of the PRM trainer at a real model's shape: micro-batches, bf16 and gradient checkpointing
against one pass over the whole optimizer step's trees in fp32 (what `train_prm` did before).

    .venv/bin/python bench/prm_train.py [--trees 16] [--steps 16] [--step-tokens 128] [--leaves 2]

The PRM starts from a randomly initialised Qwen2 (hidden 256, 4 layers, 4 heads / 2 KV heads, MLP
1,024) around the real Qwen3 tokenizer (151,669 tokens, the npm fixture), so its embedding is a real
model's; the head is the one-logit token classifier `train_prm` puts on. The trees are synthetic
chains of ``--steps`` steps of about ``--step-tokens`` Qwen3 tokens each (digits and operators, one
token per character), ending in ``--leaves`` sibling terminals, one verified right and the others
wrong, so every row is a 2,000-token solution (the question included) and every step is labelled.
One optimizer step over ``--trees`` trees (``batch_trees``), 2 epochs.

Each configuration runs in its own fresh subprocess (same imports first) and reports its peak
resident set size (``ru_maxrss``, every CPU allocation torch makes) and the part above the RSS
just before training:

* ``whole_fp32``: ``batch_tokens 0`` (all rows in one forward pass), fp32, no checkpointing;
* ``micro``: the default ``batch_tokens`` (16,384 padded tokens per pass), fp32;
* ``micro_gc_bf16``: the same plus gradient checkpointing and bf16 weights with fp32 masters.

``weight_diff`` is the largest absolute difference between the weights ``whole_fp32`` and ``micro``
trained (dropout off: micro-batching must give the same update). The last line is one JSON object
with ``peak_gib`` and ``train_gib`` per configuration, ``train_mem_ratio`` (``micro_gc_bf16`` ÷
``whole_fp32``, training's own memory), ``weight_diff`` and ``seconds``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "whole_fp32": {"batch_tokens": 0},
    "micro": {},
    "micro_gc_bf16": {"gradient_checkpointing": True, "dtype": "bfloat16"},
}


def build_base(path: Path) -> None:
    """The Qwen2 model with the real Qwen3 tokenizer, saved as a policy checkpoint the PRM starts from."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from treesearch.testing_models import load_tokenizer

    tok = load_tokenizer("qwen3")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=1024, max_position_embeddings=4096,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      hidden_dropout=0.0, classifier_dropout=0.0)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def make_trees(n: int, steps: int, step_tokens: int, leaves: int, seed: int):
    """n chains of `steps` arithmetic-looking steps, each ending in `leaves` terminal siblings (one right)."""
    from treesearch.tree import CORRECT, ROOT, WRONG, Tree

    rng = random.Random(seed)

    def step() -> str:
        return "".join(rng.choice("0123456789+-*=") for _ in range(step_tokens - 1)) + "\n"

    trees = []
    for i in range(n):
        t = Tree(problem_id=f"p{i}", prompt="Q: " + step().strip() + "=?", prompt_ids=[0], answer="0")
        node = ROOT
        for _ in range(steps - 1):
            node = t.add_child(node, text=step(), token_ids=[0], logprobs=[], finish_reason="length")
        for j in range(leaves):
            leaf = t.add_child(node, text=step(), token_ids=[0], logprobs=[], finish_reason="stop", terminal=True)
            t.verdict[leaf] = CORRECT if j == 0 else WRONG
        trees.append(t)
    return trees


def _rss() -> float:
    import psutil

    return psutil.Process().memory_info().rss


def child(base: str, out: str, trees: int, steps: int, step_tokens: int, leaves: int, overrides: dict) -> dict:
    import torch
    import transformers

    from treesearch.rewards.prm_train import PRMTrainConfig, train_prm

    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    data = make_trees(trees, steps, step_tokens, leaves, seed=0)
    cfg = PRMTrainConfig(base=base, epochs=2, batch_trees=trees, holdout=0.0, progress=False, **overrides)
    before = _rss()
    t0 = time.perf_counter()
    info = train_prm(data, cfg, out)
    return {"seconds": round(time.perf_counter() - t0, 2), "rss_before": before, "micro_batches": info["micro_batches"],
            "steps": info["steps"], "first_loss": info["first_loss"], "train_rows": info["train_rows"]}


def run_child(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__, "--child", fh.name], env=env, capture_output=True, text=True)
    os.unlink(fh.name)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--step-tokens", type=int, default=128)
    ap.add_argument("--leaves", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = child(**json.loads(Path(args.child).read_text()))
        out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
        print(json.dumps(out))
        return
    gib = 2 ** 30
    result: dict = {"peak_gib": {}, "train_gib": {}, "seconds": {}}
    with tempfile.TemporaryDirectory() as work:
        base = Path(work) / "base"
        build_base(base)
        for name, over in CONFIGS.items():
            r = run_child({"base": str(base), "out": str(Path(work) / name), "trees": args.trees, "steps": args.steps,
                           "step_tokens": args.step_tokens, "leaves": args.leaves, "overrides": over})
            result["peak_gib"][name] = round(r["peak_rss"] / gib, 3)
            result["train_gib"][name] = round((r["peak_rss"] - r["rss_before"]) / gib, 3)
            result["seconds"][name] = r["seconds"]
            print(f"{name:>14}: peak {r['peak_rss'] / gib:.2f} GiB (training added {(r['peak_rss'] - r['rss_before']) / gib:.2f}), "
                  f"{r['seconds']:.1f} s, {r['micro_batches']} forward passes for {r['steps']} steps, "
                  f"{r['train_rows']} rows, first loss {r['first_loss']}", flush=True)
        result["weight_diff"] = weight_diff(Path(work) / "whole_fp32", Path(work) / "micro")
    result["train_mem_ratio"] = round(result["train_gib"]["micro_gc_bf16"] / result["train_gib"]["whole_fp32"], 3)
    result.update(trees=args.trees, row_tokens_approx=args.steps * args.step_tokens, leaves=args.leaves)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
