"""Math final-answer verification: extract the answer, then judge equivalence.

    >>> check("1/2", "so the answer is $\\boxed{\\frac{1}{2}}$").correct
    True

Extraction (`extract_answer`) is pure string work in this process: the last
``\\boxed{...}`` (nested braces), else the last ``Answer:`` / ``####`` line,
else "the answer is ...", else the last bold ``**...**`` holding a number or
math, else the last number.

Judgement (`check`) runs in three tiers, cheapest first:

1. string equality after normalisation (units, ``\\text{}``, ``\\$``, ``\\dfrac``);
2. plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, percentages,
   thousands separators) compared exactly as rationals here, with a relative
   tolerance ``REL_TOL`` for non-integers (math-verify rounds to 6 places, so
   it calls 1e-7 and 2e-7 equal);
3. everything else (LaTeX, intervals, sets, tuples, matrices, equations,
   symbolic expressions) goes to math-verify + sympy in a pool of worker
   processes (`verifiers/_math_worker.py`).

Safety: model text is never given to ``eval``/``exec``/``sympify`` in this
process. Workers use only math-verify's LaTeX parser (its plain-expression
path calls sympy's ``parse_expr``), run with a 1 GiB address-space cap, and
are killed and replaced when they miss the deadline, which the parent enforces
so `check` works from any thread. Cheap pre-filters reject answers that are
too long, too deeply nested, or power towers / factorials of astronomic size
before they reach sympy.

Reasons: ``exact``, ``numeric``, ``verified`` (correct); ``mismatch``,
``unparsed``, ``gold_unparsed``, ``no_answer``, ``invalid``, ``timeout``,
``memory``, ``error: ...`` (not correct). `check` never raises on model output.
"""
from __future__ import annotations

import atexit
import collections
import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from verifiers._pool import WorkerPool

__all__ = [
    "MathResult",
    "extract_answer",
    "normalize_answer",
    "check",
    "check_batch",
    "cache_info",
    "cache_clear",
    "shutdown",
]

REL_TOL = 1e-6  # relative tolerance for non-integer numbers (also in _math_worker)
MAX_ANSWER_CHARS = 10_000
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

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s$]+)")
# Greedy captures, stripped afterwards: a lazy `(.+?)\s*$` is quadratic on long runs of spaces.
_ANSWER_LINE = re.compile(r"^[ \t>*#_]*(?:final[ \t]+)?answer[ \t*_]*[:：][ \t*_]*(.+)$", re.IGNORECASE | re.MULTILINE)
_HASHES = re.compile(r"^[ \t]*####[ \t]*(.+)$", re.MULTILINE)
_ANSWER_IS = re.compile(r"answer\s+is\s*[:：]?\s*([^\n]{1,300})", re.IGNORECASE)
_BOLD = re.compile(r"\*\*([^*\n]{1,300})\*\*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?|-?\.\d+")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', or None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{" and text[i - 1 : i] != "\\":
            depth += 1
        elif c == "}" and text[i - 1 : i] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _strip_wrappers(ans: str) -> str:
    ans = ans.strip()
    for _ in range(3):
        before = ans
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
                ans = ans[len(left) : len(ans) - len(right)].strip()
        ans = ans.rstrip(" .;,:").strip()
        if ans.startswith("**") and ans.endswith("**") and len(ans) > 4:
            ans = ans[2:-2].strip()
        if ans == before:
            break
    return ans


