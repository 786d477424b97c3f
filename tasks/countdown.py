"""Countdown / make-24: combine four numbers with + - * / to hit a target, one operation per line.

One real problem (``problems("test", 1, seed=0)``)::

    prompt:   Q: Use 2, 12, 5, 3 to make 11 with + - * / and each number exactly once.
    solution: 5+2=7
              12/3=4
              7+4=11
              Answer: (5+2)+(12/3)

Search pays off here: most first operations lead to dead ends that must be
abandoned. Only solvable instances are generated: four numbers in 1..13 are
drawn from a seeded generator, every value reachable with positive integer
intermediates is enumerated by brute force, and the target is drawn from the
reachable values in 10..100 (or fixed, e.g. ``target=24`` for the classic make-24
game); the reference solution is the first one a depth-first search finds.
Each step line is ``a op b=c``; the final line is ``Answer: EXPR``. An
instance (the sorted numbers and the target) belongs to the train or test split
by a hash, so the splits are disjoint whatever the order the numbers are shown in.

The verifier parses EXPR with a small recursive-descent parser over exact
fractions (never eval): integers, ``+ - * /`` (``×`` and ``÷`` read as ``*`` and
``/``) and parentheses, no unary minus; it checks that each given number is used
exactly once and that the value equals the target. An optional trailing
``= TARGET`` is accepted. Division by zero, garbage and anything over 200
characters are rejected, with a reason.
"""
from __future__ import annotations

import functools
import random
import re
from collections import Counter
from fractions import Fraction

from tasks.base import Problem, check_seed, check_split, draw_distinct
from verifiers.exact import extract_final_answer

NAME = "countdown"
N_NUMBERS = 4
MAX_NUMBER = 13
TARGET_RANGE = (10, 100)
MAX_TEXT = 200
MAX_DEPTH = 50

_TOKEN = re.compile(r"\s*(\d{1,6}|[-+*/()×÷])")
_TRAILING_TARGET = re.compile(r"^(.*?)\s*=\s*([+-]?\d{1,9})\s*$", re.S)


# --- brute force over positive integer intermediates ---


