"""Math final-answer verification: find the stated answer, then judge equivalence.

    >>> check("1/2", "so the answer is $\\boxed{\\frac{1}{2}}$").correct
    True

Finding the answer. `verifiers.answers.final_answer` reads the published
final-answer conventions (``\\boxed{}``, GSM8K's ``#### n``, PRM800K's
``# Answer``, "Final Answer:", "The answer is: ...", ``Answer:`` lines) in this
process, as pure string work. A completion with no marker is handed to
math-verify's own extraction (``parse`` with its LaTeX and expression
configs), but only when it *ends* in a number or closed math group
(`verifiers.answers.ends_cleanly`): prose or code that merely contains a
number states no answer, so there is no last-number fallback. A completion
the caller marks ``finished=False`` (cut at a token or depth limit) is never
judged: ``reason="unfinished"``.

Judgement runs in tiers, cheapest first:

1. string equality after normalisation (units, ``\\text{}``, ``\\$``, ``\\dfrac``);
2. plain numbers on both sides (integers, decimals, thousands separators
   ``1,000`` / ``1 000`` / ``11,\\! 111``; ``a/b``,
   ``\\frac{a}{b}``, percentages) compared exactly as rationals here, with a
   relative tolerance ``REL_TOL`` for non-integers (math-verify rounds to 6
   places, so it calls 1e-7 and 2e-7 equal);
3. everything else goes to math-verify (``parse`` + ``verify``) in a pool of
   worker processes (`verifiers/_math_worker.py`): LaTeX, intervals, sets,
   tuples, matrices, equations, symbolic expressions, answers stated in a
   sentence ("The largest $n$ is 34").

Safety: model text is never given to ``eval``/``exec``/``sympify`` in this
process, which never imports sympy. In the workers, math-verify's expression
config hands sympy's ``parse_expr`` only strings of digits, operators and
brackets (its regex admits no names), so no model-chosen Python runs; workers
have a 1 GiB address-space cap and are killed and replaced when they miss the
deadline, which the parent enforces so `check` works from any thread. Cheap
pre-filters reject answers that are too long, too deeply nested, or power
towers / factorials of astronomic size before they reach sympy.

Reasons: ``exact``, ``numeric``, ``verified`` (correct); ``mismatch``,
``unparsed``, ``gold_unparsed``, ``no_answer``, ``unfinished``, ``invalid``,
``timeout``, ``memory``, ``error: ...`` (not correct). `unparsed_reason`
tells which of them mean "no answer could be read" rather than "wrong"
(summaries count those next to accuracy). `check` never raises on model output.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from verifiers._cache import VerdictCache
from verifiers._pool import WorkerPool
from verifiers.answers import (
    MAX_SPAN, Span, all_boxed, ends_cleanly, final_answer, looks_like_prose, strip_special_tokens,
    strip_wrappers,
)

__all__ = [
    "MathResult",
    "Rules",
    "extract_answer",
    "same_answer",
    "gold_problem",
    "unparsed_reason",
    "normalize_answer",
    "check",
    "check_batch",
    "cache_info",
    "cache_clear",
    "shutdown",
]

REL_TOL = 1e-6  # relative tolerance for non-integer numbers (also in _math_worker)
MAX_ANSWER_CHARS = 10_000
MAX_UNMARKED = 8000  # characters of an unmarked completion's end that math-verify's extraction reads
MAX_NESTING = 50
MAX_RESULT_DIGITS = 100_000  # power chains with more digits than this are rejected unparsed
MAX_FACTORIAL_ARG = 10_000
CACHE_SIZE = 8192
STARTUP_TIMEOUT = 60.0  # importing sympy on a loaded 2-core box can take seconds
_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_math_worker.py")


@dataclasses.dataclass(frozen=True)
class MathResult:
    """Outcome of one check.

    correct: the prediction's final answer is equivalent to the gold answer.
    extracted: the answer text taken from the prediction (None if none found).
    reason: how the verdict was reached (see the module docstring).
    seconds: wall time of this call.
    cached: the verdict came from the LRU cache.
    """

    correct: bool
    extracted: str | None
    reason: str
    seconds: float = 0.0
    cached: bool = False


# ---------------------------------------------------------------- extraction

UNPARSED_REASONS = ("no_answer", "unfinished", "unparsed", "gold_unparsed", "invalid")


def unparsed_reason(reason: str) -> bool:
    """Does `reason` say the answer (or gold) could not be read, rather than that it was wrong?"""
    return reason in UNPARSED_REASONS or reason.startswith("invalid")


def _unmarked_tail(text: str) -> str:
    """The end of an unmarked completion that math-verify reads (whole lines, at most MAX_UNMARKED chars)."""
    text = strip_special_tokens(text)
    if len(text) <= MAX_UNMARKED:
        return text
    tail = text[-MAX_UNMARKED:]
    cut = tail.find("\n")
    return tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail


def _pred_payload(span: Span, normalized: str) -> str:
    """What math-verify parses for a marked span.

    Several boxes ("\\boxed{1} and \\boxed{2}") and sentences ("Final Answer: The
    largest $n$ is 34.") go as the marked passage, for math-verify's own rules;
    bare math goes normalised, in ``$...$``.
    """
    if span.kind == "boxed" and len(all_boxed(span.context)) > 1:
        return span.context
    if span.kind != "boxed" and looks_like_prose(span.text):
        return span.context or span.text
    return normalized if "$" in normalized or "\\(" in normalized else f"${normalized}$"


def extract_answer(text: str, *, timeout: float = 5.0) -> str | None:
    """The final answer a completion states, as text, or None.

    A marked answer (`verifiers.answers.final_answer`) is returned without its
    ``$``/``**`` wrappers; an unmarked completion that ends in math is asked of
    math-verify's extraction in a worker (the matched text). Nothing is
    evaluated in this process.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    span = final_answer(text)
    if span is not None:
        return span.text
    if not ends_cleanly(text) or _prefilter(_unmarked_tail(text)) is not None:
        return None
    ok, why, extracted = _ask_worker(None, _unmarked_tail(text), timeout, DEFAULT_RULES)
    if why != "extracted" or not extracted:
        return None
    return strip_wrappers(extracted.strip().rstrip(" .").strip("*")) or None


# ---------------------------------------------------------------- normalisation

_UNITS = (
    "square units|sq units|units?|square (?:centimeters|meters|inches|feet|miles|units)|"
    # no single letters (m, s, g, h): "2m" is more often algebra than metres
    "cm|mm|km|meters?|metres?|centimeters?|kilometers?|inches|inch|feet|foot|ft|yards?|miles?|"
    "kg|grams?|kilograms?|pounds?|lbs?|ounces?|oz|"
    "seconds?|sec|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|"
    "dollars?|cents?|euros?|degrees?|deg|percent|mph|km/h|liters?|litres?|ml|gallons?|people|students|"
    "apples|marbles|points|ways|times|pages|books|cookies|eggs"
)
_TRAILING_TEXT = re.compile(r"(?<=[\d}).\s])\s*(?:\\[,;!: ]|~)*\s*\\(?:text|mbox|mathrm|textbf)\{\s*([^{}]*)\}\s*(?:\^\{?[23]\}?)?\s*$")
_TRAILING_UNIT = re.compile(r"(?<=[\d}])\s*(?:\\[,;: ]|~)*\s*(?:" + _UNITS + r")(?:\^\{?[23]\}?|²|³)?\.?\s*$", re.IGNORECASE)
_DEGREES = re.compile(r"\s*(?:\^\s*\{?\\circ\}?|°|\\circ|\\degree)\s*$")


def normalize_answer(ans: str) -> str:
    """Canonical surface form of an extracted answer (no evaluation).

    Drops currency signs, trailing units (``5 cm``, ``5\\text{ cm}``,
    ``30^\\circ``), ``\\left``/``\\right``, ``\\displaystyle``, spaces inside
    numbers; maps ``\\dfrac``/``\\tfrac`` to ``\\frac``, ``**`` to ``^``, plain
    ``pi``/``inf``/``infinity`` to LaTeX, ``x = 5`` to ``5``.
    """
    s = ans.strip()
    s = re.sub(r"(?<=\d),\\!\s?(?=\d{3})", "", s)  # 11,\\! 111: a thousands separator
    s = s.replace("\\!", "").replace("\\displaystyle", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\\$|\$|US\$|€|£", "", s)
    var_eq = re.fullmatch(r"[a-zA-Z]\s*=\s*([-+]?[\d.,/]+%?)", s)  # "x = 5" -> "5"
    if var_eq:
        s = var_eq.group(1)
    for _ in range(2):
        m = _TRAILING_TEXT.search(s)
        if m and s[: m.start()].strip():
            s = s[: m.start()].rstrip()
        s = _TRAILING_UNIT.sub("", s).rstrip()
        s = _DEGREES.sub("", s).rstrip()
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s) if re.fullmatch(r"\\text\{[^{}]*\}", s) else s
    s = s.replace("**", "^")
    s = re.sub(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])", r"\\pi", s)
    s = re.sub(r"(?<![\\a-zA-Z])(?:infinity|inf)(?![a-zA-Z])", r"\\infty", s)
    s = re.sub(r"(\d)\{,\}(\d)", r"\1,\2", s)
    s = re.sub(r"(?<=\d)\\[ ,;](?=\d{3})", "", s)
    return s.strip().rstrip(".").strip()


