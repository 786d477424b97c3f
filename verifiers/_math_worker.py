"""Worker process for `verifiers.math`: parses and compares untrusted answers.

Run as a script (``python -I _math_worker.py``) by the parent's pool, never
imported by the engine. Protocol: one JSON object per line on stdin,
``{"g": gold, "p": prediction}`` (both already extracted and normalised by the
parent), answered by one line on the original stdout,
``{"ok": bool, "why": str}``. The first line written is ``{"ready": true}``
once math-verify is imported.

Why a separate process: sympy can take unbounded time and memory on hostile
input (``9^{9^{9^{9}}}``), and math-verify's own timeout relies on
``signal.alarm`` (main thread only). The parent enforces the deadline by
killing this process; here we only cap the address space.

Only math-verify's LaTeX extraction is used: its plain-expression path calls
sympy's ``parse_expr``, which evaluates Python, and must never see model text.
The parent wraps every answer in ``$...$`` so the LaTeX path sees it.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import sys

MEMORY_BYTES = 1 << 30  # sympy on ordinary answers peaks near 150 MB; 1 GiB stops runaway expansions
REL_TOL = 1e-6  # must match verifiers.math.REL_TOL


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _numeric_value(expr):
    """A high-precision complex value when `expr` is a closed-form number, else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols or not expr.is_number:
        return None
    val = sympy.N(expr, 30)
    if not val.is_finite:
        return None
    re_, im_ = val.as_real_imag()
    try:
        return complex(float(re_), float(im_))
    except (TypeError, ValueError, OverflowError):
        return None


def judge(gold: str, pred: str) -> tuple[bool, str]:
    """(equivalent, reason) for two ``$...$``-wrapped answers; gold first (verify is asymmetric)."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    g = parse(gold, extraction_config=config, parsing_timeout=None)
    p = parse(pred, extraction_config=config, parsing_timeout=None)
    if not g:
        return False, "gold_unparsed"
    if not p:
        return False, "unparsed"
    ok = verify(g, p, timeout_seconds=None, raise_on_error=False)
    if not ok:
        return False, "mismatch"
    # math-verify rounds floats to 6 places, so 1e-7 == 2e-7 for it; re-check
    # closed-form numbers with a relative tolerance. Percent signs are skipped:
    # math-verify deliberately accepts "50" for "50\%".
    if "%" not in gold and "%" not in pred:
        gv, pv = _numeric_value(g[0]), _numeric_value(p[0])
        if gv is not None and pv is not None:
            scale = max(abs(gv), abs(pv))
            if scale > 0 and abs(gv - pv) > REL_TOL * scale:
                return False, "mismatch"
    return True, "verified"


def main() -> None:
    _limit_memory()
    # Keep stray prints from sympy/antlr off the protocol channel.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    logging.disable(logging.CRITICAL)  # math-verify warns once per process about disabled timeouts
    import math_verify  # noqa: F401  (import cost paid before "ready")

    judge("$1$", "$1$")  # warm caches (antlr parser construction)
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        try:
            job = json.loads(line)
            ok, why = judge(job["g"], job["p"])
        except MemoryError:
            ok, why = False, "memory"
        except Exception as exc:  # model garbage must not take the worker down
            ok, why = False, f"error: {type(exc).__name__}"
        out.write(json.dumps({"ok": bool(ok), "why": why}) + "\n")


if __name__ == "__main__":
    main()
