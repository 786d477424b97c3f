"""The built-in task suites: YAML specs, generators (linear, countdown, codegen), HumanEval, `treesearch tasks`."""
import random
import re
from fractions import Fraction
from itertools import permutations, product

import pytest

from tasks import TASKS, get_suite, get_task
from tasks.arithmetic import ArithmeticTask
from tasks.base import split_of
from tasks.codegen import (
    FAMILIES,
    CodegenTask,
    all_instances,
    extract_code,
    family_key,
    make_problem,
    make_tests,
    reference_source,
)
from tasks.countdown import CountdownTask, check_expression, evaluate_expression
from tasks.humaneval import HumanEvalTask, program_for
from tasks.linear import FORMS, LinearTask, solution_of
from tasks.suite import SUITES_DIR, SuiteTask, load_suite

BUILTIN = ["arithmetic", "codegen", "countdown", "humaneval", "linear"]


# ---------------------------------------------------------------- suite specs and the registry


def test_every_builtin_suite_loads_and_builds():
    assert sorted(TASKS) == BUILTIN
    for name in BUILTIN:
        spec = get_suite(name)
        assert spec.name == name and spec.file.endswith(f"{name}.yaml")
        task = get_task(name)
        assert isinstance(task, SuiteTask) and task.name == name and task.step_delimiter == "\n"
        split = spec.splits[-1]
        p = task.problems(split, 2, seed=0)[0]
        assert p.prompt and p.id


def test_arithmetic_behaves_exactly_as_before():
    task, raw = get_task("arithmetic"), ArithmeticTask()
    assert task.problems("test", 30, seed=2, n_ops=3) == raw.problems("test", 30, seed=2, n_ops=3)
    assert task.problems("train", 30, seed=0) == raw.problems("train", 30, seed=0)
    p = task.problems("test", 1, seed=0)[0]
    assert task.score(p, p.solution) == 1.0 and task.score(p, "Answer: 100000") == 0.0
    assert task.check_step("Q: 1+2*3=?", "1+6") and not task.check_step("Q: 1+2*3=?", "3*3")


def test_unknown_task_names_the_suites_and_formats():
    with pytest.raises(ValueError) as e:
        get_task("nope")
    msg = str(e.value)
    assert "unknown task 'nope'" in msg
    for name in BUILTIN + ["gsm8k", "math", "mbpp"]:
        assert name in msg
    with pytest.raises(ValueError, match="format 'gsm8k' needs a file: gsm8k:PATH"):
        get_task("gsm8k")


def test_split_not_offered_by_a_suite_is_an_error():
    with pytest.raises(ValueError, match="suite 'humaneval' has no 'train' split"):
        get_task("humaneval").problems("train", 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        get_task("linear").problems("dev", 1)


GOOD = """\
name: mine
description: "my linear suite"
source:
  generator: tasks.linear:LinearTask
prompt_template: "Question: {prompt}\\nSolution:\\n"
step_delimiter: "\\n"
verifier: exact
splits: [test]
"""


def _write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_user_suite_file_loads_and_builds(tmp_path):
    path = _write(tmp_path, GOOD + 'few_shot:\n  - prompt: "Q: Solve for x: 2x=6"\n    solution: "x=3\\nAnswer: 3"\n')
    spec = load_suite(path)
    assert spec.prompt_template == "Question: {prompt}\nSolution:\n" and spec.splits == ("test",)
    task = get_task(str(path))
    plain = LinearTask().problems("test", 3, seed=1)
    shown = task.problems("test", 3, seed=1)
    for a, b in zip(plain, shown):
        assert b.prompt == "Q: Solve for x: 2x=6\nx=3\nAnswer: 3\n\n" + a.prompt
        assert task.score(b, a.solution) == 1.0


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda t: t + "temperature: 0.7\n", "unknown key 'temperature'"),
        (lambda t: t.replace("verifier: exact\n", ""), "missing key 'verifier'"),
        (lambda t: t.replace('description: "my linear suite"\n', ""), "missing key 'description'"),
        (lambda t: t.replace("  generator:", "  generatr:"), "unknown key 'source.generatr'"),
        (lambda t: t.replace("tasks.linear:LinearTask", "tasks.linear:LinearTask\n  dataset: humaneval"), "exactly one of"),
        (lambda t: t.replace("tasks.linear:LinearTask", "tasks.linear.LinearTask"), "key 'source.generator' must be MODULE:CLASS"),
        (lambda t: t.replace("verifier: exact", "verifier: vibes"), "key 'verifier' must be one of"),
        (lambda t: t.replace("splits: [test]", "splits: [validation]"), "key 'splits'"),
        (lambda t: t.replace('"Question: {prompt}\\nSolution:\\n"', '"Q {question}"'), "key 'prompt_template'"),
        (lambda t: t.replace("step_delimiter: \"\\n\"", "step_delimiter: 3"), "key 'step_delimiter' must be a non-empty string"),
        (lambda t: t + "few_shot:\n  - prompt: hi\n", "missing key 'few_shot[0].solution'"),
        (lambda t: "- just\n- a list\n", "the top level must be a mapping"),
        (lambda t: t.replace("source:\n", "source: [\n"), "invalid YAML"),
    ],
)
def test_bad_suite_files_name_the_file_and_the_key(tmp_path, edit, fragment):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(ValueError) as e:
        load_suite(path)
    assert str(path) in str(e.value) and fragment in str(e.value)