# ---------------------------------------------------------------- exact numbers

_PLAIN_NUMBER = re.compile(
    r"(?P<sign>[+-]?)\s*(?:"
    r"\\frac\{(?P<fn>\d{1,400})\}\{(?P<fd>\d{1,400})\}"
    r"|(?P<n>[1-9]\d{0,2}(?:(?P<sep>,| |\\[,;: ]|\{,\})\d{3})(?:(?P=sep)\d{3})*(?:\.\d{1,400})?"
    r"|\d{1,4000}(?:\.\d{0,400})?|\.\d{1,400})"
    r"(?:\s*/\s*(?P<d>\d{1,400}))?"
    r")\s*(?P<pct>\\?%)?"
)


@dataclasses.dataclass(frozen=True)
class _Number:
    value: Fraction  # the number as written (50 for "50%")
    percent: bool
    integer: bool


def _plain_number(s: str) -> _Number | None:
    """A plain number (int, decimal, a/b, \\frac{a}{b}, optional %) as an exact rational, else None."""
    m = _PLAIN_NUMBER.fullmatch(s)
    if not m:
        return None
    if m["fn"] is not None:
        num, den = int(m["fn"]), int(m["fd"])
        integer = False
    else:
        num_text = m["n"]
        if m["sep"] is not None:  # thousands separators: 1,000 / 1 000 / 11,\! 111
            num_text = num_text.replace(m["sep"], "")
        # (a decimal comma, 1000,99, is left to math-verify: "1,2" may be a list)
        if num_text.endswith("."):
            num_text = num_text[:-1]
        num = Fraction(num_text)
        den = int(m["d"]) if m["d"] is not None else 1
        integer = "." not in num_text and m["d"] is None
    if den == 0:
        return None
    value = Fraction(num) / den
    if m["sign"] == "-":
        value = -value
    return _Number(value, m["pct"] is not None, integer)


