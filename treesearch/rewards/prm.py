"""A process reward model (PRM) from any Hugging Face checkpoint, scoring each step end.

The solution is written as the question followed by its steps, each step closed
by a step tag; the PRM's verdict on step t is read at the last token of its tag
(the position whose hidden state has seen exactly steps 1..t)::

    {prompt}\\n  step_1 <tag> <sep>  step_2 <tag> <sep> ...
                         ^ score 1           ^ score 2

Three heads, picked by ``PRMConfig.head`` (``auto``: from the checkpoint's architecture):

* ``reward_token`` (a causal LM, as the Math-Shepherd PRMs: tag " ки", good "+",
  bad "-"): ``p_t = softmax(logit[good], logit[bad])[good]`` of the next-token
  logits at the tag;
* ``token_classification`` (``AutoModelForTokenClassification``, e.g. trained by
  TRL's PRM trainer on stepwise data): ``p_t = softmax(logits at the tag)[positive_label]``
  (sigmoid when the head has one label);
* ``sequence_classification`` (``AutoModelForSequenceClassification``): one row per
  prefix (question + steps 1..t), ``p_t`` from its pooled logits likewise;
* ``implicit`` (two causal LMs sharing a tokenizer, the PRM πθ and its ``reference`` πref:
  an implicit PRM as in "Free Process Rewards without Process Labels", e.g. EurusPRM, or a
  Step-DPO policy with the policy it started from): ``p_t = σ(r_t)`` with the step reward
  ``r_t = β·Σ_{i in step t} log πθ(y_i)/πref(y_i)`` over the step's tokens and its tag, so the
  ``min`` aggregate ranks solutions as the paper's min over step rewards;
* ``likelihood`` (a causal LM trained as a verifier by `treesearch.rewards.verifier_train`):
  ``p_t = exp(β·mean log πθ(y_i))`` over the solution's tokens through step t's tag, the
  Bradley–Terry strength the verifier was trained with (``last``: the whole solution's).

Token modes score a whole solution in one row; all rows of a batch go through
the model in chunks of ``batch_size``, right padded (causal attention keeps
padding out of every scored position). A solution's score is the min over its
steps (Math-Shepherd), or the last step's, or the product. `PRMScorer` is a
ValueFn: ``value(trees, nodes)`` scores the path to each node. The PRM has its
own tokenizer: it reads the trees' *text*, never their token ids. Its cost is
counted: ``tokens_read`` adds up every row it ran, and after each call
``last_tokens`` holds per node the PRM tokens of its last step (what a
prefix-cached PRM computes anew; plus the question the first time a problem is
seen), which a
search under a token budget adds to its sampled tokens. A node whose text holds
several steps (a best-of-N sample is a whole solution) is split after each
``step_delimiter`` (`steps_of`), so the PRM scores every step whatever the tree's
shape, and last / min / prod aggregate over the task's steps. No row runs past the PRM's
context (``max_length``, by default its ``max_position_embeddings``): a longer solution is
read up to the cut, its steps past it are left unscored (``steps_cut``) and aggregate over
the steps that fit.
`treesearch.rewards.prm_train` trains such a PRM on the trees' own labels.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

from treesearch.tree import Tree

HEADS = ("auto", "reward_token", "token_classification", "sequence_classification", "implicit", "likelihood")
LM_HEADS = ("reward_token", "implicit", "likelihood")  # heads read from a causal LM's own token probabilities
AGGREGATES = ("min", "last", "prod")


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class PRMConfig:
    """How the PRM reads a solution and which of its outputs is the step score."""

    head: str = _f("auto", "reward_token | token_classification | sequence_classification | implicit (needs reference) | "
                           "likelihood | auto (from the checkpoint's architecture; never implicit or likelihood)")
    reference: str = _f("", "implicit head: the reference model πref (a checkpoint directory or hub name, 'embedded'), "
                            "sharing the PRM's tokenizer")
    beta: float = _f(0.05, "implicit head: β of the log-ratio β·log πθ/πref; likelihood head: β of exp(β·mean log πθ) "
                           "(the value the PRM was trained with)")
    good_token: str = _f("+", "reward_token head: the token meaning 'step is correct' (Math-Shepherd: '+'); must be one token")
    bad_token: str = _f("-", "reward_token head: the token meaning 'step is wrong' (Math-Shepherd: '-'); must be one token")
    step_tag: str = _f("\n", "appended to every step; the score is read at its last token (Math-Shepherd: ' ки')")
    separator: str = _f("", "text between a step's tag and the next step (Math-Shepherd: '\\n')")
    final_tag: str = _f("", "the tag after a solution's last step when that step does not end with step_delimiter (the "
                            "sample ended there), instead of step_tag; '' = step_tag. A likelihood verifier uses its "
                            "tokenizer's end-of-turn token, so a finished solution is read as the policy wrote it")
    step_delimiter: str = _f("\n", "removed from the end of each tree step before the tag is appended")
    prompt_template: str = _f("{prompt}\n", "the question before the steps: a format string with {prompt}, or 'chat' (the PRM tokenizer's chat template)")
    add_special_tokens: bool = _f(True, "let the PRM tokenizer add its special tokens (e.g. BOS) to the question")
    positive_label: int = _f(1, "classification heads: index of the 'step is correct' label (a 1-label head is read through a sigmoid)")
    aggregate: str = _f("min", "value of a node from its path's step scores: min (Math-Shepherd), last, or prod")
    signed: bool = _f(False, "return 2p − 1 in [-1, 1] (the ±1 outcome scale of MCTS) instead of p in [0, 1]")
    batch_size: int = _f(16, "rows per forward pass")
    max_length: int = _f(0, "longest row the PRM reads, in its tokens; a row is cut there and the steps whose scored "
                            "token lies past the cut get no score (counted in `steps_cut`); 0: the model's "
                            "max_position_embeddings (no cut if it has none)")

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"PRMConfig.head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"PRMConfig.aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not self.step_tag:
            raise ValueError("PRMConfig.step_tag must not be empty: the score is read at its last token")
        if self.batch_size < 1:
            raise ValueError(f"PRMConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.beta <= 0:
            raise ValueError(f"PRMConfig.beta must be > 0, got {self.beta}")
        if self.max_length < 0:
            raise ValueError(f"PRMConfig.max_length must be >= 0 (0: the model's context), got {self.max_length}")


def head_of(architecture: str) -> str:
    """The head a transformers class name implies (``Qwen2ForTokenClassification`` -> token_classification)."""
    if architecture.endswith("ForTokenClassification"):
        return "token_classification"
    if architecture.endswith("ForSequenceClassification"):
        return "sequence_classification"
    return "reward_token"


def split_after(text: str, delimiter: str) -> list[str]:
    """`text` cut after every `delimiter`, each kept with its step (``"a\nb\n"`` -> ``["a\n", "b\n"]``); a
    trailing piece without one is a step too; no delimiter: the whole text. `treesearch.rewards.mc.split_steps`
    is the other reading (delimiters dropped, blank steps skipped) for step labels."""
    if not delimiter:
        return [text] if text else []
    parts = text.split(delimiter)
    return [p + delimiter for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def aggregate(scores: Sequence[float], how: str) -> float:
    """A solution's score from its step scores."""
    if not scores:
        raise ValueError("aggregate: no step scores")
    if how == "min":
        return float(min(scores))
    if how == "last":
        return float(scores[-1])
    if how == "prod":
        return float(math.prod(scores))
    raise ValueError(f"unknown aggregate {how!r}; expected one of {', '.join(AGGREGATES)}")


