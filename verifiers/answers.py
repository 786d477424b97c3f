"""Where a completion states its final answer: the published conventions, as pure string scanning.

    >>> final_answer("48/2 = 24 clips in May.\\n#### 72")
    Span(text='72', kind='hashes', context='#### 72')

Conventions (the marker that starts last in the text wins):

=============  ==========================================  ===========================
kind           looks like                                  used by
=============  ==========================================  ===========================
boxed          ``\\boxed{...}`` / ``\\fbox{...}``             MATH, Minerva, most chat models
hashes         a line ``#### 72``                          GSM8K
heading        a line ``# Answer`` then the answer         PRM800K
final          ``Final Answer: ...`` (line)                Minerva ("Final Answer: The final answer is ...")
answer_is      ``The answer is: ...``                      Step-DPO, MetaMath
answer_line    a line ``Answer: ...``                      this repo's tasks
=============  ==========================================  ===========================

`final_answer` returns the span after the marker as written (a sentence such as
"The largest $n$ is 34." included); how the span is parsed is the verifier's
business. `ends_cleanly` is the guard for completions with no marker: the
text must end where a statement ends (a sentence end, a number, a closed math
group), so prose cut mid-sentence ("... = 7, and then we multiply by") and
code state no answer. `last_boxed` is the one
``\\boxed{}`` reader of the code base (the MATH loader takes gold answers with it).

Nothing here parses or evaluates: regexes with bounded work and a brace matcher.
"""
from __future__ import annotations

import dataclasses
import re


__all__ = ["Span", "final_answer", "last_boxed", "all_boxed", "ends_cleanly", "looks_like_prose",
           "strip_special_tokens", "strip_wrappers", "MAX_SPAN"]

BOX_GAP = 120  # characters between two boxes of one answer ("\\boxed{(1, 2)} \\quad \\text{and} \\quad \\boxed{(2, 1)}")
BARE_ANSWER_CHARS = 60  # an unmarked text ending in a bare number is an answer only this short (one line)
MAX_SPAN = 2000  # characters kept of one answer span (the verifier rejects longer ones anyway)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed[ \t]+([^\s$]+)")  # \boxed 5 (TeX allows a single token)
_HASHES = re.compile(r"^[ \t]*####[ \t]*([^\n]*?)[ \t]*$", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]*#{1,3}[ \t]*Answer[ \t]*:?[ \t]*\n(?:[ \t]*\n)*([^\n]+)", re.IGNORECASE | re.MULTILINE)
_FINAL = re.compile(r"\bfinal[ \t]+answer[ \t*_]*[:：][ \t*_]*([^\n]*)$", re.IGNORECASE | re.MULTILINE)
_ANSWER_LINE = re.compile(r"^[ \t>*#_]*answer[ \t*_]*[:：][ \t*_]*([^\n]*)$", re.IGNORECASE | re.MULTILINE)
_ANSWER_IS = re.compile(r"\banswer\s+is\s*[:：]?[ \t]*([^\n]{1,400})", re.IGNORECASE)
_LEADING_MATH = re.compile(r"\s*(?:\$([^$]+)\$|\\\((.+?)\\\))")  # "$\\frac{1}{2}$, as shown" states the math first
_SENTENCE_BREAK = re.compile(r"[.!?;]\s+\S")
_SENTENCE_END = re.compile(r"\.(?=\s+[A-Z]|\s*$)")
_ENDS_IN_MATH = re.compile(
    r"(?:\d|[}\])]|\$|\\[)\]]|\\infty|\\pi)(?:\s*(?:\\?%|°|\$|€|£))?(?:[ \t]*[A-Za-z]{1,12}[²³]?)?\Z"
)
_SPECIAL_TAIL = re.compile(r"(?:\s*(?:<\|[^|<>\n]{1,40}\|>|</s>|<eos>)[A-Za-z]{0,12})+\s*\Z")
_CODE = re.compile(r"```|^[ \t]*(?:def |class |import |from \w+ import |print\()", re.MULTILINE)
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}[\s,]+(?:[A-Za-z]{2,}[\s,]+)*[A-Za-z]{2,}(?![A-Za-z])")


