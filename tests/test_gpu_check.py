"""scripts/gpu_check.py, the prepared command for a lent GPU machine, runs here on the CPU (its backend
part, with tiny sizes), so it has not rotted when a machine is lent."""
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def test_gpu_check_backend_part_runs_on_the_cpu_and_compares_like_with_like():
    check = runpy.run_path(str(SCRIPT), run_name="gpu_check")["check_backend"]
    r = check("cpu", 3, 2)
    # on the CPU both sides are the same fp32 model: identical greedy tokens, no log-prob gap
    assert r["greedy_identical"] == 1.0 and r["logprob_gap_max"] == 0.0
    assert r["search_problems"] == 2 and r["search_nodes"] > 2 and r["search_exact_text"] is True
    assert 0 < r["search_tokens_per_problem"] < 400
