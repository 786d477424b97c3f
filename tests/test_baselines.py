"""Baselines on scripted policies: greedy, best-of-N, self-consistency, step-level beam search; cost accounting."""
import time

import pytest

from treesearch.search import (
    BeamConfig,
    BestOfNConfig,
    GreedyConfig,
    OutcomeValue,
    beam_search,
    best_of_n,
    greedy,
    majority_vote,
    mean_logprob,
    meter,
)
from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score
from treesearch.tree import ROOT, Tree


def _trees(backend, n):
    return [Tree(problem_id=f"p{i}", prompt=f"Q{i}", prompt_ids=backend.encode_prompt(f"Q{i}")) for i in range(n)]


def test_greedy_takes_the_most_likely_arm():
    backend = ScriptedBackend(bandit_policy({"a": 0.2, "b": 0.7, "c": 0.1}, depth=2))
    result = greedy(backend, _trees(backend, 2), GreedyConfig(max_tokens=16))
    assert result.answers() == ["b\nb", "b\nb"]
    assert all(t.meta["search"]["algo"] == "greedy" for t in result.trees)


def test_best_of_n_with_a_verifier_picks_the_right_answer():
    backend = ScriptedBackend(bandit_policy({"a": 0.6, "b": 0.3, "c": 0.1}, depth=1))
    score = bandit_score("c")
    result = best_of_n(backend, _trees(backend, 3), BestOfNConfig(n=32, max_tokens=4), scorer=OutcomeValue(score))
    for t, s in zip(result.trees, result.selected):
        assert len(t.children[ROOT]) == 32 and all(t.terminal[c] for c in t.children[ROOT])
        assert "c" in [t.text[c] for c in t.children[ROOT]]  # precondition: the answer was sampled
        assert t.text[s] == "c" and t.verdict[s] == 1
        t.check_values()
    assert result.cost.calls == 1  # all problems, all samples: one call


def test_best_of_n_with_confidence_picks_the_likeliest_sample():
    backend = ScriptedBackend(bandit_policy({"a": 0.6, "b": 0.3, "c": 0.1}, depth=1))
    result = best_of_n(backend, _trees(backend, 2), BestOfNConfig(n=8, max_tokens=4), scorer=mean_logprob)
    assert result.answers() == ["a", "a"]


def test_majority_vote_takes_the_plurality_answer():
    backend = ScriptedBackend(bandit_policy({"a": 0.3, "b": 0.45, "c": 0.25}, depth=1))
    result = majority_vote(backend, _trees(backend, 2), BestOfNConfig(n=40, max_tokens=4), extract=lambda text: text or None)
    for t, s in zip(result.trees, result.selected):
        votes = t.meta["votes"]
        assert sum(votes.values()) == 40 and max(votes, key=votes.get) == "b" == t.text[s]
        assert t.q(s) == pytest.approx(votes["b"] / 40)


def test_majority_vote_ignores_abstentions_and_breaks_ties_by_first_seen():
    backend = ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.5}, depth=1))
    (t,) = _trees(backend, 1)
    extract = lambda text: {"a": None}.get(text, text)  # "a" samples give no answer
    result = majority_vote(backend, [t], BestOfNConfig(n=6, max_tokens=4), extract=extract)
    assert set(t.meta["votes"]) == {"b"} and t.text[result.selected[0]] == "b"


def test_beam_search_follows_a_process_scorer_to_the_best_path():
    backend = ScriptedBackend(bandit_policy({"a": 0.4, "b": 0.3, "c": 0.3}, depth=3))

    def prefix_is_c(trees, nodes):  # a perfect process reward: every step so far is "c"
        return [float(all(line == "c" for line in t.text_of(n).split("\n") if line)) for t, n in zip(trees, nodes)]

    calls = []
    orig = backend.generate
    backend.generate = lambda prompts, params: calls.append(len(prompts)) or orig(prompts, params)
    result = beam_search(backend, _trees(backend, 3), BeamConfig(beam_width=2, expansions=12, max_depth=3), scorer=prefix_is_c)
    assert result.answers() == ["c\nc\nc"] * 3
    assert calls[0] == 3 and len(calls) == 3  # one call per step over every beam of every problem
    for t in result.trees:
        t.check_values()
        assert max(t.depth) <= 3


def test_beam_search_keeps_at_most_beam_width_beams():
    backend = ScriptedBackend(bandit_policy({ch: 1.0 for ch in "abcdefgh"}, depth=4))
    seen = []
    orig = backend.generate
    backend.generate = lambda prompts, params: seen.append(len(prompts)) or orig(prompts, params)
    beam_search(backend, _trees(backend, 1), BeamConfig(beam_width=3, expansions=4, max_depth=4))
    assert seen[0] == 1 and all(n <= 3 for n in seen)


