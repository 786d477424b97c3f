"""The iterative loop on the embedded default: a full round, strict configs, and SIGKILL-resume."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treesearch.loop import LoopConfig, load_loop_config

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


def _cmd(out):
    return [sys.executable, "-m", "treesearch.cli", "iterate", "--config", str(CONFIG), "--out", str(out)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()] if Path(path).is_file() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    r = subprocess.run(_cmd(out), capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_a_round_writes_everything(reference):
    cfg = load_loop_config(CONFIG)
    snap = json.loads((reference / "config.json").read_text())
    assert snap["rounds"] == cfg.rounds == 1
    rows = _lines(reference / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1]
    assert 0.0 <= rows[0]["eval"]["accuracy"] <= 1.0 and "pass@2" in rows[0]["eval"]
    assert rows[0]["tokens_spent"] > 0 and "exploitation" in rows[0]["bstar"]
    trees = _lines(reference / "round_0" / "trees.jsonl")
    assert len(trees) == cfg.train_problems == len({t["problem_id"] for t in trees})
    pairs = _lines(reference / "round_0" / "pairs.jsonl")
    assert all({"prompt", "chosen", "rejected"} <= set(p) for p in pairs)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(reference / "round_0" / "train" / "model")
    assert (reference / "accuracy.png").stat().st_size > 1000


def _run_until(out, condition, limit=600):
    """Start the loop and SIGKILL its process group as soon as `condition(out)` holds."""
    p = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < limit:
        if condition(out):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.05)
    p.wait()
    return False


def test_sigkill_at_several_points_then_resume(reference, tmp_path):
    points = [
        lambda d: len(_lines(d / "round_0" / "trees.jsonl")) >= 2,  # mid-search
        lambda d: (d / "round_0" / "pairs.jsonl").is_file(),  # pairs written, training not done
        lambda d: (d / "round_0" / "train.json").is_file(),  # before the last evaluation
    ]
    killed = [_run_until(tmp_path, cond) for cond in points]
    assert any(killed), "the run finished before any kill point"
    r = subprocess.run(_cmd(tmp_path), capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    trees = _lines(tmp_path / "round_0" / "trees.jsonl")
    ref_trees = _lines(reference / "round_0" / "trees.jsonl")
    assert [t["problem_id"] for t in trees] == [t["problem_id"] for t in ref_trees]  # none lost or duplicated
    assert _untimed(trees) == _untimed(ref_trees)  # the seeded search redoes killed batches identically
    assert _lines(tmp_path / "round_0" / "pairs.jsonl") == _lines(reference / "round_0" / "pairs.jsonl")
    rows, ref_rows = _lines(tmp_path / "metrics.jsonl"), _lines(reference / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1]
    assert [r["eval"]["accuracy"] for r in rows] == [r["eval"]["accuracy"] for r in ref_rows]
    # the search's cost is summed from the shares its trees carry: exact across kills, not just the last run's
    search, ref_search = rows[0]["search"], ref_rows[0]["search"]
    assert search["cost_problems"] == search["n_problems"] == len(trees)
    counters = ("calls", "prompt_tokens", "prefill_tokens", "decode_tokens", "computed_tokens")
    assert {k: search["cost"][k] for k in counters} == {k: ref_search["cost"][k] for k in counters}
    assert search["cost"]["decode_tokens"] > 0 and rows[0]["tokens_spent"] == ref_rows[0]["tokens_spent"]
    assert search["tokens_per_problem"] == search["cost"]["computed_tokens"] / len(trees)


def test_a_finished_run_extends_by_more_rounds(reference, tmp_path):
    """Rerun with more rounds, a finished run goes on from its last round: the rounds it had stay byte
    for byte, the next round searches the next slice of the training stream, and the snapshot records
    the new count. Fewer rounds than the snapshot's is a different config."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    kept = [p for p in sorted((run / "round_0").rglob("*")) if p.is_file()] + [run / "round_1" / "eval.json"]
    before = {p: p.read_bytes() for p in kept}
    r = subprocess.run(_cmd(run) + ["--rounds", "2"], capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p: p.read_bytes() for p in kept} == before
    assert json.loads((run / "config.json").read_text())["rounds"] == 2
    assert [x["round"] for x in _lines(run / "metrics.jsonl")] == [0, 1, 2]
    from tasks import get_task

    cfg = load_loop_config(CONFIG)
    stream = [p.id for p in get_task(cfg.task).problems("train", 2 * cfg.train_problems, seed=cfg.seed)]
    assert [t["problem_id"] for t in _lines(run / "round_1" / "trees.jsonl")] == stream[cfg.train_problems:]
    assert (run / "round_1" / "train" / "model").is_dir() and (run / "round_2" / "eval.json").is_file()
    r = subprocess.run(_cmd(run), capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 2 and "different config" in r.stderr


def test_bench_confirm_evaluates_final_policies_on_a_fresh_held_out_sample(reference, tmp_path):
    """bench/confirm.py: the starting and the final policy of a finished run on another held-out sample
    of the same size, next to the loop's own files; the loop's own eval seed is refused."""
    import shutil

    run = tmp_path / "out" / "seed0" / "step_dpo"
    shutil.copytree(reference, run)
    own = {k: json.loads((run / f"round_{k}" / "eval.json").read_text()) for k in (0, 1)}
    bench = Path(__file__).resolve().parent.parent / "bench" / "confirm.py"
    cmd = [sys.executable, str(bench), "--run", f"tiny={tmp_path / 'out'}"]
    r = subprocess.run(cmd + ["--eval-seed", "3"], capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["eval_seed"] == 3 and out["problems"] == load_loop_config(CONFIG).eval.problems
    for label, k in (("base", 0), ("tiny", 1)):
        fresh = json.loads((run / f"round_{k}" / "eval_seed3.json").read_text())
        assert out["methods"][label]["acc"] == fresh["accuracy"] == out["methods"][label]["per_seed"]["0"]
        assert out["methods"][label]["held_out_acc"] == own[k]["accuracy"]
        assert fresh["tokens"] != own[k]["tokens"]  # other problems, not the loop's own sample again
    r = subprocess.run(cmd + ["--eval-seed", str(load_loop_config(CONFIG).eval.seed)], capture_output=True,
                       text=True, env=_env(), timeout=600)
    assert r.returncode != 0 and "eval.seed" in r.stderr


def _untimed(trees):
    """Trees without the wall-clock fields of their cost shares (the only part a rerun may change)."""
    out = []
    for t in trees:
        t = json.loads(json.dumps(t))
        for key in ("seconds", "wall_s"):
            t["meta"]["search"]["cost"].pop(key)
        out.append(t)
    return out


def test_strict_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 2\nsearch:\n  simulations: 8\n  c_puckt: 1.0\n")
    with pytest.raises(ValueError, match="search.c_puckt"):
        load_loop_config(bad)
    bad.write_text("rounds: two\n")
    with pytest.raises(ValueError, match="rounds"):
        load_loop_config(bad)
    bad.write_text("rounds: [1,\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_loop_config(bad)
    assert load_loop_config(None) == LoopConfig()


def test_rerun_with_another_config_is_refused(reference, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(CONFIG.read_text() + "seed: 5\n")
    r = subprocess.run([sys.executable, "-m", "treesearch.cli", "iterate", "--config", str(other), "--out", str(reference)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 2 and "different config" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["demo", "tiny", "bench_loop", "multigpu_node", "ray_multinode"])
def test_shipped_configs_load_strictly(name):
    cfg = load_loop_config(CONFIG.parent / f"{name}.yaml")
    assert cfg.rounds >= 1 and cfg.train_problems >= 1 and cfg.eval.problems >= 1


@pytest.mark.parametrize("item, message", [("bogus:x=1", "expected METHOD:KEY=VALUE"),
                                           ("samples:search.temperature", "--method-set samples: 'search.temperature'")])
def test_bench_values_rejects_a_bad_method_set_before_any_work(tmp_path, item, message):
    import subprocess
    import sys

    bench = CONFIG.parent.parent / "bench" / "values.py"
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(bench), "--out", str(out), "--method-set", item],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and message in res.stderr
    assert not out.exists()  # nothing searched or written


def test_bench_values_plots_one_point_per_method(tmp_path):
    import subprocess
    import sys

    import matplotlib.image

    # in a child process: importing bench/values.py puts bench/ on sys.path (it would shadow `verifiers`)
    code = ("import runpy, sys; from pathlib import Path; "
            "m = runpy.run_path(sys.argv[1]); "
            "r = lambda p, c, a, n: {'problems_with_pairs': p, 'clean_rate': c, 'accuracy': a, 'pairs': n}; "
            "m['plot_values']({'zero': r(1164, 0.74, 0.261, 1774), 'samples': r(1711, 0.72, 0.277, 2156)}, Path(sys.argv[2]))")
    png = tmp_path / "values.png"
    res = subprocess.run([sys.executable, "-c", code, str(CONFIG.parent.parent / "bench" / "values.py"), str(png)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 2 * img.shape[0]  # two panels side by side
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_the_loop_default_is_the_benchmarked_samples_method_and_zero_the_settings_before():
    import subprocess
    import sys

    # bench/values.py's method configs over configs/bench_loop.yaml, built in a child process (importing
    # the benchmark puts bench/ on sys.path); budget 102 and cap 64 as measured
    code = ("import json, runpy, sys; m = runpy.run_path(sys.argv[1]); "
            "from treesearch.loop import load_loop_config; from dataclasses import asdict; "
            "cfg = lambda name: asdict(load_loop_config(sys.argv[2], m['method_overrides'](name, 102, 64))); "
            "print(json.dumps({n: cfg(n) for n in ('zero', 'samples')}))")
    repo = CONFIG.parent.parent
    res = subprocess.run([sys.executable, "-c", code, str(repo / "bench" / "values.py"), str(CONFIG.parent / "bench_loop.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=repo)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    loop = json.loads(json.dumps(dataclasses.asdict(load_loop_config(CONFIG.parent / "bench_loop.yaml"))))
    for part in ("search", "value"):  # the loop searches exactly as the benchmark measured
        assert got["samples"][part] == loop[part], part
    # and takes the same step pairs, with whole-solution pairs beside them (README: step + trajectory pairs)
    assert got["samples"]["pairs"] == {**loop["pairs"], "kinds": ["sibling", "first_error"]}
    assert loop["pairs"]["kinds"] == ["sibling", "first_error", "trajectory"]
    zero = got["zero"]  # and `zero` is still the loop as it was before the values were compared
    assert {k: zero["search"][k] for k in ("simulations", "width", "root_samples", "temperature", "token_budget",
                                           "revisit_terminals", "end_cut_steps", "value_prior")} == {
        "simulations": 8, "width": 2, "root_samples": 0, "temperature": 1.0, "token_budget": 0,
        "revisit_terminals": True, "end_cut_steps": False, "value_prior": 0.0}
    assert zero["value"]["method"] == "zero"
    assert (zero["pairs"]["value"], zero["pairs"]["margin"], zero["pairs"]["min_judged"], zero["pairs"]["min_correct"]) == ("q", 0.1, 0, 0)


def test_bench_loop_overrides_nest_and_reject_bad_items():
    import importlib.util

    # loaded by path: bench/ on sys.path would shadow packages with its benchmarks' names (verifiers)
    spec = importlib.util.spec_from_file_location("bench_loop", CONFIG.parent.parent / "bench" / "loop.py")
    bench_loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_loop)
    parse_sets = bench_loop.parse_sets
    sets = parse_sets(["train_problems=4096", "search.width=4", "pairs.kinds=[sibling]", "train.beta=0.2"])
    assert sets == {"train_problems": 4096, "search": {"width": 4}, "pairs": {"kinds": ["sibling"]}, "train": {"beta": 0.2}}
    cfg = load_loop_config(CONFIG.parent / "bench_loop.yaml", sets)
    assert (cfg.train_problems, cfg.search.width, cfg.pairs.kinds, cfg.train.beta) == (4096, 4, ("sibling",), 0.2)
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        parse_sets(["search.width"])
    with pytest.raises(ValueError, match="search.widht"):
        load_loop_config(CONFIG.parent / "bench_loop.yaml", parse_sets(["search.widht=4"]))


def test_the_loop_refuses_to_evaluate_on_searched_problems(tmp_path):
    from tasks import get_task
    from treesearch.loop import Run

    records = [{"question": f"What is {i} + 2?", "answer": f"#### {i + 2}"} for i in range(12)]
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = LoopConfig(task=f"gsm8k:train={path},test={path}", rounds=1, train_problems=4)
    with pytest.raises(ValueError, match="must not overlap"):  # the same file for both splits: refused at load
        get_task(cfg.task)
    run = Run(tmp_path / "run", LoopConfig(task=f"gsm8k:{path}", rounds=1, train_problems=4))
    task = get_task(f"gsm8k:{path}")
    held_out = task.problems("test", len(task.adapter._split["test"]))
    run.refuse_searched(task, held_out)  # a hash split: disjoint, accepted
    with pytest.raises(ValueError, match=r"held-out problems are also searched/trained on"):
        run.refuse_searched(task, task.problems("train", 2))


def test_a_run_written_before_new_config_fields_still_resumes(tmp_path):
    """A snapshot without fields added since (backend, vllm, value, prm) counts them at their defaults;
    a snapshot that differs in a setting is still refused."""
    from treesearch.config import to_dict
    from treesearch.loop import Run

    cfg = load_loop_config(CONFIG)
    old = json.loads(json.dumps(to_dict(cfg)))
    for key in ("backend", "vllm", "value", "prm"):
        old.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps(old))
    Run(tmp_path, cfg)  # accepted
    old["rounds"] = 7
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="different config"):
        Run(tmp_path, cfg)


@pytest.mark.parametrize("method,change,resumes", [
    ("rft", {"pairs": {"kinds": ["sibling", "first_error", "trajectory"], "margin": 0.5}, "train": {"beta": 0.1}}, True),
    ("traj_dpo", {"pairs": {"kinds": ["sibling"]}, "rft": {"epochs": 3}}, True),
    ("step_dpo", {"rft": {"epochs": 3}}, True),
    ("traj_dpo", {"pairs": {"max_per_problem": 3}}, False),  # trajectory pairs are capped per problem too
    ("step_dpo", {"pairs": {"kinds": ["sibling", "first_error", "trajectory"]}}, False),
    ("rft", {"rft": {"epochs": 3}}, False),
])
def test_a_run_resumes_under_settings_its_method_never_reads(tmp_path, method, change, resumes):
    """The acceptance loop's baselines resume when only another learner's settings changed (the step
    pairs' kinds, say); a setting the method reads still refuses the directory."""
    from treesearch.config import merge
    from treesearch.loop import Run

    Run(tmp_path, load_loop_config(CONFIG, {"method": method}))
    changed = load_loop_config(CONFIG, merge({"method": method}, change))
    if resumes:
        Run(tmp_path, changed)
    else:
        with pytest.raises(ValueError, match="different config"):
            Run(tmp_path, changed)


def test_a_focused_round_resumed_from_a_torn_batch_grows_the_same_trees(tmp_path):
    """With `MCTSConfig.focus` a tree's budget depends on its batch; batches are fixed slices of the
    round's problems and a batch counts only once all its trees are written, so a resume redoes the
    whole torn batch and grows exactly the uninterrupted trees."""
    import shutil

    from tasks import get_task
    from treesearch.loop import Run
    from treesearch.search.mcts import MCTSConfig, mcts
    from treesearch.search.runner import make_trees, task_scorer
    from treesearch.search.values import unknown_value

    over = {"train_problems": 8, "search_batch": 4, "value": {"method": "counts"},
            "search": {"simulations": 64, "width": 2, "token_budget": 80, "focus": 0.5, "revisit_terminals": False}}
    cfg = load_loop_config(CONFIG, over)
    task = get_task(cfg.task)
    ref = Run(tmp_path / "ref", cfg, log=lambda m: None)
    backend = ref.serve(0)
    ref.search(0, backend, task)
    lines = (tmp_path / "ref" / "round_0" / "trees.jsonl").read_text().splitlines()
    # the precondition that makes this test bite: the second batch's trees differ when searched apart
    problems = task.problems("train", 8, seed=cfg.seed)[4:]
    search_cfg = MCTSConfig(**json.loads(lines[4])["meta"]["search"]["config"])
    trees = make_trees(backend, problems[1:], template=getattr(task, "prompt_template", None))
    alone = mcts(backend, trees, search_cfg, score=task_scorer(task, problems[1:]), value_fn=unknown_value)
    spent = [t.meta["search"]["sampled_tokens"] for t in alone.trees]
    assert spent != [json.loads(x)["meta"]["search"]["sampled_tokens"] for x in lines[5:]]
    torn = tmp_path / "torn"
    (torn / "round_0").mkdir(parents=True)
    shutil.copy2(tmp_path / "ref" / "config.json", torn / "config.json")
    (torn / "round_0" / "trees.jsonl").write_text("\n".join(lines[:5]) + "\n")  # batch 2 has 1 of its 4 trees
    Run(torn, cfg, log=lambda m: None).search(0, backend, task)
    got = _lines(torn / "round_0" / "trees.jsonl")
    assert [t["problem_id"] for t in got] == [json.loads(x)["problem_id"] for x in lines]
    assert [_grown(t) for t in got] == [_grown(json.loads(x)) for x in lines]


def _grown(t: dict) -> tuple:
    """What a search grew (not the float log-probs, whose last bits move with the backend's batching)."""
    cols = ("text", "token_ids", "parent", "visits", "value_sum", "terminal", "verdict")
    return (t["problem_id"], *(json.dumps(t[k]) for k in cols), t["meta"].get("rollouts"),
            t["meta"]["search"]["sampled_tokens"])
