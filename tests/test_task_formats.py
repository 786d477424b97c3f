"""User files in the published GSM8K / MATH / MBPP JSONL formats: loading, ids, order, scoring, exact errors."""
import gzip
import json

import pytest

from tasks import get_task
from tasks.formats import FormatTask, hash_split, load
from verifiers.answers import last_boxed

GSM8K = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "A company made 1,250 widgets a day for 4 days. How many widgets is that?",
        "answer": "1,250 * 4 = <<1250*4=5000>>5,000\n#### 5,000",
    },
]

MATH = [
    {
        "problem": "If $x^2+y^2=1$, what is the largest possible value of $|x|+|y|$?",
        "solution": "By symmetry take $x, y \\ge 0$; then $(x+y)^2 \\le 2(x^2+y^2) = 2$, so the largest value is $\\boxed{\\sqrt{2}}$.",
        "level": "Level 3",
        "type": "Intermediate Algebra",
    },
    {
        "problem": "Compute $\\frac{3}{6}$.",
        "solution": "First $\\boxed{6}$ is the denominator; the value is $\\boxed{\\frac{1}{2}}$.",
        "level": "Level 1",
        "type": "Prealgebra",
    },
    {
        "problem": "Which integers $n$ satisfy $n^2=1$?",
        "solution": "Both signs work: $\\boxed{\\{-1, 1\\}}$.",
        "level": "Level 1",
        "type": "Algebra",
    },
]

MBPP = [
    {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given character from the string.",
        "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n"
        "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) - 1,-1,-1):  \r\n"
        "        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
        "test_list": [
            'assert remove_Occ("hello","l") == "heo"',
            'assert remove_Occ("abcda","a") == "bcd"',
            'assert remove_Occ("PHP","P") == "H"',
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to find the hypotenuse of a right angled triangle.",
        "code": "def hypot(a, b):\n    return math.sqrt(a * a + b * b)",
        "test_list": ["assert hypot(3, 4) == 5.0", "assert hypot(5, 12) == 13.0"],
        "test_setup_code": "import math",
        "challenge_test_list": [],
    },
]


def _jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- gsm8k


def test_gsm8k_loads_gold_answers_and_step_solutions(tmp_path):
    path = _jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    task = get_task(f"gsm8k:test={path}")
    assert task.name == f"gsm8k:test={path}" and task.verifier == "math" and task.step_delimiter == "\n"
    problems = task.problems("test", 3)
    assert [p.id for p in problems] == ["gsm8k-test-1", "gsm8k-test-2", "gsm8k-test-3"]
    assert [p.answer for p in problems] == ["72", "10", "5000"]
    assert problems[0].prompt == GSM8K[0]["question"]
    assert problems[0].solution == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\nAnswer: 72"
    )
    for p in problems:
        assert task.score(p, p.solution) == 1.0
    assert task.score(problems[0], "She sold 24 in May, so 72 in all.\nAnswer: 72") == 1.0
    assert task.score(problems[0], "The answer is \\boxed{72}.") == 1.0
    assert task.score(problems[0], "Answer: 71") == 0.0
    assert task.score(problems[2], "Answer: 5,000") == 1.0
    assert task.score(problems[1], "I do not know.") == 0.0


def test_one_file_is_hash_split_into_disjoint_train_and_test(tmp_path):
    records = [{"question": f"What is {i} + 1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"} for i in range(200)]
    path = _jsonl(tmp_path / "g.jsonl", records)
    task = get_task(f"gsm8k:{path}")
    assert task.splits == ("train", "test")
    n_test = len(task.adapter._split["test"])
    train, test = task.problems("train", 200 - n_test), task.problems("test", n_test)
    assert 20 <= n_test <= 60  # TEST_FRACTION = 0.2 of 200
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert sorted(p.id for p in train + test) == sorted(f"gsm8k-{i}" for i in range(1, 201))
    assert [int(p.id.split("-")[1]) for p in test] == sorted(int(p.id.split("-")[1]) for p in test)  # file order
    # the split follows the question, not the line: the same record lands in the same split in any file
    again = get_task(f"gsm8k:{_jsonl(tmp_path / 'r.jsonl', records[::-1])}")
    assert {p.prompt for p in again.problems("test", n_test)} == {p.prompt for p in test}
    other = FormatTask("gsm8k", path, split_seed=1)
    assert {p.prompt for p in other.problems("test", len(other._split["test"]))} != {p.prompt for p in test}
    shuffled = task.problems("test", n_test, seed=1)
    assert shuffled == task.problems("test", n_test, seed=1) and shuffled != test
    assert sorted(p.id for p in shuffled) == sorted(p.id for p in test)
    with pytest.raises(ValueError, match=rf"g.jsonl \(test part of a hash split, seed 0\) has {n_test} problems; asked for {n_test + 1}"):
        task.problems("test", n_test + 1)
    assert all(hash_split(p, seed=0, test_fraction=0.2) == "test" for p in test)


