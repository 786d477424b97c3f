"""The notebooks in notebooks/: committed without outputs, and each runs top to bottom on CPU.

Each notebook is executed by nbclient in a real kernel: ipykernel's ``python3``
kernel, which jupyter_client starts with this interpreter (``sys.executable``),
so it works in a fresh venv without ``python -m ipykernel install``. The kernel
inherits the environment set here: one thread, offline, temporary files under
the test's tmp_path.
"""
import json
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_search_one_problem", "02_run_rounds", "03_strategies_at_equal_compute"]
PER_NOTEBOOK_S = 120  # "well under 2 minutes" on CPU; each takes ~10 s here


def _read(name):
    import nbformat

    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_the_notebook_set_is_complete_and_committed_without_outputs():
    import nbformat

    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for name in NAMES:
        raw = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        nb = _read(name)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", name
        assert "widgets" not in nb.metadata, f"{name}: widget state is an output"
        code = [c for c in raw["cells"] if c["cell_type"] == "code"]
        assert code, name
        for i, cell in enumerate(code):
            assert cell.get("outputs") == [], f"{name}: code cell {i} has outputs; strip them before committing"
            assert cell.get("execution_count") is None, f"{name}: code cell {i} has an execution count"
            assert not any(d in "".join(cell["source"]) for d in ("/work/", "/tmp/", "/home/")), f"{name}: cell {i} has a machine path"
        first = raw["cells"][0]
        assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# "), f"{name}: starts with a title"


def test_the_python3_kernel_is_this_interpreter():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    assert Path(km.format_kernel_cmd()[0]).resolve() == Path(sys.executable).resolve()


def _outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text.append(out["text"])
            elif out.get("output_type") == "error":
                text.append(f"ERROR {out['ename']}: {out['evalue']}")
    return "".join(text)


def _mimetypes(nb) -> list[str]:
    return [m for cell in nb.cells for out in cell.get("outputs", []) for m in out.get("data", {})]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits this environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary run directories land here
    nb = _read(name)
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=PER_NOTEBOOK_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    seconds = time.perf_counter() - t0
    assert seconds < PER_NOTEBOOK_S, f"{name} took {seconds:.0f} s"
    out = _outputs(nb)
    types = _mimetypes(nb)
    assert "ERROR" not in out
    assert "application/vnd.plotly.v1+json" in types, f"{name} shows plotly figures"
    if name == "01_search_one_problem":
        assert "selected answer correct:" in out and "round trip ok" in out
        assert "pairs" in out and " hidden)" in out  # the filtered view hid nodes
        assert "image/svg+xml" in types
    elif name == "02_run_rounds":
        run = next(tmp_path.glob("treesearch-nb2-*/run"))
        assert (run / "metrics.jsonl").is_file() and (run / "report.html").stat().st_size > 1_000_000
        assert "round 0: greedy" in out and "round 1: greedy" in out
    else:
        for algo in ("greedy", "maj", "best-of-n", "beam", "mcts", "segments", "best-of-n-prm", "weighted-bon", "dvts"):
            assert f"\n| {algo} | " in "\n" + out, f"{algo} row missing"
        assert "| maj | 8 | 1 | 2 |" in out  # pooled over the two seeds