def extract_answer(text: str) -> str | None:
    """The final answer in a model completion, as text, or None.

    Priority: last ``\\boxed{...}``/``\\fbox{...}``, last ``Answer: ...`` line,
    last ``#### ...`` line, last "the answer is ...", last bold span holding a
    digit or ``$``, last number. Surrounding ``$``, ``\\(...\\)`` and a trailing
    period are removed. Pure string scanning: nothing is parsed or evaluated.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    boxes = list(_BOXED.finditer(text))
    for m in reversed(boxes[-4:]):  # bounded: each try may scan to the end of the text
        inner = _braced(text, m.end() - 1)
        if inner is not None and inner.strip():
            return _strip_wrappers(inner)
    bare = _BOXED_BARE.findall(text)
    if bare:
        return _strip_wrappers(bare[-1])
    for pattern in (_ANSWER_LINE, _HASHES):
        found = pattern.findall(text)
        if found:
            ans = found[-1]
            if "$" in ans:  # "Answer: so $x = 3$." -> the math
                maths = re.findall(r"\$([^$]+)\$", ans)
                if maths:
                    ans = maths[-1]
            ans = _strip_wrappers(ans)
            if ans:
                return ans
    found = _ANSWER_IS.findall(text)
    if found:
        ans = found[-1]
        maths = re.findall(r"\$([^$]+)\$", ans)
        if maths:
            ans = maths[0]
        else:
            ans = re.split(r"\.(?:\s|$)", ans, maxsplit=1)[0]
        ans = _strip_wrappers(ans)
        if ans:
            return ans
    bold = [b for b in _BOLD.findall(text) if re.search(r"[\d$]", b)]
    if bold:
        return _strip_wrappers(bold[-1])
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(" ", "").rstrip(",")
    return None


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
    r"|(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d{1,400})?|\d{1,4000}(?:\.\d{0,400})?|\.\d{1,400})"
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
        num_text = m["n"].replace(",", "")
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

    def ask(self, gold: str, pred: str, timeout: float) -> tuple[bool, str] | None:
        """(ok, why) from the worker, or None when it missed the deadline."""
        self.proc.stdin.write((json.dumps({"g": gold, "p": pred}) + "\n").encode())
        self.proc.stdin.flush()
        line = self._readline(time.monotonic() + timeout)
        if line is None:
            return None
        reply = json.loads(line)
        return bool(reply["ok"]), str(reply["why"])

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


def _ask_worker(gold: str, pred: str, timeout: float) -> tuple[bool, str]:
    worker = _POOL.acquire()
    healthy = False
    try:
        worker.wait_ready()  # start-up is not charged to this check's deadline
        reply = worker.ask(gold, pred, timeout)
        if reply is None:
            return False, "timeout"
        healthy = True
        return reply
    except (EOFError, OSError, ValueError, RuntimeError):
        return False, "error: worker died"  # e.g. killed by the memory cap
    finally:
        _POOL.release(worker, healthy)


# ---------------------------------------------------------------- cache

_CACHE: collections.OrderedDict[tuple[str, str], MathResult] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_STATS = {"hits": 0, "misses": 0}


def cache_info() -> dict[str, int]:
    """{"hits", "misses", "size"} of the (gold, answer) LRU cache."""
    with _CACHE_LOCK:
        return {**_CACHE_STATS, "size": len(_CACHE)}


def cache_clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_STATS.update(hits=0, misses=0)


def _forget_after_fork() -> None:
    # A forked child must not share worker pipes with its parent; locks may
    # have been held by a thread that does not exist in the child.
    global _POOL, _CACHE_LOCK
    _POOL, _CACHE_LOCK = _Pool(_POOL.size), threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


# ---------------------------------------------------------------- judgement


def _wrap(s: str) -> str:
    return s if s.startswith("$") else f"${s}$"


def _judge(gold: str, pred: str, timeout: float) -> tuple[bool, str]:
    """(correct, reason) for normalised gold and predicted answers."""
    if gold == pred:
        return True, "exact"
    g_num, p_num = _plain_number(gold), _plain_number(pred)
    if g_num is not None and p_num is not None:
        return (True, "numeric") if _numbers_equal(g_num, p_num) else (False, "mismatch")
    for s in (gold, pred):
        why = _prefilter(s)
        if why is not None:
            return False, "invalid" if s is pred else "invalid: gold " + why
    return _ask_worker(_wrap(gold), _wrap(pred), timeout)


def _gold_answer(gold: str) -> str:
    if "\\boxed" in gold or "\\fbox" in gold:
        return extract_answer(gold) or gold
    return _strip_wrappers(gold)


def check(gold: str | int | float, prediction: str, *, timeout: float = 5.0, use_cache: bool = True) -> MathResult:
    """Is the final answer in `prediction` equivalent to `gold`?

    gold: the reference answer ("3/4", "\\frac{3}{4}", "[1, 2)", ...); a
        ``\\boxed{}`` inside it is extracted.
    prediction: a model completion (any text); its final answer is found with
        `extract_answer`.
    timeout: seconds the worker may spend on this pair; past it the worker is
        killed and the result is ``reason="timeout"``. Worker start-up is not
        counted.
    use_cache: look up / store the verdict in the LRU cache.
    Never raises on model output; thread-safe.
    """
    t0 = time.perf_counter()
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not isinstance(prediction, str):
        return MathResult(False, None, "invalid", time.perf_counter() - t0)
    extracted = extract_answer(prediction)
    if extracted is None:
        return MathResult(False, None, "no_answer", time.perf_counter() - t0)
    if len(extracted) > MAX_ANSWER_CHARS:
        return MathResult(False, extracted[:200], "invalid", time.perf_counter() - t0)
    key = (gold, extracted)
    if use_cache:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                _CACHE_STATS["hits"] += 1
                return dataclasses.replace(hit, seconds=time.perf_counter() - t0, cached=True)
            _CACHE_STATS["misses"] += 1
    correct, reason = _judge(normalize_answer(_gold_answer(gold)), normalize_answer(extracted), float(timeout))
    result = MathResult(correct, extracted, reason, time.perf_counter() - t0)
    if use_cache and reason != "timeout" and not reason.startswith("error"):
        with _CACHE_LOCK:
            _CACHE[key] = result
            if len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    return result


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