def test_generator_must_agree_with_the_spec(tmp_path):
    path = _write(tmp_path, GOOD.replace("verifier: exact", "verifier: code"))
    with pytest.raises(ValueError, match=r"key 'verifier' is 'code' but tasks.linear:LinearTask is checked by 'exact'"):
        get_task(str(path))
    path = _write(tmp_path, GOOD.replace('step_delimiter: "\\n"', 'step_delimiter: "\\n\\n"'), "b.yaml")
    with pytest.raises(ValueError, match="key 'step_delimiter'"):
        get_task(str(path))
    path = _write(tmp_path, GOOD.replace("tasks.linear:LinearTask", "tasks.linear:Nope"), "c.yaml")
    with pytest.raises(ValueError, match=r"c.yaml: cannot import 'tasks.linear:Nope'"):
        get_task(str(path))


def test_builtin_suite_files_are_named_after_their_suite():
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        assert load_suite(path).name == path.stem


def test_treesearch_tasks_lists_every_suite():
    from treesearch.commands.tasks import render_table, suite_rows

    rows = suite_rows()
    assert [r["name"] for r in rows] == BUILTIN
    by_name = {r["name"]: r for r in rows}
    assert by_name["linear"]["source"] == "generator tasks.linear:LinearTask"
    assert by_name["humaneval"]["source"] == "dataset humaneval" and by_name["humaneval"]["verifier"] == "code"
    assert by_name["countdown"]["verifier"] == "expression"
    table = render_table(rows)
    for r in rows:
        line = next(l for l in table.splitlines() if l.startswith(r["name"] + " "))
        for key in ("source", "verifier", "step_delimiter", "description"):
            assert r[key] in line
    assert "\\n" in table and "gsm8k" in table and "FORMAT:PATH" in table


# ---------------------------------------------------------------- linear


def test_linear_is_deterministic_and_extends_the_same_stream():
    t = LinearTask()
    assert t.problems("train", 40, seed=3) == t.problems("train", 40, seed=3)
    assert t.problems("train", 40, seed=3) != t.problems("train", 40, seed=4)
    assert t.problems("test", 30, seed=1)[:10] == t.problems("test", 10, seed=1)


def test_linear_splits_are_disjoint():
    t = LinearTask()
    train = {p.meta["equation"] for p in t.problems("train", 3000, seed=0)}
    test = {p.meta["equation"] for s in range(3) for p in t.problems("test", 400, seed=s)}
    assert len(test) > 800 and not train & test


def test_linear_solutions_verify_step_by_step():
    t = LinearTask()
    problems = t.problems("test", 400, seed=2)
    assert {p.meta["form"] for p in problems} == set(FORMS)
    for p in problems:
        x = int(p.answer)
        assert -20 <= x <= 20 and solution_of(p.meta["equation"]) == x
        assert t.score(p, p.solution) == 1.0
        lines = [p.prompt] + p.solution.split("\n")
        assert lines[-1] == f"Answer: {x}"
        for prev, step in zip(lines, lines[1:]):
            assert t.check_step(prev, step), (prev, step)


def test_linear_rejects_corrupted_solutions_and_steps():
    t, rng = LinearTask(), random.Random(0)
    for p in t.problems("test", 200, seed=5):
        wrong = int(p.answer) + rng.choice([-3, -1, 1, 2])
        assert t.score(p, p.solution.rsplit("Answer: ", 1)[0] + f"Answer: {wrong}") == 0.0
        assert t.score(p, p.solution.rsplit("\n", 1)[0]) == 0.0
        first = p.solution.split("\n")[0]
        bad = re.sub(r"-?\d+$", lambda m: str(int(m.group()) + 1), first)  # shift the right-hand constant
        assert not t.check_step(p.prompt, bad), (p.prompt, bad)
        assert not t.check_step(p.prompt, f"Answer: {wrong}")


