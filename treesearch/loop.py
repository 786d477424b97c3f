"""Iterative self-improvement: search -> pairs -> Step-DPO -> evaluate, round after round.

Round k, with policy k (round 0: the starting policy):

1. **eval**: greedy accuracy and pass@k of policy k on the held-out split;
2. **search**: MCTS (or another search) over this round's training problems with
   policy k, trees appended to ``round_k/trees.jsonl`` batch by batch;
3. **pairs**: preference data from the trees (``round_k/pairs.jsonl``): step-level
   pairs (Step-DPO / MCTS-DPO), trajectory-level pairs, or verified-correct
   solutions for rejection-sampling fine-tuning (``method``);
4. **train**: policy k+1 from policy k, which is also the reference
   (``round_k/train/model``).

After the last round the final policy is evaluated too. ``metrics.jsonl`` holds
one record per round (accuracy, pass@k, pairs, tokens spent, B-STaR's
exploration and exploitation); it is rebuilt from the round files, never
appended, so reruns cannot duplicate it.

Resuming: every stage's output is written atomically (or, for the search,
appended per batch with problem ids), and a stage whose output exists is
skipped; a killed run continues where it stopped when the same command is run
again, and the seeded search makes the redone part identical.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from treesearch.backends.config import BACKENDS, VLLMConfig
from treesearch.config import from_dict, load_config, merge, to_dict
from treesearch.distributed.config import ScaleConfig
from treesearch.io import append_jsonl, atomic_write_text, read_jsonl, save_figure, write_jsonl
from treesearch.pairs import PairConfig, correct_solutions, extract_pairs, pair_stats, solution_audit, step_audit
from treesearch.rewards.prm_train import PRMTrainConfig
from treesearch.search.mcts import MCTSConfig
from treesearch.search.values import ValueConfig
from treesearch.train.config import StepDPOConfig

METHODS = ("step_dpo", "traj_dpo", "rft")


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    problems: int = _f(200, "held-out problems evaluated after every round")
    n_ops: int = _f(3, "arithmetic: operations per held-out problem (0 = mixed)")
    k: int = _f(8, "samples per problem for pass@k / exploration (0 = greedy only)")
    temperature: float = _f(1.0, "sampling temperature of the pass@k samples")
    seed: int = _f(0, "seed of the held-out problems and samples")


@dataclasses.dataclass(frozen=True)
class RFTSettings:
    learning_rate: float = _f(1e-4, "AdamW learning rate of rejection-sampling fine-tuning")
    epochs: int = _f(1, "passes over the verified-correct solutions")
    batch_size: int = _f(16, "solutions per step")
    per_problem: int = _f(4, "distinct correct solutions kept per problem")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """One iterative run. Loaded strictly from YAML: unknown keys are errors."""

    policy: str = _f("embedded", "starting policy: 'embedded', a checkpoint directory or a Hugging Face name")
    task: str = _f("arithmetic", "task suite searched and evaluated")
    rounds: int = _f(3, "search -> pairs -> train rounds")
    train_problems: int = _f(128, "training problems searched per round (fresh problems every round)")
    train_n_ops: int = _f(0, "arithmetic: operations per training problem (0 = mixed 2..5)")
    method: str = _f("step_dpo", "step_dpo (step-level pairs) | traj_dpo (whole solutions) | rft (SFT on correct solutions)")
    search_batch: int = _f(32, "problems per search batch (one backend call per wave)")
    seed: int = _f(0, "seed of problems, search and training")
    device: str = _f("auto", "HF backend and training: 'auto', 'cpu' or 'cuda'")
    backend: str = _f("hf", "inference backend of evaluation and search: hf (transformers) | vllm (a vLLM engine; "
                            "also what every Ray search worker owns)")
    vllm: VLLMConfig = _f(VLLMConfig(), "vLLM engine settings (backend vllm)")
    search: MCTSConfig = _f(MCTSConfig(), "MCTS settings")
    value: ValueConfig = _f(ValueConfig(), "the search's value function; method prm without a checkpoint uses the PRM trained on the previous round's trees (round 0: counts)")
    prm: PRMTrainConfig = _f(PRMTrainConfig(), "PRM training on a round's trees (value method prm)")
    pairs: PairConfig = _f(PairConfig(), "pair extraction settings")
    train: StepDPOConfig = _f(StepDPOConfig(), "Step-DPO settings")
    rft: RFTSettings = _f(RFTSettings(), "rejection-sampling fine-tuning settings (method rft)")
    eval: EvalSettings = _f(EvalSettings(), "held-out evaluation settings")
    scale: ScaleConfig = _f(ScaleConfig(), "search workers (Ray) and training processes (torchrun); docs/scaling.md")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.rounds < 1 or self.train_problems < 1:
            raise ValueError("rounds and train_problems must be >= 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


def load_loop_config(path: str | Path | None, overrides: dict | None = None) -> LoopConfig:
    return load_config(LoopConfig, path, overrides)


def _snapshot(cfg: LoopConfig) -> dict:
    """The config as JSON data, without settings that do not change results (how loud vLLM is)."""
    d = json.loads(json.dumps(to_dict(cfg)))
    d["vllm"].pop("verbose")
    return d


def _read_snapshot(snap: Path) -> dict:
    """A run's config snapshot, a field added since it was written counting at its default."""
    try:
        return merge(_snapshot(LoopConfig()), json.loads(snap.read_text()))
    except ValueError as e:
        raise ValueError(f"{snap}: {e}") from None