def _moves(a: int, b: int) -> list[tuple[int, str, int, int]]:
    """Operations on a pair that keep intermediates positive integers: (left, op, right, value)."""
    hi, lo = max(a, b), min(a, b)
    out = [(hi, "+", lo, hi + lo), (hi, "*", lo, hi * lo)]
    if hi > lo:
        out.append((hi, "-", lo, hi - lo))
    if hi % lo == 0 and lo != 1:  # dividing by 1 is allowed by the rules but never needed
        out.append((hi, "/", lo, hi // lo))
    return out


@functools.lru_cache(maxsize=None)
def reachable(numbers: tuple[int, ...]) -> frozenset[int]:
    """Every value an expression using all of `numbers` (sorted) reaches with positive integer steps."""
    if len(numbers) == 1:
        return frozenset(numbers)
    out: set[int] = set()
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            rest = numbers[:i] + numbers[i + 1 : j] + numbers[j + 1 :]
            for _, _, _, v in _moves(numbers[i], numbers[j]):
                out |= reachable(tuple(sorted(rest + (v,))))
    return frozenset(out)


def solve(numbers: list[int], target: int) -> tuple[list[str], str] | None:
    """A reference solution (step lines, expression) by depth-first search; None if unsolvable."""

    def dfs(items: list[tuple[int, str]], steps: list[str]):
        if len(items) == 1:
            return (steps, items[0][1]) if items[0][0] == target else None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                rest = [it for k, it in enumerate(items) if k not in (i, j)]
                (a, ea), (b, eb) = items[i], items[j]
                for left, op, right, v in _moves(a, b):
                    el, er = (ea, eb) if left == a else (eb, ea)
                    expr = f"{_wrap(el)}{op}{_wrap(er)}"
                    found = dfs(rest + [(v, expr)], steps + [f"{left}{op}{right}={v}"])
                    if found:
                        return found
        return None

    return dfs([(n, str(n)) for n in numbers], [])


def _wrap(expr: str) -> str:
    return expr if expr.isdigit() else f"({expr})"


# --- the safe expression checker ---


class _Parser:
    """``expr := term (('+'|'-') term)*``, ``term := factor (('*'|'/') factor)*``, ``factor := INT | '(' expr ')'``."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos, self.numbers, self.depth = tokens, 0, [], 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise ValueError("unexpected end of expression")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self) -> Fraction:
        v = self.term()
        while self.peek() in ("+", "-"):
            v = v + self.term() if self.take() == "+" else v - self.term()
        return v

    def term(self) -> Fraction:
        v = self.factor()
        while self.peek() in ("*", "/"):
            op, w = self.take(), self.factor()
            if op == "/" and w == 0:
                raise ValueError("division by zero")
            v = v * w if op == "*" else v / w
        return v

    def factor(self) -> Fraction:
        tok = self.take()
        if tok == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ValueError("parentheses nested too deeply")
            v = self.expr()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            self.depth -= 1
            return v
        if tok.isdigit():
            self.numbers.append(int(tok))
            return Fraction(int(tok))
        raise ValueError(f"unexpected {tok!r}")


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of an arithmetic expression and the numbers it uses, in order.

    ValueError with the reason when the text is not such an expression (unknown
    characters, unbalanced parentheses, unary minus, division by zero, too long).
    """
    if len(text) > MAX_TEXT:
        raise ValueError(f"expression longer than {MAX_TEXT} characters")
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
        tokens.append({"×": "*", "÷": "/"}.get(m.group(1), m.group(1)))
        pos = m.end()
    if not tokens:
        raise ValueError("empty expression")
    p = _Parser(tokens)
    value = p.expr()
    if p.pos != len(tokens):
        raise ValueError(f"unexpected {tokens[p.pos]!r}")
    return value, p.numbers


def check_expression(text: str, numbers: list[int], target: int) -> tuple[bool, str]:
    """(ok, reason): does `text` use each of `numbers` exactly once and equal `target`?"""
    if text is None:
        return False, "no answer"
    m = _TRAILING_TARGET.match(text.strip())
    if m:
        text = m.group(1)
        if int(m.group(2)) != target:
            return False, f"claims {m.group(2)}, target is {target}"
    try:
        value, used = evaluate_expression(text)
    except ValueError as e:
        return False, str(e)
    if Counter(used) != Counter(numbers):
        return False, f"uses {sorted(used)}, must use {sorted(numbers)} exactly once"
    if value != target:
        return False, f"value {value} is not {target}"
    return True, "ok"


def make_problem(numbers: list[int], target: int, split: str, index: int) -> Problem:
    found = solve(numbers, target)
    assert found is not None, f"unsolvable instance {numbers} -> {target}"
    steps, expr = found
    shown = ", ".join(map(str, numbers))
    return Problem(
        id=f"countdown-{split}-{index:06d}",
        prompt=f"Q: Use {shown} to make {target} with + - * / and each number exactly once.",
        answer=expr,
        solution="\n".join(steps + [f"Answer: {expr}"]),
        meta={"numbers": list(numbers), "target": target},
    )


class CountdownTask:
    name = NAME
    step_delimiter = "\n"
    verifier = "expression"

    def problems(self, split: str, n: int, *, seed: int = 0, target: int | None = None) -> list[Problem]:
        """`n` distinct solvable instances of `split`; `target` fixes the target (24: make-24)."""
        check_split(split)
        check_seed(seed)
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
            raise ValueError(f"target must be a positive integer, got {target!r}")
        # One stream per split and target, so asking for more problems only appends.
        rng = random.Random(f"{NAME}/{split}/{target}/{seed}")

        def sample():
            numbers = [rng.randint(1, MAX_NUMBER) for _ in range(N_NUMBERS)]
            values = reachable(tuple(sorted(numbers)))
            if target is None:
                lo, hi = TARGET_RANGE
                options = sorted(v for v in values if lo <= v <= hi)
                if not options:
                    return None
                goal = rng.choice(options)
            elif target in values:
                goal = target
            else:
                return None
            return f"{sorted(numbers)}->{goal}", lambda i: make_problem(numbers, goal, split, i)

        return draw_distinct(n, split, sample, limit=500 * (n + 10), what=f"solvable instances with target={target}")

    def score(self, problem: Problem, completion: str) -> float:
        ok, _ = check_expression(extract_final_answer(completion), problem.meta["numbers"], problem.meta["target"])
        return 1.0 if ok else 0.0

    def check_operation(self, available: list[int], step: str) -> bool:
        """Is `step` (``a op b=c``) a correct operation on two of the `available` numbers?

        `available` is the multiset of numbers not yet combined (the given ones at
        first, then with each step's operands replaced by its result).
        """
        m = re.fullmatch(r"\s*(\d{1,9})\s*([-+*/])\s*(\d{1,9})\s*=\s*(\d{1,12})\s*", step)
        if not m:
            return False
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        pool = Counter(available)
        pool[a] -= 1
        pool[b] -= 1
        if pool[a] < 0 or pool[b] < 0:
            return False
        if op == "/":
            return b != 0 and Fraction(a, b) == c
        return {"+": a + b, "-": a - b, "*": a * b}[op] == c