def _numbers_equal(g: _Number, p: _Number) -> bool:
    g_values = {g.value / 100, g.value} if g.percent else {g.value}
    p_values = {p.value / 100, p.value} if p.percent else {p.value}
    if g_values & p_values:
        return True
    if g.integer and p.integer:
        return False
    for a in g_values:
        for b in p_values:
            scale = max(abs(a), abs(b))
            if scale and abs(a - b) <= Fraction(REL_TOL) * scale:
                return True
    return False


# ---------------------------------------------------------------- pre-filters

_POWER_CHAIN = re.compile(r"\d+(?:\.\d+)?(?:\s*(?:\^|\*\*)\s*[{(]?\s*\d+(?:\.\d+)?)+")
_CHAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_BIG_INT = re.compile(r"\d{5,}")


def _chain_log10(chain: str) -> float:
    """log10 of the value of a right-associative numeric power chain (inf if astronomic)."""
    import math

    nums = [float(x) for x in _CHAIN_NUMBER.findall(chain)]
    value_log = math.log10(nums[-1]) if nums[-1] > 0 else 0.0
    for base in reversed(nums[:-1]):
        if value_log > 15:  # exponent itself beyond 1e15: hopeless
            return math.inf
        exponent = 10.0**value_log
        value_log = exponent * math.log10(base) if base > 1 else 0.0
    return value_log