@dataclasses.dataclass(frozen=True)
class Span:
    """The final-answer text a completion states, which convention marked it, and the marked
    passage from the marker on ("Final Answer: The largest $n$ is 34.")."""

    text: str
    kind: str
    context: str = ""


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{' (``\\{``/``\\}`` are literal), or None."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c in "{}" and text[i - 1 : i] == "\\":
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def all_boxed(text: str, *, limit: int = 8) -> list[str]:
    """Contents of the last `limit` balanced ``\\boxed{}``/``\\fbox{}`` groups, in text order."""
    out = []
    for m in list(_BOXED.finditer(text))[-limit:]:  # bounded: each may scan to the end of the text
        inner = _braced(text, m.end() - 1)
        if inner is not None and inner.strip():
            out.append(inner.strip())
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``/``\\fbox{...}`` (nested braces kept), else None."""
    if not isinstance(text, str):
        return None
    found = all_boxed(text, limit=4)
    if found:
        return found[-1]
    bare = _BOXED_BARE.findall(text)
    return bare[-1].strip() if bare else None


def strip_wrappers(ans: str) -> str:
    """``$x$``, ``\\(x\\)``, ``**x**`` and a trailing period or colon removed (repeatedly)."""
    ans = ans.strip()
    for _ in range(3):
        before = ans
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
                inner = ans[len(left) : len(ans) - len(right)]
                if left == "$" and "$" in inner:
                    continue  # "$a$ and $b$" is two spans, not one
                ans = inner.strip()
        ans = ans.rstrip(" .;,:").strip()
        if ans.startswith("**") and ans.endswith("**") and len(ans) > 4:
            ans = ans[2:-2].strip()
        if ans == before:
            break
    return ans


def _last(pattern: re.Pattern, text: str) -> tuple[int, str, str] | None:
    """(start, span, passage from the marker to the line end) of the last match."""
    found = None
    for found in pattern.finditer(text):
        pass
    if found is None:
        return None
    return found.start(), found.group(1), found.group(0)


def _answer_is(text: str) -> tuple[int, str, str] | None:
    found = _last(_ANSWER_IS, text)
    if found is None:
        return None
    start, span, passage = found
    if "$" not in span and "\\(" not in span:
        m = _SENTENCE_END.search(span)  # "The answer is: 12. Done." -> "12"
        if m:
            span = span[: m.start()]
    return start, span, passage


def _box_group_start(text: str) -> int:
    """Where the final group of boxes begins: "\\boxed{1} and \\boxed{2}" is one answer (a set),
    boxes further apart than BOX_GAP characters are separate statements. The line start before it."""
    boxes = list(_BOXED.finditer(text))[-8:]
    if not boxes:
        return max(0, text.rfind("\\boxed"))
    first = len(boxes) - 1
    while first > 0 and boxes[first].start() - boxes[first - 1].end() < BOX_GAP:
        first -= 1
    return max(text.rfind("\n", 0, boxes[first].start()) + 1, boxes[first].start() - 200)


def final_answer(text: str) -> Span | None:
    """The final-answer span of a completion, else None (no marker).

    The marker that starts last wins (a model's last statement is its answer:
    "\\boxed{255} ... Final Answer: $10,455$" answers 10,455); a marked
    passage that holds a ``\\boxed{}`` answers with the box.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    found: list[tuple[int, str, str, str]] = []
    inner = last_boxed(text)
    if inner:
        start = _box_group_start(text)
        found.append((start, "boxed", inner, text[start:]))
    for kind, pattern in (("hashes", _HASHES), ("heading", _HEADING), ("final", _FINAL), ("answer_line", _ANSWER_LINE)):
        hit = _last(pattern, text)
        if hit is not None:
            found.append((hit[0], kind, hit[1], hit[2]))
    hit = _answer_is(text)
    if hit is not None:
        found.append((hit[0], "answer_is", hit[1], hit[2]))
    for start, kind, span, passage in sorted(found, key=lambda f: -f[0]):
        if kind != "boxed" and ("\\boxed" in span or "\\fbox" in span):
            boxed = last_boxed(span)
            if boxed:
                return Span(boxed[:MAX_SPAN], "boxed", passage[:MAX_SPAN])
        lead = _LEADING_MATH.match(span)
        span = strip_wrappers(lead.group(1) or lead.group(2) if lead else span)
        if span:
            return Span(span[:MAX_SPAN], kind, passage[:MAX_SPAN])
    return None


def strip_special_tokens(text: str) -> str:
    """`text` without trailing chat-template tokens a model ran on into (``<|im_start|>user``, ``</s>``)."""
    return _SPECIAL_TAIL.sub("", text)


def ends_cleanly(text: str) -> bool:
    """Does an unmarked text end where a statement ends, so that it may state an answer?

    It must end (after trailing chat-template tokens) in a sentence end or a closed
    math group, or be a short one-line answer ending in a number: "The total is
    1,000." and "$\\frac{1+\\sqrt{5}}{2}$" do; "3 + 4 = 7, and then we multiply
    by" and "... clips in May. Natalia sold 48+24" (paths cut mid-sentence) do not. Text that
    reads as code (fences, ``def``/``import``/``print(`` lines) never states one.
    """
    if not isinstance(text, str) or _CODE.search(text):
        return False
    tail = strip_special_tokens(text[-1000:]).rstrip(" \t\n")
    if tail.rstrip(".").endswith("**") and tail.count("**") >= 2:  # a closed bold span: "Let me check. **7**"
        return True
    tail = tail.rstrip("*_")
    if not tail:
        return False
    if tail[-1] in ".!?" or tail.endswith(("$", "\\)", "\\]")):  # a sentence or a math group closed
        return True
    # A bare number or expression at the very end ("... = 7", "48+24") is also where a cut path stops:
    # it counts only as a short one-line answer ("1 000", "I first got 3, but recounting gives 7").
    last = tail.rsplit("\n", 1)[-1]
    return bool(_ENDS_IN_MATH.search(tail)) and len(last) <= BARE_ANSWER_CHARS and not _SENTENCE_BREAK.search(last)


def looks_like_prose(span: str) -> bool:
    """Does an answer span read as a sentence (two or more words outside LaTeX commands)?

    "The largest $n$ is 34" does; "7x^2-11x+17", "x = 5" and "\\text{(C)}" do not.
    """
    plain = re.sub(r"\\[A-Za-z]+(?:\{[^{}]*\})?", " ", span)
    plain = re.sub(r"\$[^$]*\$", " ", plain)
    return bool(_PROSE.search(plain))
