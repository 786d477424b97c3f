"""Evaluation strategies on the embedded default and the test-time MCTS signal (the sweep: test_sweep.py)."""
import json

import pytest

from treesearch.evaluate import EvalConfig, evaluate, evaluate_search, plurality_scorer, visit_vote
from treesearch.tree import ROOT, Tree


@pytest.fixture(scope="module")
def problems():
    from tasks import get_task

    return get_task("arithmetic").problems("test", 4, seed=0, n_ops=2)


@pytest.mark.parametrize("strategy", ["best-of-n", "beam", "mcts", "segments"])
def test_search_strategies_grade_their_selected_answer(policy, problems, strategy):
    from tasks import get_task
    from treesearch.backends.hf import HFBackend

    task = get_task("arithmetic")
    backend = HFBackend.from_model(*policy)
    records, summary = evaluate_search(backend, task, problems, EvalConfig(strategy=strategy, k=4), progress=False)
    assert len(records) == len(problems) and summary["problems"] == len(problems)
    for p, r in zip(problems, records):
        assert r["correct"][0] == bool(task.score(p, r["completion"]))  # graded by the verifier, not the search
    assert summary["accuracy"] == sum(r["correct"][0] for r in records) / len(records)
    assert summary["tokens_per_problem"] > 0 and summary["cost"]["calls"] >= 1


def test_sampling_and_search_report_tokens_the_same_way(policy, problems):
    from tasks import get_task
    from treesearch.backends.hf import HFBackend

    backend = HFBackend.from_model(*policy)
    _, s = evaluate(backend, get_task("arithmetic"), problems, EvalConfig(strategy="sample", k=4), progress=False)
    assert s["tokens_per_problem"] == s["cost"]["computed_tokens"] / len(problems)
    assert s["decoded_tokens_per_problem"] <= s["tokens_per_problem"]


def test_plurality_scorer_needs_no_gold():
    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1], answer="SECRET")
    score = plurality_scorer(lambda text: text.split(":")[-1].strip() if "Answer:" in text else None)
    assert score(t, "Answer: 5") == 1.0  # first vote is the plurality
    assert score(t, "Answer: 6") == 1.0  # tie
    assert score(t, "Answer: 5") == 1.0
    assert score(t, "Answer: 6") == 1.0
    assert score(t, "Answer: 7") == 0.0
    assert score(t, "no answer") == 0.0


def test_visit_vote_weights_answers_by_visits():
    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    ids = []
    for text, visits in [("Answer: 1", 3), ("Answer: 2", 2), ("Answer: 2", 2)]:
        n = t.add_child(ROOT, text=text, token_ids=[2], logprobs=[-0.1], finish_reason="eos", terminal=True)
        t._cols["visits"][n] = visits
        ids.append(n)
    extract = lambda s: s.split(": ")[1]
    assert t.text_of(visit_vote(t, extract)) == "Answer: 2"  # 4 visits beat 3
    assert visit_vote(Tree(problem_id="q", prompt="Q", prompt_ids=[1]), extract) == ROOT


def test_votes_group_equivalent_math_answers():
    from verifiers.math import extract_answer, same_answer
    from treesearch.voting import plurality

    answers = ["1/2", "3", "0.5", "\\frac{1}{2}", "3", None]
    assert plurality(answers) == ("3", 1)  # strings: "3" twice beats three spellings of a half
    assert plurality(answers, same_answer) == ("1/2", 0)  # grouped by the verifier: one half, three votes
    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    for text, visits in [("\\boxed{3}", 3), ("\\boxed{0.5}", 2), ("\\boxed{\\frac{1}{2}}", 2)]:
        n = t.add_child(ROOT, text=text, token_ids=[2], logprobs=[-0.1], finish_reason="eos", terminal=True)
        t._cols["visits"][n] = visits
    assert t.text_of(visit_vote(t, extract_answer)) == "\\boxed{3}"  # by string: 3 visits beat 2 and 2
    assert t.text_of(visit_vote(t, extract_answer, same_answer)) in ("\\boxed{0.5}", "\\boxed{\\frac{1}{2}}")
    score = plurality_scorer(extract_answer, same_answer)
    t2 = Tree(problem_id="q", prompt="Q", prompt_ids=[1])
    assert score(t2, "\\boxed{3}") == 1.0
    assert score(t2, "\\boxed{1/2}") == 1.0  # tie
    assert score(t2, "\\boxed{0.5}") == 1.0  # one half now leads 2 to 1
    assert score(t2, "\\boxed{3}") == 1.0  # tie again


