"""Search over reasoning steps: MCTS, tree-segment rollouts and baselines, over `treesearch.tree.Tree`.

The model enters only through the `Backend` protocol (`treesearch.backends.base`);
this package imports numpy, never torch, transformers or vllm. Every search takes
``(backend, trees, config, *, callables)`` and returns a `SearchResult` (the
trees, the selected node of each, the measured `Cost`). Selection rules, value
functions and branching weights are plain functions passed in.

    from treesearch.search import MCTSConfig, mcts, make_trees, task_scorer
    trees = make_trees(backend, problems)
    result = mcts(backend, trees, MCTSConfig(simulations=16), score=task_scorer(task, problems))
"""
from treesearch.search.baselines import (
    BeamConfig,
    BestOfNConfig,
    GreedyConfig,
    beam_search,
    best_of_n,
    greedy,
    majority_vote,
)
from treesearch.search.expand import answer_line_done, expand
from treesearch.search.guided import DVTSConfig, choose, dvts, weighted_best_of_n
from treesearch.search.mcts import MCTSConfig, mcts
from treesearch.search.result import Cost, SearchResult, meter
from treesearch.search.runner import make_trees, read_trees, run_search, summarize, task_scorer, write_run
from treesearch.search.segments import (
    SegmentConfig,
    low_probability_weights,
    segment_advantages,
    segment_rollouts,
    uncertainty_weights,
    uniform_weights,
)
from treesearch.search.selection import greedy_q, puct, step_prior, uct
from treesearch.search.values import (
    OutcomeValue,
    RolloutConfig,
    RolloutValue,
    Scorer,
    ValueConfig,
    ValueFn,
    build_value,
    mean_logprob,
    unknown_value,
    zero_value,
)

__all__ = [
    "BeamConfig",
    "BestOfNConfig",
    "Cost",
    "DVTSConfig",
    "GreedyConfig",
    "MCTSConfig",
    "OutcomeValue",
    "RolloutConfig",
    "RolloutValue",
    "Scorer",
    "SearchResult",
    "SegmentConfig",
    "ValueConfig",
    "ValueFn",
    "answer_line_done",
    "beam_search",
    "best_of_n",
    "build_value",
    "choose",
    "dvts",
    "expand",
    "greedy",
    "greedy_q",
    "low_probability_weights",
    "majority_vote",
    "make_trees",
    "mcts",
    "mean_logprob",
    "meter",
    "puct",
    "read_trees",
    "run_search",
    "segment_advantages",
    "segment_rollouts",
    "step_prior",
    "summarize",
    "task_scorer",
    "uct",
    "uncertainty_weights",
    "unknown_value",
    "uniform_weights",
    "weighted_best_of_n",
    "write_run",
    "zero_value",
]