def test_separate_train_and_test_files(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", GSM8K[:2])
    test = _jsonl(tmp_path / "test.jsonl", GSM8K[2:])
    task = get_task(f"gsm8k:train={train},test={test}")
    assert task.splits == ("train", "test")
    assert [p.answer for p in task.problems("train", 2)] == ["72", "10"]
    assert [p.answer for p in task.problems("test", 1)] == ["5000"]
    assert [p.id for p in task.problems("train", 2)] == ["gsm8k-train-1", "gsm8k-train-2"]  # no clash with test-1
    assert [p.id for p in task.problems("test", 1)] == ["gsm8k-test-1"]
    same_id = _jsonl(tmp_path / "same_id.jsonl", [dict(GSM8K[2], id="a")])
    with pytest.raises(ValueError, match="id 'a' is also in the train file"):
        get_task(f"gsm8k:train={_jsonl(tmp_path / 'tr.jsonl', [dict(GSM8K[0], id='a')])},test={same_id}")
    only_test = get_task(f"gsm8k:test={test}")
    assert only_test.splits == ("test",)
    with pytest.raises(ValueError, match="has no 'train' split"):
        only_test.problems("train", 1)
    overlap = _jsonl(tmp_path / "overlap.jsonl", GSM8K[1:])
    with pytest.raises(ValueError) as e:
        get_task(f"gsm8k:train={train},test={overlap}")
    assert str(e.value) == (f"{overlap}:1: field 'question' is also in the train file ({train}:2); "
                            "train and test must not overlap")
    for bad in (f"gsm8k:train={train},dev={test}", f"gsm8k:train={train},train={test}", "gsm8k:test="):
        with pytest.raises(ValueError, match="bad file list"):
            get_task(bad)


def test_suite_yaml_with_train_and_test_files(tmp_path):
    _jsonl(tmp_path / "train.jsonl", GSM8K[:2])
    _jsonl(tmp_path / "test.jsonl", GSM8K[2:])
    suite = tmp_path / "s.yaml"
    body = ('name: s\ndescription: "d"\nsource:\n  format: gsm8k\n  train: train.jsonl\n  test: test.jsonl\n'
            'prompt_template: chat\nstep_delimiter: "\\n"\nverifier: math\nsplits: [train, test]\n')
    suite.write_text(body)
    task = get_task(str(suite))
    assert [p.answer for p in task.problems("test", 1)] == ["5000"]
    suite.write_text(body.replace("  train: train.jsonl\n", ""))
    with pytest.raises(ValueError, match="key 'splits' names train, but source has no file for it"):
        get_task(str(suite))
    suite.write_text(body.replace("  train: train.jsonl\n", "  path: train.jsonl\n"))
    with pytest.raises(ValueError, match="'source.path' .* excludes"):
        get_task(str(suite))


def test_ids_come_from_the_file_when_present(tmp_path):
    records = [dict(GSM8K[0], id="gsm-a"), dict(GSM8K[1], task_id=7), GSM8K[2]]
    problems = load("gsm8k", _jsonl(tmp_path / "g.jsonl", records))
    assert [p.id for p in problems] == ["gsm-a", "7", "gsm8k-3"]
    assert [p.meta["line"] for p in problems] == [1, 2, 3]


def test_gz_files_are_read_transparently(tmp_path):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in GSM8K))
    assert [p.answer for p in get_task(f"gsm8k:test={path}").problems("test", 3)] == ["72", "10", "5000"]


# ---------------------------------------------------------------- errors name FILE:LINE and the field


def test_missing_field_names_file_line_and_field(tmp_path):
    good = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(36)]
    path = _jsonl(tmp_path / "test.jsonl", good + [{"question": "q"}])
    with pytest.raises(ValueError) as e:
        get_task(f"gsm8k:{path}")
    assert str(e.value) == f"{path}:37: missing field 'answer'"


