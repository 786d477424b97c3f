"""The checks that need a GPU, as one prepared command for a lent device machine.

    python3 scripts/gpu_check.py --out $OUT/gpu_check.json           # on the GPU (a few minutes)
    .venv/bin/python scripts/gpu_check.py --device cpu --small       # the same code here, as a dry run

1. **trainer**: our Step-DPO trainer on the device with bench/trainer_memory.py's model (a 43M Qwen2
   with the real Qwen3 vocabulary of 151,669 tokens; random ids), 8 pairs of 1,024 and 2,048 tokens,
   batch 2, in four precision setups: fp32 weights under bf16 autocast, the same with gradient
   checkpointing, bf16 weights with fp32 master weights, and that with checkpointing. For each, against
   `treesearch.train.memory.estimate`: the peak of ``torch.cuda.max_memory_allocated`` over the
   estimate's tensors (``mem_ratio_tensors``: the estimate without its 1 GiB runtime allowance), and
   the CUDA context plus the peak the allocator reserved over the whole estimate (``mem_ratio_device``);
   also pairs per second and whether the loss is finite.
2. **backend**: the embedded policy through the HF backend on the device in bf16 against the CPU
   in fp32: greedy completions of held-out problems (how many are identical), and the log-probs of
   the CPU's greedy tokens scored by both (mean and max |difference|, nats per token); then the
   loop's search (configs/bench_loop.yaml) over training problems on the device, every node's text
   the decode of its ids.

The device machine has PyTorch and transformers but not this package's other needs; arithmetic
needs none of them (no math-verify, no vLLM). The last line printed is one JSON object, also
written to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 2**30
SETUPS = {  # StepDPOConfig fields of each precision setup
    "fp32_autocast": {"dtype": "float32", "bf16": True},
    "fp32_autocast_ckpt": {"dtype": "float32", "bf16": True, "gradient_checkpointing": True},
    "bf16_master": {"dtype": "bfloat16", "master_weights": True},
    "bf16_master_ckpt": {"dtype": "bfloat16", "master_weights": True, "gradient_checkpointing": True},
}


def _context_bytes() -> float:
    """What the device holds beyond the allocator's reservations: the CUDA context and libraries."""
    import torch

    torch.zeros(1, device="cuda")  # the context exists from here on
    free, total = torch.cuda.mem_get_info()
    return total - free - torch.cuda.memory_reserved()


def check_trainer(device: str, lengths: list[int], n_pairs: int, batch: int) -> dict:
    """Peak memory against the estimate, speed and a finite loss, per precision setup and length."""
    import torch
    from transformers import AutoConfig

    from treesearch.train import StepDPOConfig, memory, train_step_dpo

    bench = runpy.run_path(str(ROOT / "bench" / "trainer_memory.py"))  # its model and pairs, one definition
    out = {}
    with tempfile.TemporaryDirectory() as work:
        model_dir = Path(work) / "model"
        bench["build_model_dir"](model_dir)
        shape = memory.ModelShape.from_hf_config(AutoConfig.from_pretrained(model_dir))
        cuda = device.startswith("cuda")
        context = _context_bytes() if cuda else 0.0
        for length in lengths:
            pairs = bench["make_pairs"](n_pairs, length, seed=length)
            for name, fields in SETUPS.items():
                cfg = StepDPOConfig(beta=0.1, learning_rate=1e-5, epochs=1, batch_size=batch, warmup_ratio=0.0,
                                    save_steps=0, progress=False, device=device, seed=0, max_length=4096, **fields)
                model, tok = bench["load"](str(model_dir))
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                result = train_step_dpo(model, pairs, cfg, Path(work) / f"{name}-{length}", tokenizer=tok)
                seconds = time.perf_counter() - t
                est = memory.estimate(shape, cfg, rows=batch, width=length + bench["STEP"], packed=True, device=device)
                tensors = est.total - est.parts["runtime"]
                loss = result.metrics.get("train/loss_mean", float("nan"))
                row = {"estimate_gib": round(est.total / GIB, 3), "estimate_tensors_gib": round(tensors / GIB, 3),
                       "pairs_per_second": round(n_pairs / seconds, 2), "loss_finite": math.isfinite(loss)}
                if cuda:
                    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
                    row.update(peak_allocated_gib=round(allocated / GIB, 3), context_gib=round(context / GIB, 3),
                               peak_reserved_gib=round(reserved / GIB, 3),
                               mem_ratio_tensors=round(allocated / tensors, 3),
                               mem_ratio_device=round((context + reserved) / est.total, 3))
                out[f"{name}@{length}"] = row
                print(f"trainer {name} @ {length}: {out[f'{name}@{length}']}", flush=True)
                del model, result
    return out


def check_backend(device: str, n_eval: int, n_search: int) -> dict:
    """bf16 on the device against fp32 on the CPU: greedy agreement, log-prob gaps; the loop's search."""
    from tasks import get_task
    from treesearch.backends.base import SamplingParams
    from treesearch.backends.config import make_backend
    from treesearch.loop import load_loop_config
    from treesearch.search.runner import make_trees, run_search

    task = get_task("arithmetic")
    problems = task.problems("test", n_eval, seed=0, n_ops=3)
    cpu = make_backend("hf", "embedded", device="cpu", dtype="float32")
    dev = make_backend("hf", "embedded", device=device, dtype="bfloat16" if device.startswith("cuda") else "float32")
    prompts = [t.prompt_ids for t in make_trees(cpu, problems)]
    greedy = SamplingParams(temperature=0.0, max_tokens=128)
    ref = [c[0] for c in cpu.generate(prompts, greedy)]
    got = [c[0] for c in dev.generate(prompts, greedy)]
    same = sum(a.token_ids == b.token_ids for a, b in zip(ref, got))
    conts = [c.token_ids for c in ref]
    lp_cpu, lp_dev = cpu.logprobs(prompts, conts), dev.logprobs(prompts, conts)
    gaps = [abs(a - b) for x, y in zip(lp_cpu, lp_dev) for a, b in zip(x, y)]

    loop = load_loop_config(ROOT / "configs" / "bench_loop.yaml")
    train = task.problems("train", n_search, seed=0)
    t = time.perf_counter()
    res = run_search("mcts", dev, task, train, dataclasses.replace(loop.search, seed=0), batch_size=len(train),
                     value=loop.value)
    seconds = time.perf_counter() - t
    nodes = [(tree, n) for tree in res.trees for n in range(1, tree.num_nodes)]
    exact = sum(tree.text[n] == dev.decode(tree.token_ids[n]) for tree, n in nodes)
    return {
        "greedy_identical": same / len(problems),
        "logprob_gap_mean": sum(gaps) / len(gaps),
        "logprob_gap_max": max(gaps),
        "search_problems": len(train),
        "search_seconds": round(seconds, 1),
        "search_tokens_per_problem": res.cost.computed_tokens / len(train),
        "search_nodes": len(nodes),
        "search_exact_text": exact == len(nodes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a dry run of the code on a CPU")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no GPU; use --device cpu --small for a dry run")
    t0 = time.perf_counter()
    result = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
              "torch": torch.__version__}
    lengths, n_pairs, n_eval, n_search = ([160], 2, 8, 4) if args.small else ([1024, 2048], 8, 200, 64)
    result["trainer"] = check_trainer(args.device, lengths, n_pairs, batch=2)
    result["backend"] = check_backend(args.device, n_eval, n_search)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