def _prefilter(ans: str) -> str | None:
    """Why `ans` must not reach sympy ("too long", ...), or None if it may."""
    if len(ans) > MAX_ANSWER_CHARS:
        return "too long"
    depth = peak = 0
    for c in ans:
        if c in "([{":
            depth += 1
            peak = max(peak, depth)
        elif c in ")]}":
            depth -= 1
    if peak > MAX_NESTING:
        return "nested too deeply"
    if ans.count("^") + ans.count("**") > 200:
        return "too many powers"
    biggest = 0.0
    for chain in _POWER_CHAIN.findall(ans.replace("{", " ").replace("}", " ").replace("(", " ").replace(")", " ")):
        log10 = _chain_log10(chain)
        if log10 > MAX_RESULT_DIGITS:
            return "power tower too large"
        biggest = max(biggest, log10)
    if "!" in ans or "factorial" in ans or "Gamma" in ans:
        big_literal = any(len(x) > 4 for x in _BIG_INT.findall(ans))
        if big_literal or biggest > 4:
            return "factorial too large"
    return None


# ---------------------------------------------------------------- worker pool


class _Worker:
    """One long-lived `_math_worker.py` process, used by one thread at a time."""

    def __init__(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", _WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # so a kill reaches anything it might spawn
        )
        self._buf = b""
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def wait_ready(self) -> None:
        if self.ready:
            return
        line = self._readline(time.monotonic() + STARTUP_TIMEOUT)
        if line is None or not json.loads(line).get("ready"):
            raise RuntimeError("math worker did not start")
        self.ready = True

    def ask(self, gold: str | None, pred: str, timeout: float, rules: "Rules") -> tuple[bool, str, str | None] | None:
        """(ok, why, extracted) from the worker, or None when it missed the deadline."""
        self.proc.stdin.write((json.dumps({"g": gold, "p": pred, "o": dataclasses.asdict(rules)}) + "\n").encode())
        self.proc.stdin.flush()
        line = self._readline(time.monotonic() + timeout)
        if line is None:
            return None
        reply = json.loads(line)
        extracted = reply.get("x")
        return bool(reply["ok"]), str(reply["why"]), extracted if isinstance(extracted, str) else None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _Pool(WorkerPool["_Worker"]):
    """Idle workers handed out to threads; grows up to `size`, replaces killed ones."""

    def __init__(self, size: int) -> None:
        super().__init__(_Worker, size)

    def release(self, worker: "_Worker", healthy: bool) -> None:
        replacement = None
        if not healthy:
            worker.kill()
            try:  # start the replacement now so its import overlaps other work
                replacement = _Worker()
            except OSError:
                replacement = None
        self.give_back(worker, healthy, replacement=replacement)

    def close(self) -> None:
        for w in self.drain():
            w.kill()


_POOL = _Pool(max(2, os.cpu_count() or 2))


def shutdown() -> None:
    """Kill idle worker processes (they restart on the next check)."""
    _POOL.close()


atexit.register(shutdown)


def _ask_worker(gold: str | None, pred: str, timeout: float, rules: "Rules") -> tuple[bool, str, str | None]:
    """(ok, why, extracted) from a worker; gold None asks only for math-verify's extraction of `pred`."""
    worker = _POOL.acquire()
    healthy = False
    try:
        worker.wait_ready()  # start-up is not charged to this check's deadline
        reply = worker.ask(gold, pred, timeout, rules)
        if reply is None:
            return False, "timeout", None
        healthy = True
        return reply
    except (EOFError, OSError, ValueError, RuntimeError):
        return False, "error: worker died", None  # e.g. killed by the memory cap
    finally:
        _POOL.release(worker, healthy)


# ---------------------------------------------------------------- cache

