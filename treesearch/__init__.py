"""treesearch: search over reasoning steps, verify, and learn from the trees.

The public surface is small; everything else is importable from its module.

    from treesearch import HFBackend, SamplingParams, Tree, load_policy
    from treesearch.search import mcts, MCTSConfig, segment_rollouts, SegmentConfig
    from treesearch.pairs import extract_pairs, PairConfig
    from treesearch.train import train_step_dpo, StepDPOConfig
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["SamplingParams", "Completion", "HFBackend", "Tree", "load_policy", "__version__"]


def __getattr__(name: str):  # lazy: `import treesearch` must not import torch
    if name in ("SamplingParams", "Completion"):
        from treesearch.backends import base

        return getattr(base, name)
    if name == "HFBackend":
        from treesearch.backends.hf import HFBackend

        return HFBackend
    if name == "Tree":
        from treesearch.tree import Tree

        return Tree
    if name == "load_policy":
        from treesearch.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'treesearch' has no attribute {name!r}")