class PRMScorer:
    """Step scores p_t in [0, 1] from a PRM (see the module docstring); a ValueFn over trees.

    Build with `from_pretrained(path, config)` or from a loaded ``(model, tokenizer)``.
    `score_steps(prompts, steps)` -> [len(prompts)] lists of one probability per step;
    ``scorer(trees, nodes)`` -> one value per node (aggregate of its path's scores, 0.5 at
    the root, 2p − 1 when signed). `last_step_scores` keeps the step scores of the latest call.
    """

    def __init__(self, model, tokenizer, config: PRMConfig = PRMConfig(), *, reference=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.head = config.head if config.head != "auto" else head_of(type(model).__name__)
        self.device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("PRM tokenizer has neither a pad nor an eos token to pad batches with")
        self.pad_id = int(pad)
        if self.head == "sequence_classification":
            # transformers pools at the last token that is not config.pad_token_id: pad with exactly that id
            if getattr(model.config, "pad_token_id", None) is None:
                model.config.pad_token_id = self.pad_id
            self.pad_id = int(model.config.pad_token_id)
        self.label_ids: tuple[int, int] | None = None
        self.reference = None
        if self.head == "implicit":
            if reference is None:
                raise ValueError("PRMConfig.head 'implicit' needs a reference model (PRMConfig.reference)")
            if reference.get_output_embeddings().weight.shape[0] != model.get_output_embeddings().weight.shape[0]:
                raise ValueError("implicit PRM: the reference model's vocabulary differs from the PRM's; they must share a tokenizer")
            self.reference = reference.eval()
        elif self.head == "reward_token":
            self.label_ids = (self._single_token(config.good_token, "good_token"), self._single_token(config.bad_token, "bad_token"))
        else:
            n_labels = int(getattr(model.config, "num_labels", 0) or 0)
            if n_labels > 1 and not 0 <= config.positive_label < n_labels:
                raise ValueError(f"PRMConfig.positive_label {config.positive_label} out of range for {n_labels} labels")
        self.max_length = int(config.max_length or getattr(model.config, "max_position_embeddings", 0) or 0)
        self.last_step_scores: list[list[float]] = []
        self.last_tokens: list[int] = []
        self.tokens_read = 0
        self.steps_cut = 0  # steps left unscored because their tag lies past max_length
        self._questions_read: set[str] = set()  # problems whose question the PRM has read (last_tokens)
        self._prompts: dict[str, list[int]] = {}  # question -> its token ids (prompt_ids)
        self._last_encoded: list[tuple[list[int], list[int]]] = []

    @classmethod
    def from_pretrained(cls, path: str | Path, config: PRMConfig = PRMConfig(), *, device: str = "cpu", dtype: str = "auto") -> "PRMScorer":
        """Load tokenizer and model from a checkpoint directory or hub name, with the head's Auto class,
        and for the implicit head `config.reference` too (`device` 'auto': CUDA when present; `dtype`
        'auto': bfloat16 on CUDA, float32 elsewhere)."""
        from treesearch.policy import resolve, resolve_device, resolve_dtype

        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        try:
            head = config.head
            if head == "auto":
                arch = (AutoConfig.from_pretrained(str(path)).architectures or [""])[0]
                head = head_of(arch)
            auto = {
                **dict.fromkeys(LM_HEADS, AutoModelForCausalLM),
                "token_classification": AutoModelForTokenClassification,
                "sequence_classification": AutoModelForSequenceClassification,
            }[head]
            if head == "implicit" and not config.reference:
                raise ValueError("the implicit head needs PRMConfig.reference (--prm-set reference=DIR)")
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = auto.from_pretrained(str(path), dtype=torch_dtype)
        except (OSError, ValueError, KeyError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{path}: cannot load PRM checkpoint: {first}") from e
        reference = None
        if head == "implicit":
            try:
                reference = AutoModelForCausalLM.from_pretrained(resolve(config.reference), dtype=torch_dtype).to(device)
            except (OSError, ValueError, KeyError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ValueError(f"{config.reference}: cannot load the implicit PRM's reference: {first}") from e
        return cls(model.to(device), tokenizer, dataclasses.replace(config, head=head), reference=reference)

    # -- encoding -----------------------------------------------------------------------------
    def _single_token(self, text: str, field: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"PRMConfig.{field} {text!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
        return int(ids[0])

    def _ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []

    def prompt_ids(self, prompt: str) -> list[int]:
        """The PRM's token ids of the question, before the first step (a fresh list; each question is
        tokenized once: a search asks about the same question at every node)."""
        if prompt not in self._prompts:
            cfg = self.config
            if cfg.prompt_template == "chat":
                from treesearch.prompting import render_prompt

                self._prompts[prompt] = self._ids(render_prompt(self.tokenizer, prompt), special=False)
            else:
                self._prompts[prompt] = self._ids(cfg.prompt_template.format(prompt=prompt), special=cfg.add_special_tokens)
        return list(self._prompts[prompt])

    def encode(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """(token ids of the question and its tagged steps, [len(steps)] index of each step's scored token)."""
        cfg = self.config
        ids = self.prompt_ids(prompt)
        ends = []
        for i, step in enumerate(steps):
            core = step.removesuffix(cfg.step_delimiter) if cfg.step_delimiter else step
            ended = cfg.final_tag and i == len(steps) - 1 and core == step
            ids += self._ids(core + (cfg.final_tag if ended else cfg.step_tag))
            ends.append(len(ids) - 1)
            if cfg.separator and i < len(steps) - 1:
                ids += self._ids(cfg.separator)
        if not ids:
            raise ValueError("PRM input is empty")
        return ids, ends

    def clip(self, ids: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
        """A row no longer than max_length: the steps whose scored token falls past it are dropped (a
        causal model scores the kept ones exactly as in the whole row)."""
        if not self.max_length or len(ids) <= self.max_length:
            return ids, ends
        kept = [e for e in ends if e < self.max_length]
        self.steps_cut += len(ends) - len(kept)
        return (ids[: kept[-1] + 1] if kept else []), kept

    # -- scoring ------------------------------------------------------------------------------
    def _forward(self, rows: list[list[int]], ends: list[list[int]] | None = None, starts: list[int] | None = None):
        """Scores of right-padded `rows`, in chunks of batch_size, one tensor per row: the pooled logits
        [L] (sequence head), or, at the positions `ends[i]` of row i, the label logits [len(ends[i]), L]
        (token head), the (good, bad) logits [len(ends[i]), 2] (reward_token head) or each step's
        implicit reward β·Σ log πθ/πref over its tokens, the first step starting at `starts[i]`
        [len(ends[i]), 1] (implicit head), or β·the mean log πθ of the step tokens through each end
        [len(ends[i]), 1] (likelihood head). The reward-token head projects only those positions onto
        the two label rows of the LM head, never the vocabulary."""
        import torch

        from treesearch.train.logps import head_of, right_pad

        parts = head_of(self.model) if self.head == "reward_token" else None
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), self.config.batch_size):
                chunk = rows[start : start + self.config.batch_size]
                ids, mask = right_pad(chunk, self.pad_id)
                inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
                if self.head == "sequence_classification":
                    logits = self.model(**inputs).logits.float()
                    out.extend(logits[i] for i in range(len(chunk)))
                    continue
                at = [torch.tensor(ends[start + i], dtype=torch.long) for i in range(len(chunk))]
                if self.head in ("implicit", "likelihood"):
                    out.extend(self._from_logps(inputs, chunk, at, starts[start : start + len(chunk)]))
                    continue
                if parts is not None:
                    decoder, lm_head = parts
                    hidden = decoder(**inputs, use_cache=False).last_hidden_state
                    labels = torch.tensor(self.label_ids, device=self.device)
                    w = lm_head.weight[labels]
                    b = lm_head.bias[labels] if getattr(lm_head, "bias", None) is not None else None
                    out.extend(torch.nn.functional.linear(hidden[i, e], w, b).float() for i, e in enumerate(at))
                    continue
                logits = self.model(**inputs).logits
                for i, e in enumerate(at):
                    lg = logits[i, e].float()
                    out.append(lg[:, list(self.label_ids)] if self.head == "reward_token" else lg)
        return out

    def _from_logps(self, inputs: dict, chunk: list[list[int]], at, starts: list[int]):
        """Per row, [len(ends), 1]: implicit head, each step's β·Σ (log πθ − log πref) over its tokens
        (step t: after step t−1's end, up to its own); likelihood head, β·mean log πθ of the tokens
        from the first step's through each end."""
        import torch

        from treesearch.train.logps import continuation_logps

        diff, _ = continuation_logps(self.model, inputs, chunk, starts)
        if self.reference is not None:
            diff = diff - continuation_logps(self.reference, inputs, chunk, starts)[0]
        diff = diff.cpu()
        out, k = [], 0
        for i, (r, s0) in enumerate(zip(chunk, starts)):
            n = len(r) - max(s0, 1)
            q = torch.zeros(len(r), dtype=torch.float32)
            q[max(s0, 1):] = torch.cumsum(diff[k : k + n], 0)
            k += n
            q_end = q[at[i]]
            if self.head == "likelihood":
                per = q_end / (at[i] - max(s0, 1) + 1).clamp(min=1).float()
            else:
                per = torch.diff(q_end, prepend=q_end.new_zeros(1))
            out.append(self.config.beta * per.unsqueeze(-1))
        return out

    def _prob(self, logits) -> float:
        """P(step is correct) from one position's scores: the (good, bad) logits for reward_token, else
        the classification head's label logits."""
        import torch

        if self.head == "reward_token":
            return float(torch.softmax(logits, dim=-1)[0])
        if self.head == "likelihood":
            return float(torch.exp(logits[0]))
        if logits.shape[-1] == 1:
            return float(torch.sigmoid(logits[0]))
        return float(torch.softmax(logits, dim=-1)[self.config.positive_label])

    def score_steps(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """[len(prompts)] lists of p_t, one per step of each solution; solutions without steps get [], and a
        solution longer than max_length only the scores of its steps that fit."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        encoded = [self.clip(*self.encode(p, s)) if s else ([], []) for p, s in zip(prompts, steps)]
        self._last_encoded = encoded
        if self.head == "sequence_classification":
            # one row per prefix: question + steps 1..t, pooled at its last token
            rows, owner = [], []
            for j, (ids, ends) in enumerate(encoded):
                for e in ends:
                    rows.append(ids[: e + 1])
                    owner.append(j)
            if any(r[-1] == self.pad_id for r in rows):
                raise ValueError("the step tag ends with the PRM's pad token; sequence pooling cannot find the step end")
            pooled = self._forward(rows) if rows else []
            self.tokens_read += sum(len(r) for r in rows)
            out: list[list[float]] = [[] for _ in encoded]
            for j, lg in zip(owner, pooled):
                out[j].append(self._prob(lg))
            return out
        live = [j for j, (ids, _) in enumerate(encoded) if ids]
        starts = [len(self.prompt_ids(prompts[j])) for j in live] if self.head in ("implicit", "likelihood") else None
        scores = self._forward([encoded[j][0] for j in live], [encoded[j][1] for j in live], starts) if live else []
        self.tokens_read += sum(len(encoded[j][0]) for j in live) * (2 if self.head == "implicit" else 1)
        out = [[] for _ in encoded]
        for j, lg in zip(live, scores):
            out[j] = [self._prob(row) for row in lg]
        return out

    def steps_of(self, text: str) -> list[str]:
        """A node's text as the PRM's steps (`split_after` the step delimiter): a node holding a whole
        solution, as best-of-N samples do, is read step by step; a step node is one step."""
        return split_after(text, self.config.step_delimiter) or [text]

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        steps, own = [], []  # own[i]: how many of row i's steps belong to node i itself
        for tree, node in zip(trees, nodes):
            pieces = [self.steps_of(tree.text[n]) for n in tree.path(node)[1:]]
            steps.append([p for ps in pieces for p in ps])
            own.append(len(pieces[-1]) if pieces else 0)
        scores = self.score_steps([t.prompt for t in trees], steps)
        self.last_step_scores = scores
        # what a prefix-cached PRM computes anew: the node's own steps (those inside max_length), and a
        # question the first time
        self.last_tokens = []
        for tree, (_, e), k, row in zip(trees, self._last_encoded, own, steps):
            before = len(row) - k  # steps of the path above the node
            mine = len(e) - before  # the node's own steps that were scored
            if mine <= 0:
                self.last_tokens.append(0)
            elif before:
                self.last_tokens.append(e[-1] - e[-1 - mine])
            else:
                question = len(self.prompt_ids(tree.prompt))
                first = tree.problem_id not in self._questions_read
                self._questions_read.add(tree.problem_id)
                self.last_tokens.append(e[-1] + 1 - (0 if first else question))
        if self.head == "implicit":  # two models read every token
            self.last_tokens = [2 * n for n in self.last_tokens]
        values = [aggregate(s, self.config.aggregate) if s else 0.5 for s in scores]
        return [2.0 * v - 1.0 for v in values] if self.config.signed else values