_CACHE: VerdictCache[MathResult] = VerdictCache(CACHE_SIZE)  # check's verdicts by (gold, prediction, rules)
_SAME: VerdictCache[bool] = VerdictCache(CACHE_SIZE)  # same_answer's verdicts


def cache_info() -> dict[str, int]:
    """{"hits", "misses", "size"} of the (gold, answer) LRU cache."""
    return _CACHE.info()


def cache_clear() -> None:
    _CACHE.clear()
    _SAME.clear()


def _forget_after_fork() -> None:
    # A forked child must not share worker pipes with its parent.
    global _POOL
    _POOL = _Pool(_POOL.size)


os.register_at_fork(after_in_child=_forget_after_fork)


# ---------------------------------------------------------------- judgement


@dataclasses.dataclass(frozen=True)
class Rules:
    """How two answers are compared: math-verify's ``verify`` options.

    float_rounding: decimal places floats are rounded to (6: math-verify's
        default; then non-integers also need relative agreement REL_TOL).
    strict: False lets variables differ (``f(x)`` matches ``f(y)``).
    allow_set_relation_comp: an interval matches the inequality defining it.
    """

    float_rounding: int = 6
    strict: bool = True
    allow_set_relation_comp: bool = False


DEFAULT_RULES = Rules()


def _gold_answer(gold: str) -> str:
    """The gold answer text: a worked solution's one ``\\boxed{}``, else the text unwrapped.

    A gold with several boxes ("\\boxed{1} and \\boxed{-2}") is kept whole: math-verify reads it as a set.
    """
    boxes = all_boxed(gold, limit=2) if ("\\boxed" in gold or "\\fbox" in gold) else []
    if len(boxes) == 1:
        return boxes[0]
    return gold.strip() if boxes else strip_wrappers(gold)


def _gold_payload(gold: str) -> str:
    """What math-verify parses for the gold answer (bare LaTeX goes in ``$...$``, as MATH's answers are)."""
    if "$" in gold or "\\(" in gold or "\\[" in gold:
        return gold
    return f"${gold}$"


def _judge(gold: str, span: Span, timeout: float, rules: Rules) -> tuple[bool, str, str]:
    """(correct, reason, extracted) for a gold answer and a marked answer span."""
    if "\\boxed" in gold or "\\fbox" in gold:  # several boxes: math-verify reads them as a set
        return (*_ask_worker(gold, _pred_payload(span, normalize_answer(span.text)), timeout, rules)[:2], span.text)
    g_norm, p_norm = normalize_answer(gold), normalize_answer(span.text)
    if g_norm == p_norm and g_norm:
        return True, "exact", span.text
    g_num, p_num = _plain_number(g_norm), _plain_number(p_norm)
    if g_num is not None and p_num is not None and (rules == DEFAULT_RULES or (g_num.integer and p_num.integer)):
        return (True, "numeric", span.text) if _numbers_equal(g_num, p_num) else (False, "mismatch", span.text)
    for s, who in ((g_norm, "gold"), (p_norm, "pred")):
        why = _prefilter(s)
        if why is not None:
            return False, "invalid" if who == "pred" else "invalid: gold " + why, span.text
    ok, why, _ = _ask_worker(_gold_payload(g_norm), _pred_payload(span, p_norm), timeout, rules)
    return ok, why, span.text


def _judge_unmarked(gold: str, text: str, timeout: float, rules: Rules) -> tuple[bool, str, str | None]:
    """(correct, reason, extracted) for a completion without a final-answer marker that ends in math."""
    tail = _unmarked_tail(text)
    g_norm = normalize_answer(gold)
    p_num = _plain_number(normalize_answer(tail))
    g_num = _plain_number(g_norm)
    if g_num is not None and p_num is not None and rules == DEFAULT_RULES:  # the whole text is one number ("1 000")
        ok = _numbers_equal(g_num, p_num)
        return ok, "numeric" if ok else "mismatch", tail.strip()
    why = _prefilter(g_norm)
    if why is not None:
        return False, "invalid: gold " + why, None
    if _prefilter(tail) is not None:
        return False, "invalid", None
    return _ask_worker(_gold_payload(g_norm), tail, timeout, rules)


