"""Process rewards: step-level values that plug into any search as a `ValueFn`.

Each is a callable ``value_fn(trees, nodes) -> list[float]`` built from a frozen
config dataclass, making one batched backend call (per backend) per call:

* `MCValue` (mc.py): Math-Shepherd soft / hard Monte-Carlo labels; `mc_step_labels`
  labels every step of whole solutions, `solution_tree` turns a solution text into a tree;
* `PAVValue` (advantage.py): process advantage under a prover, ``Q^π + α·A^μ``,
  with the Best-of-K prover ``1 − (1 − V)^K``;
* `ImplicitPRM` (implicit.py): ``β·Σ log πθ/πref`` over each step's tokens, min over steps;
* `PRMScorer` (prm.py): any Hugging Face PRM (reward token or classification head);
  `train_prm` (prm_train.py) trains one on search trees' own labels, `load_value_prm` reads it as a value;
* `SelfEvalValue` (selfeval.py): MCTS-DPO self-evaluation, ``P(Yes)/(P(Yes)+P(No))``,
  ±1 outcomes at terminals.

`omega.py` makes PRM training data: OmegaPRM bisection for the first wrong step
(`locate_errors`, `omega_prm`) exported as TRL stepwise rows (`write_stepwise`).

Only the standard library and numpy are imported here; torch and transformers
load when a PRM checkpoint is loaded or scored.
"""
from treesearch.rewards.advantage import PAVConfig, PAVValue, best_of_k, effective_reward, process_advantage
from treesearch.rewards.implicit import ImplicitPRM, ImplicitPRMConfig
from treesearch.rewards.mc import MCConfig, MCValue, StepLabels, hard_label, mc_step_labels, solution_tree, split_steps
from treesearch.rewards.omega import (
    ErrorLocation,
    OmegaConfig,
    OmegaRun,
    locate_errors,
    omega_prm,
    read_stepwise,
    selection_score,
    stepwise_record,
    write_stepwise,
)
from treesearch.rewards.prm import PRMConfig, PRMScorer
from treesearch.rewards.prm_train import PRMTrainConfig, load_value_prm, train_prm
from treesearch.rewards.selfeval import SelfEvalConfig, SelfEvalValue, yes_probability

__all__ = [
    "ErrorLocation",
    "ImplicitPRM",
    "ImplicitPRMConfig",
    "MCConfig",
    "MCValue",
    "OmegaConfig",
    "OmegaRun",
    "PAVConfig",
    "PAVValue",
    "PRMConfig",
    "PRMScorer",
    "PRMTrainConfig",
    "SelfEvalConfig",
    "SelfEvalValue",
    "StepLabels",
    "best_of_k",
    "effective_reward",
    "hard_label",
    "load_value_prm",
    "locate_errors",
    "mc_step_labels",
    "omega_prm",
    "process_advantage",
    "read_stepwise",
    "selection_score",
    "solution_tree",
    "split_steps",
    "stepwise_record",
    "train_prm",
    "write_stepwise",
    "yes_probability",
]
