"""Procedurally generated linear equations in x with integer solutions, one rewrite per line.

One real problem (``problems("test", 1, seed=0)``)::

    prompt:   Q: Solve for x: 2(x-12)=-24
    solution: x-12=-12
              x=0
              Answer: 0

Four forms are drawn from a seeded generator: ``ax+b=c``, ``a(x+b)=c``,
``x/a+b=c`` and ``ax+b=cx+d``. Each step line is an equation equivalent to the
one before with one rewrite carried out (move a constant, divide by the
coefficient, collect the x terms), so every line is checkable on its own
(`check_step`); the final line is ``Answer: N``. Solutions are integers in
-20..20 and every intermediate constant is an integer. An equation belongs to
the train or test split by a hash of its text, so the splits are disjoint.
"""
from __future__ import annotations

import random
import re
from fractions import Fraction

from tasks.base import Problem, check_seed, check_split, draw_distinct
from verifiers.exact import extract_final_answer

NAME = "linear"
FORMS = ("ax+b=c", "a(x+b)=c", "x/a+b=c", "ax+b=cx+d")
MAX_SOLUTION = 20
MAX_TEXT = 200

_TOKEN = re.compile(r"\s*(\d+|[-+*/()x])")
_PREFIX = re.compile(r"^\s*(Q:)?\s*(Solve for x:)?\s*")


def _x(a: int) -> str:
    """The x term with coefficient `a` (never 0): ``x``, ``-x``, ``3x``."""
    return "x" if a == 1 else "-x" if a == -1 else f"{a}x"


def _signed(b: int) -> str:
    """A constant appended to a term: ``+5``, ``-5`` (never 0)."""
    return f"+{b}" if b > 0 else f"-{-b}"


