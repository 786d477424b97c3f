"""Benchmark the search core on the embedded default policy (targets, not a timed test).

1. Tree-segment rollouts (TreePO) versus independent sampling of the same number
   of complete solutions (default 32 held-out 3-operation problems x 16): tokens
   computed (prefill + decode, as the backend counts them after prefix-cache reuse)
   and wall time. Targets: >= 40% fewer tokens (token_ratio <= 0.6) and >= 1.5x less
   wall time (wall_ratio >= 1.5). Each side starts from an empty prefix cache; each
   is run `--repeats` times, interleaved, and the fastest wall time is kept.
   This part keeps TreePO's sharing shape (fixed 8-token segments, 2 initial
   copies, `--segment-len/--init-copies/--branch`), not the defaults.
2. Search-core overhead: the fraction of MCTS wall time spent outside backend
   calls (target <= 5%).
3. Coverage (some solution verifies) at equal tokens computed, on
   `--coverage-problems` (default 200) other held-out problems: independent
   sampling (best-of-N, N = `--solutions`) against segments with the
   `SegmentConfig` defaults at the `max_width` whose tokens computed come
   closest to independent's (`treesearch.search.matching.equal_tokens`, within
   10%), both through `run_search` as `treesearch eval`/`sweep` run them.
   Target: segments_coverage_ratio = segments coverage / independent coverage >= 1.0.

    .venv/bin/python bench/search.py [--problems 32] [--solutions 16] [--repeats 3] [--coverage-problems 200]

The last line printed is one JSON object with token_ratio, wall_ratio, core_overhead,
segments_coverage, independent_coverage, segments_coverage_ratio and coverage_tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--solutions", type=int, default=16, help="complete solutions per problem, both sides")
    ap.add_argument("--n-ops", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--segment-len", type=int, default=8)
    ap.add_argument("--init-copies", type=int, default=2)
    ap.add_argument("--branch", type=int, default=2)
    ap.add_argument("--simulations", type=int, default=32, help="MCTS simulations for the overhead measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--coverage-problems", type=int, default=200, help="problems of the equal-token coverage comparison")
    ap.add_argument("--coverage-seed", type=int, default=1, help="problem seed of the coverage comparison")
    return ap.parse_args()


def segments_vs_independent(backend, task, problems, args) -> dict:
    """The same number of complete solutions from tree segments and from independent sampling, each run cold,
    interleaved, the fastest of `args.repeats` kept: tokens computed, wall time and coverage."""
    from treesearch.backends.base import SamplingParams
    from treesearch.search import BestOfNConfig, SegmentConfig, best_of_n, make_trees, segment_rollouts, summarize

    seg_cfg = SegmentConfig(segment_len=args.segment_len, max_width=args.solutions, step_delimiter="",
                            init_copies=args.init_copies, branch=args.branch, max_tokens=args.max_tokens)
    ind_cfg = BestOfNConfig(n=args.solutions, max_tokens=args.max_tokens)

    def cold(search, cfg):
        backend.reset_cache()  # every run starts cold: no prefix reuse across runs
        return search(backend, make_trees(backend, problems), cfg)

    backend.generate([backend.encode_prompt(problems[0].prompt)], SamplingParams(max_tokens=4))  # warm-up
    # interleaved, fastest of `repeats`: the machine is shared, so load comes and goes
    runs = [(cold(best_of_n, ind_cfg), cold(segment_rollouts, seg_cfg)) for _ in range(args.repeats)]
    ind = min((r[0] for r in runs), key=lambda r: r.cost.wall_s)
    seg = min((r[1] for r in runs), key=lambda r: r.cost.wall_s)
    ind_sum, seg_sum = summarize(ind, task, problems), summarize(seg, task, problems)
    trajectories = sum(len(t.meta["trajectories"]) for t in seg.trees)
    for name, r, s, n_solutions in (("independent", ind, ind_sum, args.problems * args.solutions),
                                    ("tree-segment", seg, seg_sum, trajectories)):
        c = r.cost
        print(f"{name:>13}: {n_solutions} solutions, computed {c.computed_tokens} tokens "
              f"(prefill {c.prefill_tokens}, decode {c.decode_tokens}), wall {c.wall_s:.2f}s, "
              f"{c.calls} calls, coverage {s['coverage']:.3f}")
    return {"token_ratio": round(seg.cost.computed_tokens / ind.cost.computed_tokens, 4),
            "wall_ratio": round(ind.cost.wall_s / seg.cost.wall_s, 4),
            "tokens_independent": ind.cost.computed_tokens, "tokens_segments": seg.cost.computed_tokens,
            "wall_independent_s": round(ind.cost.wall_s, 3), "wall_segments_s": round(seg.cost.wall_s, 3),
            "solutions_independent": args.problems * args.solutions, "solutions_segments": trajectories,
            "coverage_independent": ind_sum["coverage"], "coverage_segments": seg_sum["coverage"]}


def main() -> None:
    args = parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.search import MCTSConfig, run_search, summarize

    task = get_task("arithmetic")
    problems = task.problems("test", args.problems, seed=0, n_ops=args.n_ops)
    backend = HFBackend.from_pretrained(args.model, device="cpu")
    versus = segments_vs_independent(backend, task, problems, args)

    backend.reset_cache()
    mcts = run_search("mcts", backend, task, problems, MCTSConfig(simulations=args.simulations, max_tokens=args.max_tokens))
    mcts_sum = summarize(mcts, task, problems)
    c = mcts.cost
    print(f"         mcts: {args.simulations} simulations, accuracy {mcts_sum['accuracy']:.3f}, wall {c.wall_s:.2f}s, "
          f"backend {c.backend_s:.2f}s, core {c.core_s:.3f}s ({c.core_overhead:.1%}), {c.calls} calls")
    cov = coverage_at_equal_tokens(backend, task, args)
    print(json.dumps({**cov, **versus, "core_overhead": round(c.core_overhead, 4), "mcts_accuracy": mcts_sum["accuracy"], "mcts_wall_s": round(c.wall_s, 3),
                      "segment_config": {"segment_len": args.segment_len, "init_copies": args.init_copies,
                                         "branch": args.branch}}))


def coverage_at_equal_tokens(backend, task, args) -> dict:
    """Part 3: independent sampling vs segments (defaults, max_width matched to its tokens)."""
    from treesearch.search import BestOfNConfig, SegmentConfig, run_search, summarize
    from treesearch.search.matching import equal_tokens

    problems = task.problems("test", args.coverage_problems, seed=args.coverage_seed, n_ops=args.n_ops)

    def run(algo, config):
        backend.reset_cache()
        return run_search(algo, backend, task, problems, config)

    ind = run("best-of-n", BestOfNConfig(n=args.solutions, max_tokens=args.max_tokens))
    ind_cov = summarize(ind, task, problems)["coverage"]
    seg_run = lambda width: run("segments", SegmentConfig(max_width=width, max_tokens=args.max_tokens))
    # segments spend about 0.6-0.7 of independent's tokens per solution: start there
    match = equal_tokens(seg_run, ind.cost.computed_tokens, lo=2, hi=16 * args.solutions, start=round(1.5 * args.solutions))
    seg_cov = summarize(match.result, task, problems)["coverage"]
    for name, r, c, what in (("independent", ind, ind_cov, f"n={args.solutions}"), ("segments", match.result, seg_cov, f"max_width={match.knob}")):
        print(f"{name:>13}: {what}, coverage {c:.3f} on {len(problems)} problems, computed {r.cost.computed_tokens} tokens")
    print(f"     matching: (max_width, tokens) tried {list(match.tried)}, ratio {match.ratio:.3f}")
    if not match.ok:
        print(f"WARNING: segments' tokens are {match.ratio:.2f}x independent's, outside 10%", file=sys.stderr)
    return {
        "segments_coverage": seg_cov,
        "independent_coverage": ind_cov,
        "segments_coverage_ratio": round(seg_cov / ind_cov, 4) if ind_cov else None,
        "coverage_tokens": {"independent": ind.cost.computed_tokens, "segments": match.result.cost.computed_tokens},
        "coverage_segments_width": match.knob,
        "coverage_tokens_ratio": round(match.ratio, 4),
        "coverage_problems": len(problems),
    }


if __name__ == "__main__":
    main()