@pytest.mark.parametrize(
    "equation, solution",
    [
        ("Q: Solve for x: 3x+5=20", 5),
        ("2(x-3)=x+1", 7),
        ("x/4-2=1", 12),
        ("-x=4", -4),
        ("3*x-2*(x+1)=0", 2),
        ("x*x=4", None),  # not linear
        ("2x+1=2x+3", None),  # no solution
        ("x+1", None),
        ("x=1=1", None),
        ("x/0=1", None),
        ("__import__('os')=1", None),
        ("3x+-5=1", None),
    ],
)
def test_linear_parser(equation, solution):
    got = solution_of(equation)
    assert got == (None if solution is None else Fraction(solution))


def test_linear_step_checker_accepts_other_valid_rewrites():
    t = LinearTask()
    assert t.check_step("Q: Solve for x: 3x+5=20", "3x=15")
    assert t.check_step("Q: Solve for x: 3x+5=20", "15=3x")
    assert t.check_step("3x=15", "x=5") and t.check_step("x=5", "Answer: 5")
    assert not t.check_step("3x=15", "x=6") and not t.check_step("x=5", "Answer: 6")
    assert not t.check_step("3x=15", "Answer: five")


# ---------------------------------------------------------------- countdown


def _reachable_by_any_expression(numbers, target):
    """Independent brute force: all orders, operators and bracketings, exact fractions, no restrictions."""
    def values(nums):
        if len(nums) == 1:
            yield Fraction(nums[0])
            return
        for i in range(1, len(nums)):
            for a, b in product(list(values(nums[:i])), list(values(nums[i:]))):
                yield a + b
                yield a - b
                yield a * b
                if b:
                    yield a / b

    return any(v == target for perm in set(permutations(numbers)) for v in values(perm))


def test_countdown_is_deterministic_with_disjoint_splits():
    t = CountdownTask()
    assert t.problems("train", 50, seed=1) == t.problems("train", 50, seed=1)
    assert t.problems("test", 30, seed=0)[:10] == t.problems("test", 10, seed=0)
    key = lambda p: (tuple(sorted(p.meta["numbers"])), p.meta["target"])  # noqa: E731
    train = {key(p) for p in t.problems("train", 2000, seed=0)}
    test = {key(p) for s in range(2) for p in t.problems("test", 300, seed=s)}
    assert len(test) > 400 and not train & test


def test_countdown_instances_are_solvable_and_references_verify():
    t = CountdownTask()
    problems = t.problems("test", 40, seed=3)
    for p in problems:
        numbers, target = p.meta["numbers"], p.meta["target"]
        assert len(numbers) == 4 and all(1 <= n <= 13 for n in numbers) and 10 <= target <= 100
        assert _reachable_by_any_expression(numbers, target)
        assert t.score(p, p.solution) == 1.0
        assert check_expression(p.answer, numbers, target) == (True, "ok")
        available = list(numbers)  # every step is one correct operation on numbers still available
        for step in p.solution.split("\n")[:-1]:
            assert t.check_operation(available, step), (available, step)
            a, op, b, c = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", step).groups()
            available.remove(int(a))
            available.remove(int(b))
            available.append(int(c))
        assert available == [target]


def test_make24_mode():
    t = CountdownTask()
    for p in t.problems("train", 30, seed=0, target=24):
        assert p.meta["target"] == 24 and t.score(p, p.solution) == 1.0
    assert "make 24" in p.prompt


def test_countdown_rejects_corrupted_answers():
    t = CountdownTask()
    for p in t.problems("test", 100, seed=4):
        numbers, target = p.meta["numbers"], p.meta["target"]
        assert t.score(p, p.solution.rsplit("\n", 1)[0]) == 0.0  # no answer line
        assert t.score(p, f"Answer: {target}") == 0.0  # the target alone uses no numbers
        a, b, c, d = numbers
        assert t.score(p, f"Answer: {a}+{b}+{c}+{d}+{a}") == 0.0  # a number used twice
        if a + b + c + d != target:
            assert t.score(p, f"Answer: {a}+{b}+{c}+{d}") == 0.0


NUMS, TARGET = [8, 4, 6, 2], 24


