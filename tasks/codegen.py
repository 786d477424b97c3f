"""Procedurally generated small Python functions, each checked by generated asserts in the sandbox.

One real problem (``problems("test", 1, seed=0)``)::

    prompt:   Write a Python function `clip_above(nums)` that returns a new list in which every number
              of the list `nums` that is greater than 30 is replaced by 30.
              For example: clip_above([43, -4, 34, 42, -4, 7, 37]) == [30, -4, 30, 30, -4, 7, 30]
    solution: def clip_above(nums):
                  return [min(x, 30) for x in nums]
    tests:    assert clip_above([43, -4, 34, 42, -4, 7, 37]) == [30, -4, 30, 30, -4, 7, 30]
              assert clip_above([-6, 38, 19, 50, 11]) == [-6, 30, 19, 30, 11]
              ... (six asserts in all)

(The prompt is one line up to the newline before "For example"; it is wrapped here.)

A problem is a family (sum the multiples of k, rotate a list, Caesar-shift a
string, ...) with its parameters filled in and a function name drawn from a few
synonyms. The reference implementation is a source template; the tests are
asserts whose expected values come from a Python twin of that template run on
seeded random inputs (the twins and templates are checked against each other
in the sandbox by the tests). The first assert is shown in the prompt as an
example. The split is decided by a hash of the family and its parameters, not
the function name, so a test problem's behaviour never appears in train.

Solutions are code, so the step delimiter is a newline (one source line per
step) and there is no ``Answer:`` line: a completion is judged by extracting
its code (the fenced block defining the function, else the first fenced block,
else the whole text) and running the tests in `verifiers.code.check`.
"""
from __future__ import annotations

import dataclasses
import random
import re
import string
from typing import Any, Callable

from tasks.base import Problem, check_seed, check_split, split_of