def draw(rng: random.Random, form: str) -> tuple[str, list[str], int]:
    """One equation of `form`: (equation text, reference step lines without the answer, solution)."""
    nz = [v for v in range(-12, 13) if v != 0]
    if form == "ax+b=c":
        a = rng.choice([v for v in range(-9, 10) if abs(v) >= 2])
        x, b = rng.randint(-MAX_SOLUTION, MAX_SOLUTION), rng.choice(nz + [v * 3 for v in nz])
        c = a * x + b
        return f"{_x(a)}{_signed(b)}={c}", [f"{_x(a)}={c - b}", f"x={x}"], x
    if form == "a(x+b)=c":
        a, x, b = rng.randint(2, 9), rng.randint(-MAX_SOLUTION, MAX_SOLUTION), rng.choice(nz)
        c = a * (x + b)
        return f"{a}(x{_signed(b)})={c}", [f"x{_signed(b)}={c // a}", f"x={x}"], x
    if form == "x/a+b=c":
        a = rng.randint(2, 9)
        x = a * rng.randint(-(MAX_SOLUTION // a), MAX_SOLUTION // a)
        b = rng.choice(nz)
        c = x // a + b
        return f"x/{a}{_signed(b)}={c}", [f"x/{a}={c - b}", f"x={x}"], x
    if form == "ax+b=cx+d":
        while True:  # redraw until the right side has the shape cx+d with d != 0
            a, c = rng.sample(range(1, 10), 2)
            x, b = rng.randint(-MAX_SOLUTION, MAX_SOLUTION), rng.choice(nz)
            d = (a - c) * x + b
            if d:
                break
        steps = [f"{_x(a - c)}{_signed(b)}={d}", f"{_x(a - c)}={d - b}"]
        if a - c != 1:
            steps.append(f"x={x}")
        return f"{_x(a)}{_signed(b)}={_x(c)}{_signed(d)}", steps, x
    raise ValueError(f"unknown form {form!r}; expected one of {', '.join(FORMS)}")


# --- a small parser for linear expressions (no eval): value = coef*x + const ---


class _Parser:
    """Recursive descent over ``expr := ['-'] term (('+'|'-') term)*``, ``term := factor ((['*'] | '/') factor)*``,
    ``factor := INT | 'x' | '(' expr ')'``; juxtaposition (``3x``, ``2(x+1)``) is multiplication."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self) -> tuple[Fraction, Fraction]:
        sign = 1
        if self.peek() == "-":
            self.take()
            sign = -1
        k, m = self.term()
        k, m = sign * k, sign * m
        while self.peek() in ("+", "-"):
            s = 1 if self.take() == "+" else -1
            k2, m2 = self.term()
            k, m = k + s * k2, m + s * m2
        return k, m

    def term(self) -> tuple[Fraction, Fraction]:
        k, m = self.factor()
        while self.peek() in ("*", "/", "x", "("):
            op = self.take() if self.peek() in ("*", "/") else "*"
            k2, m2 = self.factor()
            if op == "/":
                if k2 or not m2:
                    raise ValueError("division by an x term or by zero")
                k, m = k / m2, m / m2
            else:
                if k and k2:
                    raise ValueError("not linear")
                k, m = k * m2 + k2 * m, m * m2
        return k, m

    def factor(self) -> tuple[Fraction, Fraction]:
        tok = self.take()
        if tok == "x":
            return Fraction(1), Fraction(0)
        if tok == "(":
            v = self.expr()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            return v
        if tok.isdigit():
            return Fraction(0), Fraction(int(tok))
        raise ValueError(f"unexpected {tok!r}")


def parse_side(text: str) -> tuple[Fraction, Fraction] | None:
    """``3(x-2)+1`` -> (3, -5), the coefficient of x and the constant; None if malformed or not linear."""
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        return None
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    p = _Parser(tokens)
    try:
        value = p.expr()
    except (ValueError, IndexError, ZeroDivisionError):
        return None
    return value if p.pos == len(tokens) else None


def solution_of(equation: str) -> Fraction | None:
    """The unique solution of a linear equation in x; None if malformed, not linear, or not unique."""
    equation = _PREFIX.sub("", equation, count=1)
    if equation.count("=") != 1:
        return None
    left, right = (parse_side(s) for s in equation.split("="))
    if left is None or right is None or left[0] == right[0]:
        return None
    return (right[1] - left[1]) / (left[0] - right[0])


def make_problem(equation: str, steps: list[str], x: int, form: str, split: str, index: int) -> Problem:
    lines = steps + [f"Answer: {x}"]
    return Problem(
        id=f"linear-{split}-{index:06d}",
        prompt=f"Q: Solve for x: {equation}",
        answer=str(x),
        solution="\n".join(lines),
        meta={"form": form, "equation": equation},
    )


class LinearTask:
    name = NAME
    step_delimiter = "\n"
    verifier = "exact"

    def problems(self, split: str, n: int, *, seed: int = 0, form: str | None = None) -> list[Problem]:
        """`n` distinct problems of `split`; `form` fixes the equation shape (one of `FORMS`)."""
        check_split(split)
        check_seed(seed)
        if form is not None and form not in FORMS:
            raise ValueError(f"unknown form {form!r}; expected one of {', '.join(FORMS)}")
        # One stream per split and form, so asking for more problems only appends.
        rng = random.Random(f"{NAME}/{split}/{form}/{seed}")

        def sample():
            f = form or rng.choice(FORMS)
            equation, steps, x = draw(rng, f)
            return equation, lambda i: make_problem(equation, steps, x, f, split, i)

        return draw_distinct(n, split, sample, limit=200 * (n + 10), what=f"problems with form={form}")

    def score(self, problem: Problem, completion: str) -> float:
        pred = extract_final_answer(completion)
        return 1.0 if pred is not None and pred == problem.answer else 0.0

    def check_step(self, previous: str, step: str) -> bool:
        """Is `step` a correct rewrite of `previous` (the question or an earlier step line)?

        A step line is correct when it is a linear equation in x with the same unique
        solution as `previous` (so any valid rewrite counts, not only the reference
        one). The final ``Answer: N`` line is correct when N is that solution.
        """
        want = solution_of(previous)
        if want is None:
            return False
        step = step.strip()
        if step.startswith("Answer:"):
            got = step.removeprefix("Answer:").strip()
            return re.fullmatch(r"[+-]?\d{1,20}", got) is not None and Fraction(int(got)) == want
        return solution_of(step) == want