@pytest.mark.parametrize(
    "expr, ok, reason",
    [
        ("(8/4)*(6*2)", True, "ok"),
        ("6*2*(8/4)", True, "ok"),
        ("8/4*6*2 = 24", True, "ok"),
        ("(8÷4)×(6×2)", True, "ok"),
        ("(8/4)*(6*2) = 25", False, "claims 25"),
        ("8*4-6-2", True, "ok"),
        ("8*4-(6+2)", True, "ok"),
        ("8*4+6-2", False, "value 36 is not 24"),
        ("8*6/2", False, "must use [2, 4, 6, 8]"),  # a number missing
        ("8*6/2/4*4", False, "must use [2, 4, 6, 8]"),  # 4 reused
        ("9*2+6", False, "must use"),  # a number not given
        ("8*6/(4-4)+2", False, "division by zero"),
        ("8*6/(2-2)*4", False, "division by zero"),
        ("__import__('os')", False, "unexpected character '_'"),
        ("-8+4*6+2*4", False, "unexpected '-'"),
        ("8**4", False, "unexpected '*'"),
        ("8.0*3", False, "unexpected character '.'"),
        ("(8/4)*(6*2", False, "unexpected end"),
        ("", False, "empty expression"),
        ("(" * 60 + "8*4-6-2" + ")" * 60, False, "nested too deeply"),
        ("1+" * 150 + "1", False, "longer than 200"),
    ],
)
def test_safe_expression_checker(expr, ok, reason):
    got_ok, got_reason = check_expression(expr, NUMS, TARGET)
    assert got_ok == ok and reason in got_reason, (expr, got_ok, got_reason)


def test_expression_values_are_exact_fractions():
    assert evaluate_expression("8/(3-8/3)") == (Fraction(24), [8, 3, 8, 3])
    assert evaluate_expression("1/3+1/3+1/3")[0] == 1
    assert check_expression("8/(3-8/3)", [3, 3, 8, 8], 24) == (True, "ok")


# ---------------------------------------------------------------- codegen


def test_codegen_is_deterministic_with_disjoint_splits():
    t = CodegenTask()
    assert t.problems("train", 60, seed=2) == t.problems("train", 60, seed=2)
    assert t.problems("train", 60, seed=2) != t.problems("train", 60, seed=3)
    assert t.problems("test", 20, seed=0)[:5] == t.problems("test", 5, seed=0)
    n_train = sum(split_of(family_key(f, p)) == "train" for f, p in all_instances())
    train = {(p.meta["family"], tuple(sorted(p.meta["params"].items()))) for p in t.problems("train", n_train)}
    test = {(p.meta["family"], tuple(sorted(p.meta["params"].items()))) for p in t.problems("test", len(all_instances()) - n_train)}
    assert len(train) + len(test) == len(all_instances()) and not train & test
    with pytest.raises(ValueError, match="asked for 100000"):
        t.problems("test", 100000)


def test_codegen_tests_tell_a_constant_function_apart():
    for fam, params in all_instances():
        tests = make_tests(fam, params, "f")
        assert len(tests) >= 6
        outputs = {t.split(" == ", 1)[1] for t in tests}
        assert len(outputs) >= 2, family_key(fam, params)


def test_codegen_references_pass_the_sandbox_and_wrong_code_fails():
    t = CodegenTask()
    for fam, params in all_instances():  # every parameter value: the twin and the template agree
        p = make_problem(fam, params, fam.names[0], "test", 0)
        assert t.score(p, p.solution) == 1.0, family_key(fam, params)
    by_family = {fam.key: make_problem(fam, fam.params[-1], fam.names[-1], "test", 0) for fam in FAMILIES}
    assert len(by_family) == 20
    for fam, p in by_family.items():
        assert t.score(p, f"Here you go:\n```python\n{p.solution}\n```\n") == 1.0, fam
        assert t.score(p, f"def {p.meta['entry_point']}(*args):\n    return None\n") == 0.0, fam
    p = by_family["sum_divisible"]
    entry = p.meta["entry_point"]
    assert t.score(p, f"```python\ndef {entry}(nums):\n    return sum(nums)\n```") == 0.0
    assert t.score(p, f"def {entry}(nums):\n    return 0\n") == 0.0
    assert t.score(p, "I cannot write this function.") == 0.0


def test_extract_code():
    assert extract_code("def f():\n    return 1\n") == "def f():\n    return 1\n"
    assert extract_code("text\n```python\nx = 1\n```\nmore") == "x = 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\nx = 1\n") == "x = 1\n"  # unclosed final fence
    two = "```python\nimport os\n```\nand\n```python\ndef g(a):\n    return a\n```"
    assert extract_code(two, "g") == "def g(a):\n    return a\n"
    assert extract_code(two) == "import os\n"
    src = reference_source(FAMILIES[0], {"k": 3}, "h")
    assert src == "def h(nums):\n    return sum(x for x in nums if x % 3 == 0)\n"


