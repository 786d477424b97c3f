"""Worker process for `verifiers.math`: extracts, parses and compares untrusted answers.

Run as a script (``python -I _math_worker.py``) by the parent's pool, never
imported by the engine. Protocol: one JSON object per line on stdin,
``{"g": gold, "p": prediction}`` answered by one line on the original stdout,
``{"ok": bool, "why": str, "x": extracted text}``; with ``"g": null`` only
the prediction is extracted (``why == "extracted"``). The first line written is
``{"ready": true}`` once math-verify is imported.

Why a separate process: sympy can take unbounded time and memory on hostile
input (``9^{9^{9^{9}}}``), and math-verify's own timeout relies on
``signal.alarm`` (main thread only). The parent enforces the deadline by
killing this process; here we only cap the address space.

Extraction is math-verify's ``parse`` with its LaTeX config (``\\boxed``
first) and its expression config. The expression config's regex admits only
digits, operators and brackets, so the strings it gives sympy's ``parse_expr``
(which evaluates Python) carry no names: model text cannot call anything.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import sys

MEMORY_BYTES = 1 << 30  # sympy on ordinary answers peaks near 150 MB; 1 GiB stops runaway expansions
REL_TOL = 1e-6  # must match verifiers.math.REL_TOL
_CONFIG: list = []


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _config() -> list:
    if not _CONFIG:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        _CONFIG.extend([LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()])
    return _CONFIG


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


def _parse(text: str) -> list:
    from math_verify import parse

    return parse(text, extraction_config=_config(), parsing_timeout=None)


def _text_of(parsed: list) -> str | None:
    """The matched answer text math-verify reports (its string fallback), else the parsed value's text."""
    if not parsed:
        return None
    last = parsed[-1]
    return last if isinstance(last, str) else str(parsed[0])


def judge(gold: str | None, pred: str, rules: dict | None = None) -> tuple[bool, str, str | None]:
    """(equivalent, reason, extracted) for gold and prediction texts; gold first (verify is asymmetric).

    rules: verify's float_rounding / strict / allow_set_relation_comp (verifiers.math.Rules).
    """
    rules = rules or {}
    rounding = int(rules.get("float_rounding", 6))
    from math_verify import verify

    p = _parse(pred)
    extracted = _text_of(p)
    if gold is None:  # extraction only: "extracted" when math-verify parsed a value, not just matched text
        parsed = any(not isinstance(x, str) for x in p)
        return False, "extracted" if parsed else "unparsed", extracted
    g = _parse(gold)
    if not g:
        return False, "gold_unparsed", extracted
    if not p:
        return False, "unparsed", None
    ok = verify(g, p, float_rounding=rounding, strict=bool(rules.get("strict", True)),
                allow_set_relation_comp=bool(rules.get("allow_set_relation_comp", False)),
                timeout_seconds=None, raise_on_error=False)
    if not ok:
        return False, "mismatch", extracted
    # math-verify rounds floats to 6 places, so 1e-7 == 2e-7 for it; re-check
    # closed-form numbers with a relative tolerance. Percent signs are skipped:
    # math-verify deliberately accepts "50" for "50\%".
    if rounding == 6 and "%" not in gold and "%" not in pred:
        gv, pv = _numeric_value(g[0]), _numeric_value(p[0])
        if gv is not None and pv is not None:
            scale = max(abs(gv), abs(pv))
            if scale > 0 and abs(gv - pv) > REL_TOL * scale:
                return False, "mismatch", extracted
    return True, "verified", extracted


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
        extracted = None
        try:
            job = json.loads(line)
            ok, why, extracted = judge(job["g"], job["p"], job.get("o"))
        except MemoryError:
            ok, why = False, "memory"
        except Exception as exc:  # model garbage must not take the worker down
            ok, why = False, f"error: {type(exc).__name__}"
        out.write(json.dumps({"ok": bool(ok), "why": why, "x": extracted[:2000] if extracted else None}) + "\n")


if __name__ == "__main__":
    main()