@pytest.mark.parametrize(
    "fmt, lines, message",
    [
        ("gsm8k", [json.dumps(GSM8K[0]), '{"question": "q", "answer": '], "{path}:2: bad JSON"),
        ("gsm8k", [json.dumps(GSM8K[0]), "", json.dumps({"question": "q"})], "{path}:3: missing field 'answer'"),
        ("gsm8k", [json.dumps({"question": "q", "answer": 72})], "{path}:1: field 'answer' must be str, got int"),
        ("gsm8k", [json.dumps({"question": "q", "answer": "it is 72"})], "{path}:1: field 'answer' has no final '#### ANSWER' line"),
        ("gsm8k", [json.dumps({"question": " ", "answer": "#### 1"})], "{path}:1: field 'question' is empty"),
        ("gsm8k", [json.dumps([1, 2])], "{path}:1: expected a JSON object, got list"),
        ("gsm8k", [json.dumps(dict(GSM8K[0], id="a")), json.dumps(dict(GSM8K[1], id="a"))], "{path}:2: duplicate id 'a' (first on line 1)"),
        ("gsm8k", [json.dumps(dict(GSM8K[0], id=[1]))], "{path}:1: field 'id' must be str/int, got list"),
        ("math", [json.dumps({"problem": "p", "solution": "so 3"})], "{path}:1: field 'solution' has no \\boxed{...} answer"),
        ("math", [json.dumps({"problem": "p"})], "{path}:1: missing field 'solution'"),
        ("math", [json.dumps({"problem": "p", "solution": "\\boxed{1"})], "{path}:1: field 'solution' has no \\boxed{...} answer"),
        ("mbpp", [json.dumps(dict(MBPP[0], test_list="assert f()"))], "{path}:1: field 'test_list' must be list, got str"),
        ("mbpp", [json.dumps(dict(MBPP[0], test_list=["assert f()", 3]))], "{path}:1: field 'test_list' must be a non-empty list"),
        ("mbpp", [json.dumps(dict(MBPP[0], test_list=[]))], "{path}:1: field 'test_list' must be a non-empty list"),
        ("mbpp", [json.dumps({k: v for k, v in MBPP[0].items() if k != "code"})], "{path}:1: missing field 'code'"),
        ("mbpp", [json.dumps(dict(MBPP[0], test_setup_code=None))], "{path}:1: field 'test_setup_code' must be str, got NoneType"),
        ("mbpp", ["", "  "], "{path}: no problems (the file is empty)"),
    ],
)
def test_bad_lines_are_one_clear_error(tmp_path, fmt, lines, message):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as e:
        get_task(f"{fmt}:{path}")
    assert str(e.value).startswith(message.replace("{path}", str(path))), str(e.value)