def test_cut_terminals_never_vote_nor_score():
    from treesearch.search.expand import attach, finished
    from treesearch.backends.base import Completion
    from treesearch.search.values import judge

    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    comps = [Completion(text="Answer: 2", token_ids=(5,), logprobs=(-0.1,), finish_reason="eos"),
             Completion(text="3 + 4 = 7, and then", token_ids=(6,), logprobs=(-0.1,), finish_reason="stop"),
             Completion(text="so 7 and then", token_ids=(7,), logprobs=(-0.1,), finish_reason="length")]
    kids = [c for c, _, _ in attach(t, ROOT, comps, max_depth=1, max_tokens=100)]
    assert [t.finish_reason[c] for c in kids] == ["eos", "depth", "depth"]
    assert [finished(t, c) for c in kids] == [True, False, False]
    for c in kids:
        t._cols["visits"][c] = 5 if c != kids[0] else 1
    extract = lambda s: s.split()[-3] if "7" in s else s.split(": ")[1]
    assert visit_vote(t, extract) == kids[0]  # the cut paths' 10 visits do not count
    always = lambda tree, text: 1.0
    assert judge(t, kids[0], always) and not judge(t, kids[1], always) and not judge(t, kids[2], always)


def test_weighted_plurality_sums_scores_per_equivalent_answer():
    from treesearch.voting import plurality, weighted_plurality

    same = lambda a, b: float(a) == float(b)
    answers = ["2", "1", "1.0", None, "2"]
    # "2" has two votes (plurality) but "1" carries more PRM mass (0.5 + 0.4 > 0.2 + 0.1)
    assert plurality(answers, same)[0] == "2"
    assert weighted_plurality(answers, [0.2, 0.5, 0.4, 0.99, 0.1], same) == ("1", 1)
    # the member index is the group's highest-weighted sample, not its first
    assert weighted_plurality(answers, [0.1, 0.4, 0.5, 0.0, 0.1], same) == ("1", 2)
    assert weighted_plurality([None, None], [1.0, 1.0]) == (None, -1)
    with pytest.raises(ValueError, match="2 answers but 1 weights"):
        weighted_plurality(["1", "2"], [1.0])


def test_search_record_grades_the_selection_and_finished_solutions_only(arithmetic):
    """One searched problem's record (shared by search summaries and test-time evaluation): the selection
    graded by the real arithmetic verifier; coverage from finished solutions only, never a cut one;
    a cut selection is unfinished and its answer unread."""
    from treesearch.search.runner import search_record, summarize_records
    from treesearch.search.result import Cost
    from treesearch.voting import answer_reading

    p = arithmetic.problems("test", 1, seed=0, n_ops=2)[0]
    right, wrong = p.solution, p.solution.rsplit("Answer:", 1)[0] + "Answer: -99999\n"
    assert arithmetic.score(p, right) == 1.0 and arithmetic.score(p, wrong) == 0.0
    reading = answer_reading(arithmetic)

    def tree(*leaves):
        t = Tree(problem_id=p.id, prompt=p.prompt, prompt_ids=[1])
        return t, [t.add_child(ROOT, text=text, token_ids=[2, 3], logprobs=[-0.1, -0.1], finish_reason=why,
                               terminal=True) for text, why in leaves]

    t, (w, r) = tree((wrong, "eos"), (right, "eos"))
    rec = search_record(arithmetic, reading, p, t, w)
    assert rec["correct"] == [False] and rec["covered"] and rec["predictions"] == ["-99999"]
    assert (rec["unparsed"], rec["unfinished"], rec["nodes"], rec["tokens"]) == (0, 0, 3, 2)
    assert search_record(arithmetic, reading, p, t, r)["correct"] == [True]
    t, (w, r) = tree((wrong, "eos"), (right, "max_tokens"))  # the right text was cut: it covers nothing
    assert not search_record(arithmetic, reading, p, t, w)["covered"]
    cut = search_record(arithmetic, reading, p, t, r)
    assert cut["correct"] == [False] and (cut["unfinished"], cut["unparsed"]) == (1, 1) and cut["predictions"] == [None]
    s = summarize_records([rec, cut], Cost())
    assert (s["accuracy"], s["coverage"], s["unparsed"], s["unfinished"], s["mean_nodes"]) == (0.0, 0.5, 1, 1, 3.0)
