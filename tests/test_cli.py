"""The CLI: listed commands exist; bad input is one line on stderr, exit 2, no traceback."""
import subprocess
import sys

import pytest


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "treesearch.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("bootstrap", "eval"):
        assert cmd in r.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["eval", "--task", "nope"], "unknown task 'nope'"),
        (["eval", "--seed", "-1"], "seed must be a non-negative integer"),
        (["eval", "--model", "/definitely/not/here"], "/definitely/not/here: checkpoint directory does not exist"),
        (["eval", "--strategy", "telepathy"], "unknown strategy 'telepathy'"),
        (["bootstrap", "--seed", "-5", "--out", "/tmp/x"], "seed must be a non-negative integer"),
    ],
)
def test_bad_input_is_one_clear_line(args, fragment):
    r = _run(*args)
    assert r.returncode == 2
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    r = _run("eval", "--model", str(tmp_path), "--n-problems", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(tmp_path) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_eval_writes_results_summary_and_table(tmp_path):
    import json

    r = _run("eval", "--n-problems", "8", "--n-ops", "2", "--strategy", "sample", "--k", "4", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and summary["problems"] == 8
    assert 0.0 <= summary["pass@1"] <= summary["pass@4"] <= 1.0
    assert summary["cost"]["decode_tokens"] > 0
    assert "| sample |" in (tmp_path / "summary.md").read_text()


def test_vllm_backend_that_cannot_import_is_one_clear_line(tmp_path):
    """A machine where `import vllm` fails (here: a package on PYTHONPATH that raises, as the CUDA
    torchvision beside CPU torch did): one line naming the backend and how to install it, exit 2."""
    import os

    fake = tmp_path / "site" / "vllm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('operator torchvision::nms does not exist')\n")
    path = os.pathsep.join(p for p in (str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-m", "treesearch.cli", "eval", "--backend", "vllm", "--n-problems", "2",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "vLLM cannot be imported" in lines[0] and "torchvision::nms" in lines[0], lines
    assert not (tmp_path / "out").exists()