# ---------------------------------------------------------------- humaneval


@pytest.fixture(scope="module")
def humaneval():
    return HumanEvalTask()


def test_humaneval_has_all_164_problems(humaneval):
    problems = humaneval.problems("test", 164)
    assert [p.id for p in problems[:2]] == ["HumanEval/0", "HumanEval/1"]
    assert len({p.id for p in problems}) == 164
    p = problems[0]
    assert p.meta["entry_point"] == "has_close_elements" and "def check(candidate)" in p.meta["test"]
    assert p.meta["code_prompt"] in p.prompt
    with pytest.raises(ValueError, match="has 164 problems; asked for 165"):
        humaneval.problems("test", 165)
    shuffled = humaneval.problems("test", 164, seed=1)
    assert shuffled != problems and sorted(p.id for p in shuffled) == sorted(p.id for p in problems)


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(humaneval):
    problems = {p.id: p for p in humaneval.problems("test", 164)}
    for pid, p in problems.items():
        assert humaneval.score(p, p.answer) == 1.0, pid  # a body continuation
        assert humaneval.score(p, "    pass\n") == 0.0, pid
    for pid in ("HumanEval/0", "HumanEval/38", "HumanEval/53"):  # 38's tests call the prompt's encode_cyclic
        p = problems[pid]
        full = p.meta["code_prompt"] + p.answer  # the whole function, fenced, as a chat model writes it
        assert humaneval.score(p, f"Sure:\n```python\n{full}```") == 1.0, pid
    p = problems["HumanEval/0"]
    assert humaneval.score(p, "    return False\n") == 0.0
    assert humaneval.score(p, "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```") == 0.0


def test_humaneval_program_assembly():
    prompt = "def f(x):\n    \"\"\"Double.\"\"\"\n"
    assert program_for(prompt, "    return 2 * x\n", "f") == prompt + "    return 2 * x\n"
    assert program_for(prompt, "```python\ndef f(x):\n    return x + x\n```", "f") == prompt + "\ndef f(x):\n    return x + x\n"


def test_every_suite_scores_its_own_reference_solution():
    for name in BUILTIN:
        task = get_task(name)
        split = task.splits[-1]
        for p in task.problems(split, 2, seed=0):
            assert task.score(p, p.solution) == 1.0, name


# ---------------------------------------------------------------- end to end with the embedded policy


@pytest.mark.parametrize("name", ["linear", "countdown", "codegen"])
def test_generated_suites_run_through_evaluate_with_the_embedded_policy(hf_backend, name):
    """The real tiny model's (mostly wrong) completions are judged without errors, one record per problem."""
    from treesearch.evaluate import EvalConfig, evaluate

    task = get_task(name)
    problems = task.problems("test", 3, seed=0)
    records, summary = evaluate(hf_backend, task, problems, EvalConfig(strategy="greedy", max_tokens=40), progress=False)
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert all(isinstance(c, bool) for r in records for c in r["correct"])
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["tokens_per_problem"] > 0
    for p, r in zip(problems, records):  # the verdict is the task's own score of that completion
        assert r["correct"][0] == (task.score(p, r["completion"]) == 1.0)


@pytest.mark.parametrize("module, cls", [("linear", LinearTask), ("countdown", CountdownTask), ("codegen", CodegenTask)])
def test_adapter_docstrings_show_a_real_problem(module, cls):
    """Each adapter's docstring example is the generator's own first test problem, verbatim."""
    import importlib

    doc = importlib.import_module(f"tasks.{module}").__doc__
    p = cls().problems("test", 1, seed=0)[0]
    first_prompt_line = p.prompt.split("\n")[0]
    shown = re.search(r"prompt:   (.*)", doc).group(1)
    assert first_prompt_line.startswith(shown)
    for line in p.solution.split("\n")[:3]:
        assert line in doc, (module, line)


def test_extract_answer_follows_the_verifier(tmp_path):
    assert get_task("linear").extract_answer("x=5\nAnswer: 5") == "5"
    assert get_task("countdown").extract_answer("8/4=2\nAnswer: (8/4)*12") == "(8/4)*12"
    assert get_task("codegen").extract_answer("def f():\n    return 1") is None
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "q", "answer": "#### 3"}\n')
    assert get_task(f"gsm8k:{path}").extract_answer("so the answer is $\\boxed{3}$") == "3"
