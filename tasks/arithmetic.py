"""Procedurally generated multi-step integer arithmetic, solved one reduction per line.

One real problem (``problems("test", 1, seed=0, n_ops=3)``)::

    prompt:   Q: 23+27*2-17=?
    solution: 23+54-17
              77-17
              60
              Answer: 60

Each step line rewrites the expression with exactly one operation carried out
(multiplication first, then left to right), so every line is checkable on its
own (`check_step`) and the step delimiter is a newline. The final line is
``Answer: N``. Problems with 2 to 5 operations over +, -, * and operands in
1..30 are drawn from a seeded generator; an expression belongs to the train or
test split by a hash of its text, so the splits are disjoint by construction.
Intermediate values stay within [-999, 999].
"""
from __future__ import annotations

import random
import re

from tasks.base import Problem, check_seed, check_split, draw_distinct
from verifiers.exact import extract_final_answer

NAME = "arithmetic"
OPS = "+-*"
MAX_OPERAND = 30
MAX_ABS = 999
MIN_OPS, MAX_OPS = 2, 5

_TOKEN = re.compile(r"\s*(\d+|[-+*])")


def render(nums: list[int], ops: list[str]) -> str:
    out = [str(nums[0])]
    for op, n in zip(ops, nums[1:]):
        out.append(f"{op}{n}")
    return "".join(out)


def reduce_once(nums: list[int], ops: list[str]) -> tuple[list[int], list[str]]:
    """Carry out the next operation: the leftmost '*', else the leftmost op."""
    i = ops.index("*") if "*" in ops else 0
    a, b, op = nums[i], nums[i + 1], ops[i]
    v = a * b if op == "*" else a + b if op == "+" else a - b
    return nums[:i] + [v] + nums[i + 2 :], ops[:i] + ops[i + 1 :]


def solve(nums: list[int], ops: list[str]) -> list[str]:
    """The reference steps: one line per operation, then the answer line."""
    steps = []
    while ops:
        nums, ops = reduce_once(nums, ops)
        steps.append(render(nums, ops))
    steps.append(f"Answer: {nums[0]}")
    return steps


def parse(expr: str) -> tuple[list[int], list[str]] | None:
    """Parse ``-3+4*5`` into numbers and operators without eval; None if malformed."""
    expr = expr.strip()
    if not expr or len(expr) > 200:
        return None
    sign = 1
    if expr.startswith("-"):
        sign, expr = -1, expr[1:]
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    if len(tokens) % 2 == 0 or not all(t.isdigit() for t in tokens[::2]):
        return None
    if not all(t in OPS for t in tokens[1::2]):
        return None
    nums = [int(t) for t in tokens[::2]]
    nums[0] *= sign
    return nums, tokens[1::2]


def _draw(rng: random.Random, n_ops: int) -> tuple[list[int], list[str]]:
    while True:
        nums = [rng.randint(1, MAX_OPERAND) for _ in range(n_ops + 1)]
        ops = [rng.choice(OPS) for _ in range(n_ops)]
        cur_n, cur_o, ok = nums, ops, True
        while cur_o:
            cur_n, cur_o = reduce_once(cur_n, cur_o)
            ok = ok and all(abs(v) <= MAX_ABS for v in cur_n)
        if ok:
            return nums, ops


def make_problem(nums: list[int], ops: list[str], split: str, index: int) -> Problem:
    expr = render(nums, ops)
    steps = solve(nums, ops)
    return Problem(
        id=f"arith-{split}-{len(ops)}-{index:06d}",
        prompt=f"Q: {expr}=?",
        answer=steps[-1].removeprefix("Answer: "),
        solution="\n".join(steps),
        meta={"n_ops": len(ops), "expr": expr},
    )


class ArithmeticTask:
    name = NAME
    step_delimiter = "\n"

    def problems(self, split: str, n: int, *, seed: int = 0, n_ops: int | None = None) -> list[Problem]:
        """`n` distinct problems of `split`; `n_ops` fixes the operation count (else 2..5)."""
        check_split(split)
        check_seed(seed)
        if n_ops is not None and not MIN_OPS <= n_ops <= MAX_OPS:
            raise ValueError(f"n_ops must be in {MIN_OPS}..{MAX_OPS}, got {n_ops}")
        # Separate streams per split and op count, so asking for more problems only appends.
        rng = random.Random(f"{NAME}/{split}/{n_ops}/{seed}")

        def sample():
            nums, ops = _draw(rng, n_ops if n_ops is not None else rng.randint(MIN_OPS, MAX_OPS))
            return render(nums, ops), lambda i: make_problem(nums, ops, split, i)

        return draw_distinct(n, split, sample, limit=200 * (n + 10), what=f"problems with n_ops={n_ops}")

    def score(self, problem: Problem, completion: str) -> float:
        pred = extract_final_answer(completion)
        return 1.0 if pred is not None and pred == problem.answer else 0.0

    def check_step(self, previous: str, step: str) -> bool:
        """Is `step` exactly one correct reduction of `previous` (an expression or the question)?

        `previous` may be the prompt (``Q: 1+2*3=?``) or an earlier step line. The final
        ``Answer: N`` line is correct when N is the fully reduced value of `previous`.
        """
        prev = previous.strip().removeprefix("Q:").strip().removesuffix("=?")
        parsed = parse(prev)
        if parsed is None:
            return False
        nums, ops = parsed
        step = step.strip()
        if step.startswith("Answer:"):
            if ops:
                return False
            return step.removeprefix("Answer:").strip() == str(nums[0])
        if not ops:
            return False
        want = render(*reduce_once(nums, ops))
        return step == want