TRAJECTORY_ONLY = ("trajectory",)  # the pair kinds trajectory DPO trains on, whatever `pairs.kinds` says


def _read_by_method(d: dict) -> dict:
    """A snapshot as its method reads it, so that a run resumes under a config that changed only settings
    the method never reads: RFT reads neither `pairs` nor `train`, the DPO methods not `rft`, and
    trajectory DPO's pair kinds are `TRAJECTORY_ONLY` (`Run.pairs` reads them from here too)."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    if d["method"] == "rft":
        d.pop("pairs"), d.pop("train")
    else:
        d.pop("rft")
    if d["method"] == "traj_dpo":
        d["pairs"]["kinds"] = list(TRAJECTORY_ONLY)  # as JSON holds it
    return d


class Run:
    """A run directory: config snapshot, round_k/ folders, metrics.jsonl."""

    def __init__(self, root: str | Path, cfg: LoopConfig, *, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.cfg = cfg
        self.log = log
        self._backend = None  # the engine serving the current round's policy (see `serve`)
        self.root.mkdir(parents=True, exist_ok=True)
        snap = self.root / "config.json"
        mine = _snapshot(cfg)
        if snap.is_file():
            self._extend(snap, mine)
        else:
            atomic_write_text(snap, json.dumps(mine, indent=2) + "\n")

    @staticmethod
    def _extend(snap: Path, mine: dict) -> None:
        """Accept a resume under the snapshot's config, or under one that asks for more rounds: round k
        searches slice k of one seeded stream that only appends, so the finished rounds are what a
        longer run would have written and the run goes on from its last round (the snapshot then
        records the new count). Anything else the method reads refuses the directory."""
        old = _read_snapshot(snap)
        grows = old["rounds"] < mine["rounds"]
        if grows:
            old["rounds"] = mine["rounds"]
        if _read_by_method(old) != _read_by_method(mine):
            raise ValueError(f"{snap}: run directory holds a different config; use a fresh --out")
        if grows:
            atomic_write_text(snap, json.dumps(old, indent=2) + "\n")

    @classmethod
    def reopen(cls, root: str | Path, *, log: Callable[[str], None] = print) -> "Run":
        """The run in `root` under the config its snapshot holds (to read or re-evaluate a finished run)."""
        snap = Path(root) / "config.json"
        if not snap.is_file():
            raise ValueError(f"{snap}: not a run directory (no config.json)")
        data = _read_snapshot(snap)
        try:
            cfg = from_dict(LoopConfig, data)
        except ValueError as e:
            raise ValueError(f"{snap}: {e}") from None
        return cls(root, cfg, log=log)

    def round_dir(self, k: int) -> Path:
        return self.root / f"round_{k}"

    def policy_of(self, k: int) -> str:
        """Policy k: the starting policy, or the model trained in round k-1."""
        return self.cfg.policy if k == 0 else str(self.round_dir(k - 1) / "train" / "model")

    # -- stages -------------------------------------------------------------------------------
    def evaluate(self, k: int, backend, task, *, seed: int | None = None) -> dict:
        """Policy k on the held-out problems (``round_k/eval.json``). Another `seed` draws another
        held-out sample of the same kind, written to ``round_k/eval_seed{seed}.json``: a check on a
        sample that never chose a setting (bench/confirm.py)."""
        e = self.cfg.eval
        out = self.eval_path(k, seed)
        if out.is_file():
            return json.loads(out.read_text())
        from treesearch.evaluate import EvalConfig, evaluate

        seed = e.seed if seed is None else seed
        kw = {"n_ops": e.n_ops} if (self.cfg.task == "arithmetic" and e.n_ops) else {}
        problems = task.problems("test", e.problems, seed=seed, **kw)
        self.refuse_searched(task, problems)
        _, greedy = evaluate(backend, task, problems, EvalConfig(strategy="greedy", seed=seed))
        result: dict[str, Any] = {"accuracy": greedy["accuracy"], "unparsed": greedy["unparsed"],
                                  "tokens": greedy["cost"]["computed_tokens"]}
        if e.k:
            records, sampled = evaluate(
                backend, task, problems, EvalConfig(strategy="sample", k=e.k, temperature=e.temperature, seed=seed)
            )
            result[f"pass@{e.k}"] = sampled[f"pass@{e.k}"]
            result["pass@1"] = sampled["pass@1"]
            result[f"maj@{e.k}"] = sampled[f"maj@{e.k}"]
            # B-STaR exploration: how many distinct correct solutions k samples find per problem
            result["distinct_correct"] = sum(
                len({c for c, ok in zip(r.get("completions", []), r["correct"]) if ok}) for r in records
            ) / len(records)
            result["tokens"] += sampled["cost"]["computed_tokens"]
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        return result

    def eval_path(self, k: int, seed: int | None = None) -> Path:
        """Where `evaluate` writes policy k's result on the held-out sample of `seed` (default: eval.seed)."""
        fresh = seed is not None and seed != self.cfg.eval.seed
        return self.round_dir(k) / (f"eval_seed{seed}.json" if fresh else "eval.json")

    def refuse_searched(self, task, problems) -> None:
        """ValueError when a held-out problem is one any round searches (and so trains on)."""
        from tasks.base import assert_disjoint

        assert_disjoint(problems, self._train_stream(task, self.cfg.rounds), what="held-out")

    def search(self, k: int, backend, task) -> dict:
        """Round k's search over its fresh training problems (``round_k/trees.jsonl``, one line per tree
        as its batch finishes; a rerun continues after the last whole batch), then ``search.json``."""
        from tqdm import tqdm

        rd = self.round_dir(k)
        done = rd / "search.json"
        if done.is_file():
            return json.loads(done.read_text())
        problems = self.round_problems(k, task)
        # batches are fixed slices of the round's problems, and a batch counts only when all its trees
        # were written: a resumed round grows the trees an uninterrupted one does even where a tree
        # depends on its batch (`MCTSConfig.focus` shares the batch's budget)
        chunks = [problems[i : i + self.cfg.search_batch] for i in range(0, len(problems), self.cfg.search_batch)]
        have = self._searched_trees(rd / "trees.jsonl", chunks)
        bar = tqdm(total=len(problems), initial=len(have), desc=f"round {k} search", dynamic_ncols=True)
        for batch, result in self._search_batches(k, backend, task, chunks, have):
            self._append_trees(rd / "trees.jsonl", batch, result, task, have)
            bar.update(len(batch))
        bar.close()
        summary = _search_summary([have[p.id] for p in problems], task, problems)
        atomic_write_text(done, json.dumps(summary, indent=2) + "\n")
        return summary

    def round_problems(self, k: int, task) -> list:
        """Fresh training problems every round: round k takes slice k of one seeded stream."""
        return self._train_stream(task, k + 1)[self.cfg.train_problems * k :]

    def _train_stream(self, task, rounds: int) -> list:
        """The training problems of the first `rounds` rounds, one seeded stream."""
        cfg = self.cfg
        kw = {"n_ops": cfg.train_n_ops} if (cfg.task == "arithmetic" and cfg.train_n_ops) else {}
        return task.problems("train", cfg.train_problems * rounds, seed=cfg.seed, **kw)

    def _searched_trees(self, trees_path: Path, chunks: list[list]) -> dict:
        """{problem id: tree} already in `trees_path` (whole batches only, unless Ray wrote them chunk by
        chunk), the file rewritten to hold just those (a torn last line dropped)."""
        from treesearch.tree import Tree

        if not trees_path.is_file():
            return {}
        have = {}
        for i, d in enumerate(read_jsonl(trees_path, allow_torn_tail=True), 1):
            have[d["problem_id"]] = Tree.from_json(d, where=f"{trees_path}:{i}")
        if self.cfg.scale.search.executor != "ray":
            whole = {p.id for c in chunks if all(p.id in have for p in c) for p in c}
            have = {pid: t for pid, t in have.items() if pid in whole}
        write_jsonl(trees_path, [t.to_json() for t in have.values()])
        return have

    def _search_batches(self, k: int, backend, task, chunks: list[list], have: dict):
        """(problems, SearchResult) for what is left to search: batch by batch on `backend`, or all of
        it at once on Ray workers (whose journal resumes by chunk)."""
        from treesearch.search.runner import run_search

        cfg = self.cfg
        search_cfg = dataclasses.replace(cfg.search, seed=cfg.seed + 1000 * k)
        value = self.value_of(k)  # once a round: with `prm` values it may train on the whole previous round
        if cfg.scale.search.executor == "ray":
            from treesearch.distributed import run_search_distributed, search_options

            todo = [p for c in chunks for p in c if p.id not in have]
            result = run_search_distributed(
                "mcts", cfg.task, todo, search_cfg, model=self.policy_of(k), device=cfg.device, value=value,
                journal=self.round_dir(k) / "chunks.jsonl", **search_options(cfg.scale.search, cfg.backend, cfg.vllm),
            )
            yield todo, result
            return
        for batch in chunks:
            if batch[0].id not in have:
                yield batch, run_search("mcts", backend, task, batch, search_cfg, batch_size=len(batch), value=value)

    @staticmethod
    def _append_trees(trees_path: Path, batch: list, result, task, have: dict) -> None:
        """Append a searched batch's trees, each with its verdict and its share of the batch's cost in the
        same line, so the round's cost is exact however many invocations (kills, resumes) it took."""
        from treesearch.search.expand import finished

        share = dataclasses.asdict(result.cost.split(len(batch)))
        for p, t, s in zip(batch, result.trees, result.selected):
            t.meta["search"]["correct"] = bool(s and finished(t, s) and task.score(p, t.text_of(s)))
            t.meta["search"]["cost"] = share
        append_jsonl(trees_path, [t.to_json() for t in result.trees])
        for t in result.trees:
            have[t.problem_id] = t

    def value_of(self, k: int) -> ValueConfig:
        """Round k's value function: the configured one, or for method prm without a checkpoint the PRM
        trained on round k-1's trees (AlphaZero-style, MCTS-DPO); round 0 has none and uses counts."""
        v = self.cfg.value
        if v.method != "prm" or v.prm:
            return v
        if k == 0:
            return dataclasses.replace(v, method="counts")
        return dataclasses.replace(v, prm=str(self.train_prm(k - 1)))

    def train_prm(self, k: int) -> Path:
        """A PRM trained on round k's trees (``round_k/prm/model``; when it exists, the trees are not read)."""
        from treesearch.rewards.prm_train import MODEL_DIR, train_prm, trained
        from treesearch.search.runner import read_trees

        out = self.round_dir(k) / "prm"
        if trained(out) is None:
            pcfg = dataclasses.replace(self.cfg.prm, base=self.policy_of(k), seed=self.cfg.seed + k, device=self.cfg.device)
            info = train_prm(read_trees(self.round_dir(k) / "trees.jsonl"), pcfg, out, log=self.log)
            self.log(f"round {k}: PRM on {info['trees']} trees, validation AUC {info.get('val_auc')}")
        return out / MODEL_DIR

    def make_pairs(self, k: int, decode) -> dict:
        from treesearch.search.runner import read_trees

        rd = self.round_dir(k)
        out = rd / "pairs.jsonl"
        stats_path = rd / "pairs.json"
        if out.is_file() and stats_path.is_file():
            return json.loads(stats_path.read_text())
        trees = read_trees(rd / "trees.jsonl")
        if self.cfg.method == "rft":
            records = correct_solutions(trees, per_problem=self.cfg.rft.per_problem)
            stats = {"pairs": 0, "solutions": len(records)}
        else:
            pc = self.cfg.pairs
            if self.cfg.method == "traj_dpo":
                pc = dataclasses.replace(pc, kinds=TRAJECTORY_ONLY)
            records = extract_pairs(trees, pc, decode=decode, round=k)
            stats = pair_stats(records)
            from tasks import get_task

            task = get_task(self.cfg.task)
            check = getattr(task, "check_step", None)
            if check is not None and pc.kinds != TRAJECTORY_ONLY:
                # label noise of the outcome-based pairs, by the task's exact step checker (reported only)
                stats["step_audit"] = step_audit(records, check)
                stats["solution_audit"] = solution_audit(trees, check, getattr(task, "step_delimiter", "\n"))
        write_jsonl(out, records)
        atomic_write_text(stats_path, json.dumps(stats, indent=2) + "\n")
        return stats

    def train(self, k: int) -> dict:
        rd = self.round_dir(k)
        info_path = rd / "train.json"
        if info_path.is_file():
            return json.loads(info_path.read_text())
        pairs = list(read_jsonl(rd / "pairs.jsonl"))
        out = rd / "train"
        t0 = time.perf_counter()
        if not pairs:
            # nothing to learn from: the next policy is this one (copied, so paths stay uniform)
            from treesearch.policy import load_policy

            model, tok = load_policy(self.policy_of(k), device="cpu")
            tmp = out / "model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            tmp.rename(out / "model")
            info = {"skipped": "no pairs", "seconds": 0.0}
        elif self.cfg.method == "rft":
            from treesearch.rft import train_rft

            info = train_rft(self.policy_of(k), pairs, self.cfg.rft, out, seed=self.cfg.seed + k, device=self.cfg.device)
        else:
            from treesearch.train.trainer import train_step_dpo

            tcfg = dataclasses.replace(self.cfg.train, seed=self.cfg.seed + k, device=self.cfg.device)
            nproc = self.cfg.scale.train.nproc_per_node
            if nproc > 1:  # data-parallel under torchrun, same global batch (treesearch.train.ddp)
                from treesearch.train import ddp

                res_d = ddp.launch(self.policy_of(k), rd / "pairs.jsonl", tcfg, out, nproc=nproc)
                info = {"steps": res_d.get("steps"), "pairs": res_d.get("pairs"), "nproc": nproc, **res_d.get("metrics", {})}
            else:
                res = train_step_dpo(self.policy_of(k), pairs, tcfg, out)
                info = {"steps": res.steps, "pairs": res.pairs, "pairs_per_second": res.pairs_per_second, **res.metrics}
        info["seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
        return info

    # -- the loop -----------------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        rows = []
        for k in range(self.cfg.rounds + 1):
            rd = self.round_dir(k)
            if not (rd / "eval.json").is_file():
                break
            row: dict[str, Any] = {"round": k, "policy": self.policy_of(k), "eval": json.loads((rd / "eval.json").read_text())}
            for name in ("search", "pairs", "train"):
                p = rd / f"{name}.json"
                if p.is_file():
                    row[name] = json.loads(p.read_text())
            e = row["eval"]
            row["bstar"] = {
                "exploration_pass@k": e.get(f"pass@{self.cfg.eval.k}"),
                "exploration_distinct_correct": e.get("distinct_correct"),
                "exploitation": row.get("search", {}).get("exploitation"),
            }
            tokens = e.get("tokens", 0) + row.get("search", {}).get("cost", {}).get("computed_tokens", 0)
            row["tokens_spent"] = tokens
            rows.append(row)
        return rows

    def explore(self, k: int) -> tuple[dict, dict | None]:
        """Round k's policy-dependent stages: held-out evaluation, then (before the last round) the
        search. They depend only on policy k, the seed and the search settings, not on the method,
        so runs of several methods from one starting policy can share round 0 (bench/loop.py)."""
        from tasks import get_task

        task = get_task(self.cfg.task)
        rd = self.round_dir(k)
        rd.mkdir(parents=True, exist_ok=True)
        last = k == self.cfg.rounds
        need_policy = not (rd / "eval.json").is_file() or (not last and not (rd / "search.json").is_file())
        backend = self.serve(k) if need_policy else None
        ev = self.evaluate(k, backend, task)
        self.log(f"round {k}: held-out greedy accuracy {ev['accuracy']:.3f}")
        if last:
            return ev, None
        s = self.search(k, backend, task)
        self.log(f"round {k}: search accuracy {s['accuracy']:.3f}, coverage {s['coverage']:.3f}")
        return ev, s

    # -- the inference engine across rounds ------------------------------------------------------
    def serve(self, k: int):
        """A backend serving policy k. A vLLM engine kept from round k-1 (``vllm.weight_update:
        reload``) loads the new weights in place; otherwise a new backend is built."""
        from treesearch.backends.config import make_backend
        from treesearch.policy import resolve

        policy = self.policy_of(k)
        b = self._backend
        if b is not None and getattr(b, "model_dir", None) == resolve(policy):
            return b
        if b is not None and self._reloads():
            b.wake_up()
            t0 = time.perf_counter()
            b.reload_weights(policy)
            self.log(f"round {k}: vLLM engine reloaded the weights of {policy} in {time.perf_counter() - t0:.1f}s")
            return b
        self.release(keep=False)
        self._backend = make_backend(self.cfg.backend, policy, device=self.cfg.device, vllm=self.cfg.vllm,
                                     seed=self.cfg.seed + k)
        return self._backend

    def _reloads(self) -> bool:
        if self.cfg.backend != "vllm":
            return False
        import torch

        return self.cfg.vllm.reloads(torch.cuda.is_available())

    def release(self, keep: bool | None = None) -> None:
        """Free the inference engine's memory before training: a vLLM engine that will reload weights
        sleeps (GPU; vLLM has no sleep mode on CPU, where it keeps its memory), anything else is closed."""
        b = self._backend
        if b is None:
            return
        if keep is None:
            keep = self._reloads()
        if keep:
            b.sleep()
            return
        self._backend = None
        b.close()
        import gc

        gc.collect()

    def run(self) -> list[dict]:
        try:
            return self._run()
        finally:
            self.release(keep=False)

    def _run(self) -> list[dict]:
        for k in range(self.cfg.rounds + 1):
            self.explore(k)
            if k == self.cfg.rounds:
                break
            p = self.make_pairs(k, _decoder(self.policy_of(k)))
            self.log(f"round {k}: {p.get('solutions', p.get('pairs'))} training records ({self.cfg.method})")
            if not (self.round_dir(k) / "train.json").is_file():
                self.release()
            self.train(k)
            write_jsonl(self.root / "metrics.jsonl", self.metrics())
        rows = self.metrics()
        write_jsonl(self.root / "metrics.jsonl", rows)
        plot_rounds(rows, self.root / "accuracy.png")
        return rows


def _search_summary(trees: list, task, problems: list) -> dict:
    """`runner.summarize` of a round's trees (selected nodes and cost shares from their meta), plus how
    many trees carry a cost share and the exploitation ratio (accuracy over coverage)."""
    from treesearch.search.result import Cost, SearchResult
    from treesearch.search.runner import summarize

    shares = [t.meta["search"]["cost"] for t in trees if "cost" in t.meta["search"]]
    selected = [t.meta["search"]["selected"] for t in trees]
    summary = summarize(SearchResult(trees, selected, Cost.total(shares)), task, problems)
    summary["cost_problems"] = len(shares)  # < n_problems only for trees written by an older version
    summary["exploitation"] = summary["accuracy"] / summary["coverage"] if summary["coverage"] else 0.0
    return summary


def _decoder(policy: str):
    from transformers import AutoTokenizer

    from treesearch.policy import resolve

    tok = AutoTokenizer.from_pretrained(resolve(policy))
    return lambda ids: tok.decode(list(ids), skip_special_tokens=False)


def plot_rounds(rows: list[dict], path: Path) -> None:
    """Accuracy (greedy, pass@k) by round, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, [r["eval"]["accuracy"] for r in rows], "o-", label="greedy accuracy")
    passk = [k for k in rows[0]["eval"] if k.startswith("pass@") and k != "pass@1"] if rows else []
    if passk:
        ax.plot(xs, [r["eval"].get(passk[0]) for r in rows], "s--", label=passk[0])
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy")
    ax.set_xticks(xs)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def results_table(rows: list[dict], k: int) -> list[list[str]]:
    """Rows for a printed table: round, greedy accuracy, pass@k, pairs, tokens."""
    out = []
    for r in rows:
        e = r["eval"]
        out.append([
            str(r["round"]),
            f"{e['accuracy']:.3f}",
            f"{e.get(f'pass@{k}', float('nan')):.3f}",
            str(r.get("pairs", {}).get("pairs", r.get("pairs", {}).get("solutions", "-"))),
            str(r["tokens_spent"]),
        ])
    return out