def test_cost_separates_backend_time_from_core_time():
    backend = ScriptedBackend(bandit_policy({"a": 1.0}, depth=1), delay_s=0.05)
    result = best_of_n(backend, _trees(backend, 2), BestOfNConfig(n=2, max_tokens=4))
    c = result.cost
    assert c.calls == 1 and c.backend_s >= 0.05 and c.wall_s >= c.backend_s
    assert c.core_s == pytest.approx(c.wall_s - c.backend_s) and 0 <= c.core_overhead < 0.5
    assert c.decode_tokens == 2 * 2 * 2 and c.computed_tokens == c.prefill_tokens + c.decode_tokens
    with meter(backend) as m:
        time.sleep(0.02)
    assert m.cost.calls == 0 and m.cost.core_s >= 0.02 and m.cost.core_overhead == 1.0
    total = result.cost + m.cost
    assert total.calls == 1 and total.wall_s == pytest.approx(c.wall_s + m.cost.wall_s)


class _BanditTask:
    """A task adapter over the bandit policy: the answer is the arm letter on every line."""

    name = "bandit"
    step_delimiter = "\n"

    def score(self, problem, completion):
        return bandit_score(problem.answer)(None, completion)


def test_runner_batches_problems_and_writes_jsonl(tmp_path):
    from tasks.base import Problem
    from treesearch.config import apply_overrides
    from treesearch.search.runner import read_trees, run_search, write_run
    from treesearch.search import MCTSConfig

    backend = ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.3, "c": 0.2}, depth=2))
    problems = [Problem(id=f"b-{i}", prompt=f"Q{i}", answer="c") for i in range(5)]
    lines = []
    result = run_search("mcts", backend, _BanditTask(), problems, MCTSConfig(simulations=30, width=6), batch_size=2, progress=lines.append)
    assert len(result.trees) == 5 and len(lines) == 3 and lines[-1].startswith("mcts: 5/5 problems")
    assert result.cost.calls == backend.stats.calls and [t.problem_id for t in result.trees] == [p.id for p in problems]
    summary = write_run(tmp_path, result, _BanditTask(), problems, {"algo": "mcts"})
    again = read_trees(tmp_path / "trees.jsonl")
    assert [t.to_json() for t in again] == [t.to_json() for t in result.trees]
    assert summary["solved"] == sum(t.meta["search"]["correct"] for t in again) == sum(a == "c\nc" for a in result.answers())
    assert summary["cost"]["calls"] == result.cost.calls
    # a second run failing while it writes (here: a tree that cannot be serialized) leaves the first one's files whole
    before = {f: (tmp_path / f).read_bytes() for f in ("trees.jsonl", "summary.json")}
    result.trees[-1].meta["unserializable"] = object()
    with pytest.raises(TypeError):
        write_run(tmp_path, result, _BanditTask(), problems, {"algo": "mcts"})
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "trees.jsonl"]  # no temporary left
    del result.trees[-1].meta["unserializable"]
    cfg = apply_overrides(MCTSConfig(), ["reroot=true", "step_delimiter=\\n\\n", "c_puct=2", "width=3"])
    assert (cfg.reroot, cfg.step_delimiter, cfg.c_puct, cfg.width) == (True, "\n\n", 2.0, 3)
    with pytest.raises(ValueError, match="reroot must be of type bool"):
        apply_overrides(MCTSConfig(), ["reroot=maybe"])
    # escapes are read, every other character kept as typed (Math-Shepherd's step tag is " ки")
    assert apply_overrides(MCTSConfig(), ["step_delimiter= ки\\n"]).step_delimiter == " ки\n"
    with pytest.raises(ValueError, match="unknown algorithm 'dfs'"):
        run_search("dfs", backend, _BanditTask(), problems)


def test_cost_is_backend_stats_plus_wall_time_and_round_trips():
    import dataclasses

    from treesearch.backends.base import BackendStats
    from treesearch.search.result import Cost

    c = Cost(calls=2, prefill_tokens=5, decode_tokens=3, seconds=0.5, wall_s=2.0)
    assert isinstance(c, BackendStats) and c.backend_s == 0.5 and c.core_overhead == 0.75
    assert c.as_dict()["backend_s"] == 0.5 and "seconds" not in c.as_dict()
    assert Cost.from_dict(c.as_dict()) == c == Cost.from_dict(dataclasses.asdict(c))  # both serialisations
    assert (c + c).computed_tokens == 16 and (c + c).wall_s == 4.0


def test_cost_shares_sum_back_to_the_whole():
    import dataclasses

    from treesearch.search.result import Cost

    # a batch of 7 problems: shares are fractional, their sum rounds counters back exactly
    a = Cost(calls=8, prompt_tokens=1001, prefill_tokens=997, cached_tokens=4, decode_tokens=12345, seconds=1.5, wall_s=3.0)
    b = Cost(calls=8, decode_tokens=10, wall_s=1.0)
    shares = [dataclasses.asdict(a.split(7))] * 7 + [dataclasses.asdict(b.split(3))] * 3
    assert 0 < shares[0]["decode_tokens"] < a.decode_tokens and shares[0]["decode_tokens"] != round(shares[0]["decode_tokens"])
    total = Cost.total(shares)
    assert total.decode_tokens == 12355 and total.calls == 16 and total.prompt_tokens == 1001
    assert isinstance(total.decode_tokens, int) and abs(total.wall_s - 4.0) < 1e-9
    assert Cost.total([]) == Cost()