def test_missing_file_and_unknown_verifier(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file"):
        get_task(f"math:{tmp_path}/nope.jsonl")
    path = _jsonl(tmp_path / "m.jsonl", MATH)
    with pytest.raises(ValueError, match="format 'math' is checked by math, not 'exact'"):
        FormatTask("math", path, verifier="exact")


# ---------------------------------------------------------------- math


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("$\\boxed{1}$ then $\\boxed{2}$", "2"),
        ("\\boxed{\\{-1, 1\\}}", "\\{-1, 1\\}"),
        ("\\fbox{x^{2^{3}}}", "x^{2^{3}}"),
        ("\\boxed {5}", "5"),
        ("no box", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


def test_math_loads_boxed_gold_and_scores_with_the_math_verifier(tmp_path):
    task = get_task(f"math:test={_jsonl(tmp_path / 'math.jsonl', MATH)}")
    problems = task.problems("test", 3)
    assert [p.answer for p in problems] == ["\\sqrt{2}", "\\frac{1}{2}", "\\{-1, 1\\}"]
    assert problems[0].meta["level"] == "Level 3" and problems[0].meta["type"] == "Intermediate Algebra"
    assert problems[0].prompt == MATH[0]["problem"]
    for p in problems[:2]:
        assert task.score(p, p.solution) == 1.0
    assert task.score(problems[1], "The value is $\\boxed{\\dfrac{1}{2}}$.") == 1.0
    assert task.score(problems[1], "Answer: 0.5") == 1.0
    assert task.score(problems[1], "\\boxed{\\frac{1}{3}}") == 0.0


# ---------------------------------------------------------------- mbpp


def test_mbpp_loads_the_paper_prompt_and_tests(tmp_path):
    task = get_task(f"mbpp:test={_jsonl(tmp_path / 'mbpp.jsonl', MBPP)}")
    assert task.verifier == "code"
    p, q = task.problems("test", 2)
    assert (p.id, q.id) == ("11", "12")
    assert p.prompt.startswith("You are an expert Python programmer, and here is your task: Write a python function to remove")
    assert p.prompt.endswith('Your code should pass these tests:\n\nassert remove_Occ("hello","l") == "heo"\n'
                             'assert remove_Occ("abcda","a") == "bcd"\nassert remove_Occ("PHP","P") == "H"')
    assert p.meta["entry_point"] == "remove_Occ" and q.meta["setup"] == "import math"


def test_mbpp_reference_code_passes_the_sandbox_and_wrong_code_fails(tmp_path):
    task = get_task(f"mbpp:test={_jsonl(tmp_path / 'mbpp.jsonl', MBPP)}")
    p, q = task.problems("test", 2)
    assert task.score(p, p.answer) == 1.0
    assert task.score(q, f"```python\n{q.answer}\n```") == 1.0  # needs the setup code's import
    assert task.score(p, "```python\ndef remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n```") == 0.0
    assert task.score(q, "def hypot(a, b):\n    return a + b\n") == 0.0


# ---------------------------------------------------------------- a suite file over a user file


def test_a_suite_file_over_a_user_file(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _jsonl(data / "test.jsonl", GSM8K)
    suite = tmp_path / "gsm8k_exact.yaml"
    suite.write_text(
        "name: gsm8k_exact\n"
        'description: "GSM8K test, exact Answer: lines"\n'
        "source:\n  format: gsm8k\n  test: data/test.jsonl\n"
        'prompt_template: "Question: {prompt}\\nAnswer:"\n'
        'step_delimiter: "\\n"\n'
        "verifier: exact\n"
        "splits: [test]\n"
    )
    monkeypatch.chdir(tmp_path.parent)  # the path is relative to the suite file, not the working directory
    task = get_task(str(suite))
    assert task.verifier == "exact" and task.prompt_template == "Question: {prompt}\nAnswer:"
    p = task.problems("test", 1)[0]
    assert task.score(p, "Answer: 72") == 1.0
    assert task.score(p, "The answer is \\boxed{72}.") == 0.0  # exact wants an Answer: line
    with pytest.raises(ValueError, match="has no 'train' split"):
        task.problems("train", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(suite.read_text().replace("verifier: exact", "verifier: code"))
    with pytest.raises(ValueError, match=r"bad.yaml: key 'verifier' must be math or exact for format 'gsm8k'"):
        get_task(str(bad))


def test_a_gold_answer_the_verifier_cannot_read_names_file_line_and_field(tmp_path):
    bad = dict(MATH[1], solution="so the value is $\\boxed{\\frac{1}{}}$ clearly")
    path = _jsonl(tmp_path / "m.jsonl", [MATH[0], bad])
    task = get_task(f"math:test={path}")
    with pytest.raises(ValueError) as e:
        task.problems("test", 2)
    assert str(e.value).startswith(f"{path}:2: field 'solution': gold answer ")
    assert task.problems("test", 1)[0].answer == "\\sqrt{2}"  # the readable first record is served


# ---------------------------------------------------------------- the README's recipes, on real-format records

MATH500 = [
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
     "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ Also, the point is on the positive $y$-axis, so "
                 "$\\theta = \\frac{\\pi}{2}.$ Hence, the polar coordinates are $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "What is the value of $513^2 - 487^2$?",
     "solution": "Note that $513^2 - 487^2 = (513+487)(513-487) = (1000)(26) = \\boxed{26000}$.",
     "answer": "26000", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/2592.json"},
]


def _readme_recipes():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Recipes: public datasets"):text.index("## Verifiers")]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_readme_recipes(tmp_path):
    import yaml

    blocks = {yaml.safe_load(b)["name"]: b for b in _readme_recipes()}
    assert set(blocks) == {"gsm8k", "math500", "mbpp"}
    data = {"gsm8k": (GSM8K[:2], GSM8K[2:]), "math500": (None, MATH500), "mbpp": (MBPP[:1], MBPP[1:])}
    completions = {  # one completion per problem in a style each dataset's models produce
        "gsm8k": lambda p: f"Let me add it up.\n#### {p.answer}",
        "math500": lambda p: f"Computing carefully, the answer is $\\boxed{{{p.answer}}}$.",
        "mbpp": lambda p: f"```python\n{p.answer}\n```",
    }
    for name, block in blocks.items():
        spec = yaml.safe_load(block)
        for split, records in zip(("train", "test"), data[name]):
            if records is not None:
                path = tmp_path / spec["source"][split]
                path.parent.mkdir(parents=True, exist_ok=True)
                _jsonl(path, records)
        suite = tmp_path / f"{name}.yaml"
        suite.write_text(block)
        task = get_task(str(suite))
        assert task.step_delimiter == "\n" and task.verifier == spec["verifier"]
        test = task.problems("test", len(data[name][1]))
        for p in test:
            assert task.score(p, completions[name](p)) == 1.0, (name, p.id)
            assert task.score(p, "I am not sure.") == 0.0
        if "train" in spec["splits"]:
            assert not {p.prompt for p in task.problems("train", 1)} & {p.prompt for p in test}
    assert get_task(str(tmp_path / "math500.yaml")).prompt_template.format(prompt="Q").endswith("\\boxed{}.\n")
    math500 = get_task(str(tmp_path / "math500.yaml")).problems("test", 2)
    assert [p.id for p in math500] == ["test/precalculus/807.json", "test/algebra/2592.json"]
    assert math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
