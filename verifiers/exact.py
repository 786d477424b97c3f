"""Exact final-answer checking for tasks whose answers are integers or plain tokens.

The arithmetic family ends every solution with a line ``Answer: N``. Extraction
takes the last such line; judgement is string equality after normalising an
integer (``+7`` and ``007`` read as ``7``). Nothing is evaluated.
"""
from __future__ import annotations

import re

_ANSWER_LINE = re.compile(r"^\s*Answer:\s*(.+?)\s*$", re.MULTILINE)
_INT = re.compile(r"[+-]?\d{1,60}")


def extract_final_answer(text: str) -> str | None:
    """The text after the last ``Answer:`` line, integers normalised; None if absent."""
    matches = _ANSWER_LINE.findall(text or "")
    if not matches:
        return None
    ans = matches[-1]
    if _INT.fullmatch(ans):
        return str(int(ans))
    return ans


def check_exact(gold: str, completion: str) -> bool:
    pred = extract_final_answer(completion)
    return pred is not None and pred == str(gold).strip()