NAME = "codegen"
N_TESTS = 6
DEFAULT_TIMEOUT = 10.0

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+.-]*[ \t]*\n(.*?)(?:```|\Z)", re.S)


@dataclasses.dataclass(frozen=True)
class Family:
    """One kind of function. `spec` and `body` are format strings over a params dict;
    `reference(**params)` is the Python twin of `body`; `inputs(rng, params)` draws one
    argument tuple; `edge` are argument tuples always tested."""

    key: str
    names: tuple[str, ...]
    args: str
    spec: str
    body: str
    reference: Callable[..., Callable]
    params: tuple[dict[str, Any], ...]
    inputs: Callable[[random.Random, dict[str, Any]], tuple]
    edge: tuple[tuple, ...] = ()


def _ints(lo: int, hi: int, max_len: int = 8, min_len: int = 0):
    return lambda rng, p: ([rng.randint(lo, hi) for _ in range(rng.randint(min_len, max_len))],)


def _words(rng: random.Random, p: dict[str, Any]) -> tuple:
    """Words of 1-8 letters joined by the family's separator (a space unless `p` names one)."""
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 6))]
    return (p.get("sep", " ").join(words),)


def _text(alphabet: str, max_len: int = 16):
    return lambda rng, p: ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len))),)


def _text_with_char(rng: random.Random, p: dict[str, Any]) -> tuple:
    """Strings where the counted character is common, so counts are not all zero."""
    return _text(p["c"] * 3 + "abcxyz ")(rng, p)


def _caesar(k: int):
    return lambda s: "".join(chr((ord(ch) - 97 + k) % 26 + 97) if "a" <= ch <= "z" else ch for ch in s)


def _rotate(k: int):
    return lambda items: items[k % len(items) :] + items[: k % len(items)] if items else []


def _running_max(nums: list[int]) -> list[int]:
    out: list[int] = []
    for x in nums:
        out.append(x if not out else max(out[-1], x))
    return out


FAMILIES: tuple[Family, ...] = (
    Family(
        "sum_divisible", ("sum_divisible", "sum_of_multiples", "divisible_sum"), "nums",
        "returns the sum of the numbers in the list `nums` that are divisible by {k}",
        "return sum(x for x in nums if x % {k} == 0)",
        lambda k: lambda nums: sum(x for x in nums if x % k == 0),
        tuple({"k": k} for k in range(2, 13)), _ints(-20, 50), (([],),),
    ),
    Family(
        "count_greater", ("count_greater", "count_above", "num_greater"), "nums",
        "returns how many numbers in the list `nums` are greater than {k}",
        "return sum(1 for x in nums if x > {k})",
        lambda k: lambda nums: sum(1 for x in nums if x > k),
        tuple({"k": k} for k in range(-10, 41)), _ints(-20, 50), (([],),),
    ),
    Family(
        "count_between", ("count_between", "count_in_range", "in_range_count"), "nums",
        "returns how many numbers in the list `nums` are between {lo} and {hi}, inclusive",
        "return sum(1 for x in nums if {lo} <= x <= {hi})",
        lambda lo, hi: lambda nums: sum(1 for x in nums if lo <= x <= hi),
        tuple({"lo": lo, "hi": lo + w} for lo in range(-10, 21) for w in (2, 5, 10, 15, 20)), _ints(-20, 50, 10),
    ),
    Family(
        "scale", ("scale", "multiply_all", "scaled"), "nums",
        "returns a new list with every number in the list `nums` multiplied by {k}",
        "return [x * {k} for x in nums]",
        lambda k: lambda nums: [x * k for x in nums],
        tuple({"k": k} for k in range(2, 21)), _ints(-20, 50), (([],),),
    ),
    Family(
        "clip_above", ("clip_above", "cap_values", "clamp_high"), "nums",
        "returns a new list in which every number of the list `nums` that is greater than {k} is replaced by {k}",
        "return [min(x, {k}) for x in nums]",
        lambda k: lambda nums: [min(x, k) for x in nums],
        tuple({"k": k} for k in range(0, 31)), _ints(-20, 50),
    ),
    Family(
        "replace_value", ("replace_value", "substitute", "swap_value"), "nums",
        "returns a new list in which every occurrence of {a} in the list `nums` is replaced by {b}",
        "return [{b} if x == {a} else x for x in nums]",
        lambda a, b: lambda nums: [b if x == a else x for x in nums],
        tuple({"a": a, "b": b} for a in range(10) for b in range(10) if a != b), _ints(0, 9, 10),
    ),
    Family(
        "every_kth", ("every_kth", "take_every", "stride"), "items",
        "returns every {k}-th element of the list `items`, starting with the first element",
        "return items[::{k}]",
        lambda k: lambda items: items[::k],
        tuple({"k": k} for k in range(2, 7)), _ints(0, 99, 15), (([],),),
    ),
    Family(
        "rotate_left", ("rotate_left", "rotate", "shift_left"), "items",
        "returns the list `items` rotated left by {k} positions (the first elements move to the end, "
        "wrapping around again when the list is shorter than {k}); an empty list gives an empty list",
        "if not items:\n        return []\n    k = {k} % len(items)\n    return items[k:] + items[:k]",
        _rotate,
        tuple({"k": k} for k in range(1, 7)), _ints(0, 99, 9, 1), (([],),),
    ),
    Family(
        "reverse_words", ("reverse_words", "flip_words", "words_backwards"), "s",
        "returns the string `s` with the order of its words reversed, where words are separated by {sep!r}",
        "return {sep!r}.join(reversed(s.split({sep!r})))",
        lambda sep: lambda s: sep.join(reversed(s.split(sep))),
        tuple({"sep": sep} for sep in (" ", ",", "-", ";", "/", "|")), _words,
    ),
    Family(
        "count_char", ("count_char", "char_count", "occurrences"), "s",
        "returns how many times the character {c!r} occurs in the string `s`",
        "return s.count({c!r})",
        lambda c: lambda s: s.count(c),
        tuple({"c": c} for c in string.ascii_lowercase), _text_with_char,
    ),
    Family(
        "caesar", ("caesar", "shift_letters", "rot"), "s",
        "returns the string `s` with every lowercase letter shifted forward by {k} places in the alphabet "
        "(wrapping around from z to a); all other characters are unchanged",
        "return ''.join(chr((ord(ch) - 97 + {k}) % 26 + 97) if 'a' <= ch <= 'z' else ch for ch in s)",
        _caesar,
        tuple({"k": k} for k in range(1, 26)), _text(string.ascii_lowercase + " .!AZ"),
    ),
    Family(
        "long_words", ("long_words", "keep_long_words", "filter_words"), "s",
        "returns the words of the string `s` (separated by single spaces) that have at least {k} letters, "
        "in their original order and joined by single spaces",
        "return ' '.join(w for w in s.split(' ') if len(w) >= {k})",
        lambda k: lambda s: " ".join(w for w in s.split(" ") if len(w) >= k),
        tuple({"k": k} for k in range(2, 8)), _words,
    ),
    Family(
        "power_sum", ("power_sum", "sum_of_powers", "powered_total"), "nums",
        "returns the sum of x**{k} over every number x in the list `nums`",
        "return sum(x ** {k} for x in nums)",
        lambda k: lambda nums: sum(x**k for x in nums),
        tuple({"k": k} for k in range(1, 5)), _ints(-9, 9), (([],),),
    ),
    Family(
        "first_index", ("first_index", "find_first", "index_of"), "nums",
        "returns the index of the first occurrence of {k} in the list `nums`, or -1 if {k} does not occur",
        "return nums.index({k}) if {k} in nums else -1",
        lambda k: lambda nums: nums.index(k) if k in nums else -1,
        tuple({"k": k} for k in range(0, 21)), _ints(0, 20, 10), (([],),),
    ),
    Family(
        "spread", ("spread", "value_range", "max_minus_min"), "nums",
        "returns the largest number in the non-empty list `nums` minus the smallest one",
        "return max(nums) - min(nums)",
        lambda: lambda nums: max(nums) - min(nums),
        ({},), _ints(-50, 50, 8, 1),
    ),
    Family(
        "dedupe", ("dedupe", "unique_in_order", "drop_duplicates"), "items",
        "returns the elements of the list `items` without duplicates, keeping the first occurrence of each, in order",
        "seen = set()\n    out = []\n    for x in items:\n        if x not in seen:\n            seen.add(x)\n"
        "            out.append(x)\n    return out",
        lambda: lambda items: list(dict.fromkeys(items)),
        ({},), _ints(0, 6, 10), (([],),),
    ),
    Family(
        "is_palindrome", ("is_palindrome", "reads_same_backwards", "palindromic"), "s",
        "returns True if the string `s` reads the same forwards and backwards once spaces are removed "
        "and case is ignored, else False",
        "t = s.replace(' ', '').lower()\n    return t == t[::-1]",
        lambda: lambda s: s.replace(" ", "").lower() == s.replace(" ", "").lower()[::-1],
        ({},), _text("abA B", 7), (("Never odd or even",), ("",), ("ab",)),
    ),
    Family(
        "count_vowels", ("count_vowels", "vowel_count", "num_vowels"), "s",
        "returns the number of vowels (a, e, i, o, u, in either case) in the string `s`",
        "return sum(1 for ch in s.lower() if ch in 'aeiou')",
        lambda: lambda s: sum(1 for ch in s.lower() if ch in "aeiou"),
        ({},), _text("aeiouAEIOUbcdxyz "),
    ),
    Family(
        "digit_sum", ("digit_sum", "sum_digits", "digits_total"), "n",
        "returns the sum of the decimal digits of the non-negative integer `n`",
        "return sum(int(d) for d in str(n))",
        lambda: lambda n: sum(int(d) for d in str(n)),
        ({},), lambda rng, p: (rng.randint(0, 10 ** rng.randint(1, 9)),), ((0,),),
    ),
    Family(
        "running_max", ("running_max", "prefix_max", "cumulative_max"), "nums",
        "returns a list whose i-th element is the largest of the first i+1 numbers of the list `nums`",
        "out = []\n    for x in nums:\n        out.append(x if not out else max(out[-1], x))\n    return out",
        lambda: _running_max,
        ({},), _ints(-20, 50), (([],),),
    ),
)


def family_key(fam: Family, params: dict[str, Any]) -> str:
    return fam.key + "".join(f"/{k}={params[k]!r}" for k in sorted(params))


def reference_source(fam: Family, params: dict[str, Any], name: str) -> str:
    return f"def {name}({fam.args}):\n    {fam.body.format(**params)}\n"


def make_tests(fam: Family, params: dict[str, Any], name: str) -> list[str]:
    """Assert lines from the Python twin on seeded random inputs and the edge cases.

    At least `N_TESTS` distinct inputs, drawn until the expected values are not all
    the same, so a function returning a constant never passes.
    """
    key = family_key(fam, params)
    rng = random.Random(f"{NAME}/tests/{key}")
    fn = fam.reference(**params)
    cases = list(fam.edge)
    seen = {repr(c) for c in cases}
    random_cases: list[tuple] = []
    for _ in range(50 * N_TESTS):
        outputs = {repr(fn(*c)) for c in cases + random_cases}
        if len(random_cases) >= N_TESTS and len(outputs) >= 2:
            break
        args = fam.inputs(rng, params)
        if repr(args) not in seen:
            seen.add(repr(args))
            random_cases.append(args)
    cases = random_cases + cases
    assert len({repr(fn(*c)) for c in cases}) >= 2, f"{key}: tests cannot tell a constant function apart"
    return [f"assert {name}({', '.join(map(repr, a))}) == {fn(*a)!r}" for a in cases]


def make_problem(fam: Family, params: dict[str, Any], name: str, split: str, index: int) -> Problem:
    spec = fam.spec.format(**params)
    tests = make_tests(fam, params, name)
    example = tests[0].removeprefix("assert ")
    source = reference_source(fam, params, name)
    return Problem(
        id=f"codegen-{split}-{index:06d}",
        prompt=f"Write a Python function `{name}({fam.args})` that {spec}.\nFor example: {example}",
        answer=source,
        solution=source.rstrip("\n"),
        meta={"family": fam.key, "params": dict(params), "entry_point": name, "tests": tests},
    )


def all_instances() -> list[tuple[Family, dict[str, Any]]]:
    """Every (family, params) pair, in a fixed order."""
    return [(fam, p) for fam in FAMILIES for p in fam.params]


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The program in a completion: the fenced block defining `entry_point`, else the first
    fenced block (an unclosed final fence counts), else the whole text."""
    blocks = [m.group(1) for m in _FENCE.finditer(completion or "")]
    if not blocks:
        return completion or ""
    if entry_point:
        pattern = re.compile(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", re.M)
        for block in blocks:
            if pattern.search(block):
                return block
    return blocks[0]


def run_tests(
    program: str,
    tests: str | list[str],
    *,
    entry_point: str | None = None,
    trusted_prefix: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> bool:
    """Does `program` pass `tests` (a source string, or assert statements) in the code sandbox?

    Nothing runs in this process: `verifiers.code.check` runs the program in a
    sandboxed subprocess and the tests in a separate trusted one.
    """
    from verifiers.code import check

    result = check(program, tests, timeout=timeout, entry_point=entry_point, trusted_prefix=trusted_prefix)
    return bool(result.passed)


class CodegenTask:
    name = NAME
    step_delimiter = "\n"
    verifier = "code"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout

    def problems(self, split: str, n: int, *, seed: int = 0) -> list[Problem]:
        """`n` distinct problems of `split`, a seeded shuffle of all of them (a prefix grows with n)."""
        check_split(split)
        check_seed(seed)
        pool = [(f, p) for f, p in all_instances() if split_of(family_key(f, p)) == split]
        if n > len(pool):
            raise ValueError(f"{NAME} has {len(pool)} {split} problems; asked for {n}")
        rng = random.Random(f"{NAME}/{split}/{seed}")
        rng.shuffle(pool)
        out = []
        for fam, params in pool[:n]:
            name = random.Random(f"{NAME}/name/{seed}/{family_key(fam, params)}").choice(fam.names)
            out.append(make_problem(fam, params, name, split, len(out)))
        return out

    def score(self, problem: Problem, completion: str) -> float:
        entry = problem.meta["entry_point"]
        program = extract_code(completion, entry)
        ok = run_tests(program, list(problem.meta["tests"]), timeout=self.timeout)
        return 1.0 if ok else 0.0