def _verdict(gold: str, prediction: str, timeout: float, rules: Rules) -> MathResult:
    span = final_answer(prediction)
    if span is None and not ends_cleanly(prediction):
        return MathResult(False, None, "no_answer")
    if span is not None and len(span.text) >= MAX_SPAN:
        return MathResult(False, span.text[:200], "invalid")
    if span is not None:
        correct, reason, extracted = _judge(gold, span, timeout, rules)
    else:
        correct, reason, extracted = _judge_unmarked(gold, prediction, timeout, rules)
    if reason == "unparsed" and extracted is None:
        reason = "no_answer"
    return MathResult(correct, extracted, reason)


def check(
    gold: str | int | float,
    prediction: str,
    *,
    timeout: float = 5.0,
    use_cache: bool = True,
    finished: bool = True,
    rules: Rules = DEFAULT_RULES,
) -> MathResult:
    """Is the final answer in `prediction` equivalent to `gold`?

    gold: the reference answer ("3/4", "\\frac{3}{4}", "[1, 2)", ...); a worked
        solution's last ``\\boxed{}`` is taken.
    prediction: a model completion (any text); its answer is found as the
        module docstring says.
    timeout: seconds the worker may spend on this pair; past it the worker is
        killed and the result is ``reason="timeout"``. Worker start-up is not
        counted.
    use_cache: look up / store the verdict in the LRU cache.
    finished: False for a completion that was cut (token or depth limit): it
        is never judged correct (``reason="unfinished"``).
    rules: math-verify's comparison options (`Rules`).
    Never raises on model output; thread-safe.
    """
    t0 = time.perf_counter()
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not isinstance(prediction, str):
        return MathResult(False, None, "invalid", time.perf_counter() - t0)
    if not finished:
        return MathResult(False, None, "unfinished", time.perf_counter() - t0)
    gold = _gold_answer(gold)
    key = (gold, prediction if len(prediction) <= 4 * MAX_SPAN else prediction[-4 * MAX_SPAN :], rules)
    if use_cache and (hit := _CACHE.get(key)) is not None:
        return dataclasses.replace(hit, seconds=time.perf_counter() - t0, cached=True)
    result = dataclasses.replace(_verdict(gold, prediction, float(timeout), rules), seconds=time.perf_counter() - t0)
    if use_cache and result.reason != "timeout" and not result.reason.startswith("error"):
        _CACHE.put(key, result)
    return result


def gold_problem(gold: str, *, timeout: float = 5.0) -> str | None:
    """Why math-verify cannot read `gold` as an answer (a dataset error), or None when it can."""
    if not isinstance(gold, str) or not gold.strip():
        return "is empty"
    g = normalize_answer(_gold_answer(gold))
    if _plain_number(g) is not None:
        return None
    why = _prefilter(g)
    if why is not None:
        return why
    ok, reason, extracted = _ask_worker(None, _gold_payload(g), timeout, DEFAULT_RULES)
    if reason == "extracted" and extracted:
        return None
    return "cannot be parsed as an answer" if reason in ("unparsed", "extracted") else f"cannot be read ({reason})"


def same_answer(a: str, b: str, *, timeout: float = 5.0) -> bool:
    """Are two extracted answers equivalent (for grouping votes)? Symmetric by construction."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    if a == b:
        return True
    key = (a, b) if a <= b else (b, a)
    hit = _SAME.get(key)
    if hit is not None:
        return hit
    same = all(_judge(_gold_answer(x), Span(y, "answer_line"), timeout, DEFAULT_RULES)[0] for x, y in (key, key[::-1]))
    _SAME.put(key, same)
    return same


def check_batch(
    pairs: Iterable[tuple[str, str]] | Sequence[tuple[str, str]],
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    use_cache: bool = True,
) -> list[MathResult]:
    """`check` over (gold, prediction) pairs, `workers` at a time; results in input order."""
    pairs = list(pairs)
    workers = max(1, workers or _POOL.size)
    _POOL.grow(workers)
    if workers == 1 or len(pairs) <= 1:
        return [check(g, p, timeout=timeout, use_cache=use_cache) for g, p in pairs]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda gp: check(gp[0], gp[1], timeout=timeout, use_cache=use_cache), pairs))
