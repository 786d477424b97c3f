"""Step-DPO training of the policy on step pairs (see `trainer` for the flow, `losses` for the objectives).

The config and pair loading import numpy only; `train_step_dpo` and `TrainResult`
load torch and transformers on first access.
"""
from treesearch.train.config import StepDPOConfig, load_config
from treesearch.train.data import Pair, load_pairs

__all__ = ["StepDPOConfig", "load_config", "Pair", "load_pairs", "TrainResult", "train_step_dpo"]


def __getattr__(name: str):
    if name in ("TrainResult", "train_step_dpo"):
        from treesearch.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'treesearch.train' has no attribute {name!r}")
