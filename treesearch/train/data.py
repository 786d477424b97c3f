"""Preference pairs: load and validate JSONL, tokenize, batch and pad.

One line of a pairs file (TRL's standard prompt/chosen/rejected strings plus
our step metadata, so ``datasets.load_dataset("json", ...)`` feeds TRL too)::

    {"prompt": "<|im_start|>user\\nQ: 23+45*2-17=?<|im_end|>\\n<|im_start|>assistant\\n23+90-17\\n",
     "chosen": "113-17\\n", "rejected": "112-17\\n",
     "problem_id": "arith-train-3-000007", "round": 0, "depth": 1,
     "chosen_value": 0.9, "rejected_value": -0.7, "chosen_visits": 12, "rejected_visits": 3,
     "kind": "sibling", "chosen_eos": false, "rejected_eos": false}

``prompt``, ``chosen`` and ``rejected`` are required; the metadata is optional
but type-checked when present.

**Exact ids.** Pairs extracted from trees (`treesearch.pairs`) also carry
``prompt_ids``, ``chosen_ids`` and ``rejected_ids``: the ids the search sampled,
end token included where one ended the step. When present they are what is
trained: re-tokenizing the text would give other ids on real tokenizers
(merged tokens across a step boundary, SentencePiece's ``▁``), and the
log-ratios would be of sequences the policy never produced. All three or none
must be given. The one addition: a step flagged ``*_eos`` whose ids do not end
in an end token (a whole trajectory that stopped at a finished answer line)
gets the tokenizer's EOS, so it is trained to stop there, as RFT does.

**Text-only pairs** (hand-written files, TRL datasets) are tokenized: prompt
and step separately (ids concatenated, so the boundary is exact), no special
tokens added; ``*_eos`` says the step ended the solution, so the tokenizer's
EOS id is appended; mid-solution steps get none (Step-DPO). A step may be empty
only when it is such an end (its ids are the EOS alone).

**Too long.** A pair whose prompt + longer step exceeds ``max_length`` is
dropped and counted (`TokenizedPairs.dropped`), never cut: cutting from the
left would take the system prompt and question first, and any cut changes
what the step was conditioned on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

KINDS = ("sibling", "first_error", "trajectory")
REQUIRED = {"prompt": str, "chosen": str, "rejected": str}
OPTIONAL = {
    "problem_id": (str,),
    "round": (int,),
    "depth": (int,),
    "chosen_value": (int, float),
    "rejected_value": (int, float),
    "chosen_visits": (int,),
    "rejected_visits": (int,),
    "kind": (str,),
    "chosen_eos": (bool,),
    "rejected_eos": (bool,),
}
ID_FIELDS = ("prompt_ids", "chosen_ids", "rejected_ids")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One validated pair. `source` is ``file:line`` (or ``<name>[i]`` for in-memory records)."""

    prompt: str
    chosen: str
    rejected: str
    chosen_eos: bool = False
    rejected_eos: bool = False
    chosen_value: float | None = None
    rejected_value: float | None = None
    chosen_visits: int | None = None
    rejected_visits: int | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""
    # the exact sampled ids (all three, or None: tokenize the text)
    prompt_ids: tuple[int, ...] | None = None
    chosen_ids: tuple[int, ...] | None = None
    rejected_ids: tuple[int, ...] | None = None


def _type_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number here
    return isinstance(value, kinds)


def validate_record(record: Any, where: str) -> Pair:
    """A `Pair` from one decoded JSON object; ValueError names `where` and the field."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name, kind in REQUIRED.items():
        if name not in record:
            raise ValueError(f"{where}: missing required field {name!r}")
        if not isinstance(record[name], kind):
            raise ValueError(f"{where}: field {name!r} must be a string, got {type(record[name]).__name__}")
    for name in ("chosen", "rejected"):
        # an empty step is legal only as the bare end of a solution (the EOS token alone)
        if not record[name] and record.get(f"{name}_eos") is not True:
            raise ValueError(f"{where}: field {name!r} is empty (and {name}_eos is not true)")
    for name, kinds in OPTIONAL.items():
        if name in record and record[name] is not None and not _type_ok(record[name], kinds):
            want = " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{where}: field {name!r} must be {want}, got {record[name]!r}")
    if record.get("kind") is not None and record["kind"] not in KINDS:
        raise ValueError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}, got {record['kind']!r}")
    for name in ("chosen_visits", "rejected_visits"):
        if record.get(name) is not None and record[name] < 0:
            raise ValueError(f"{where}: field {name!r} must be >= 0, got {record[name]!r}")
    ids = _validate_ids(record, where)
    typed = set(REQUIRED) | set(ID_FIELDS) | {"chosen_eos", "rejected_eos", "chosen_value", "rejected_value",
                                              "chosen_visits", "rejected_visits"}
    get = record.get

    def value(name: str) -> float | None:
        v = get(name)
        # NaN/inf (an unvisited node's value) counts as absent; losses that need values then say so
        return None if v is None or not math.isfinite(v) else float(v)

    return Pair(
        prompt=record["prompt"],
        chosen=record["chosen"],
        rejected=record["rejected"],
        chosen_eos=bool(get("chosen_eos") or False),
        rejected_eos=bool(get("rejected_eos") or False),
        chosen_value=value("chosen_value"),
        rejected_value=value("rejected_value"),
        chosen_visits=get("chosen_visits"),
        rejected_visits=get("rejected_visits"),
        meta={k: v for k, v in record.items() if k not in typed},
        source=where,
        **ids,
    )


def _validate_ids(record: dict, where: str) -> dict[str, tuple[int, ...]]:
    """The id fields of `record` as tuples ({} when it has none); ValueError names the field."""
    present = [name for name in ID_FIELDS if record.get(name) is not None]
    if not present:
        return {}
    if len(present) != len(ID_FIELDS):
        missing = next(name for name in ID_FIELDS if name not in present)
        raise ValueError(f"{where}: field {missing!r} is missing; exact ids need all of {', '.join(ID_FIELDS)}")
    out = {}
    for name in ID_FIELDS:
        value = record[name]
        if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                  for t in value):
            raise ValueError(f"{where}: field {name!r} must be a list of non-negative token ids")
        if not value:
            raise ValueError(f"{where}: field {name!r} is empty")
        out[name] = tuple(value)
    return out


def load_pairs(path: str | Path) -> list[Pair]:
    """All pairs of a JSONL file (blank lines skipped). Bad JSON or fields -> ValueError ``file:line: ...``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: pairs file does not exist")
    pairs = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            pairs.append(validate_record(record, where))
    if not pairs:
        raise ValueError(f"{p}: no pairs in file")
    return pairs


def as_pairs(pairs: str | Path | Iterable[Pair | dict[str, Any]], name: str = "pairs") -> list[Pair]:
    """Accept a JSONL path, `Pair`s or plain dicts (validated as ``name[i]``)."""
    if isinstance(pairs, (str, Path)):
        return load_pairs(pairs)
    out = [p if isinstance(p, Pair) else validate_record(p, f"{name}[{i}]") for i, p in enumerate(pairs)]
    if not out:
        raise ValueError(f"{name}: no pairs given")
    return out


def fingerprint(pairs: Sequence[Pair]) -> str:
    """Content hash of the training-relevant fields, so a resumed run can check it sees the same data."""
    h = hashlib.sha256()
    for p in pairs:
        row = [p.prompt, p.chosen, p.rejected, p.chosen_eos, p.rejected_eos, p.chosen_value,
               p.rejected_value, p.chosen_visits, p.rejected_visits]
        if p.prompt_ids is not None:  # the ids are what is trained
            row += [list(p.prompt_ids), list(p.chosen_ids), list(p.rejected_ids)]
        h.update(json.dumps(row).encode())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class TokenizedPairs:
    """Struct of arrays over N pairs: token ids per pair (lists of ints), plus N-vectors of metadata."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    chosen_values: np.ndarray  # [N] float, NaN where absent
    rejected_values: np.ndarray  # [N]
    chosen_visits: np.ndarray  # [N] float, NaN where absent
    rejected_visits: np.ndarray  # [N]
    sources: list[str]
    dropped: int  # pairs left out because prompt + longer step exceeds max_length

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def lengths(self) -> np.ndarray:
        """[N] length of the longer of the two sequences of each pair."""
        return np.array([len(p) + max(len(c), len(r)) for p, c, r in
                         zip(self.prompt_ids, self.chosen_ids, self.rejected_ids)])


def _text_ids(pairs: Sequence[Pair], tokenizer) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen, rejected) ids of text-only pairs: tokenized separately, EOS where flagged."""
    eos = tokenizer.eos_token_id
    if eos is None and any(p.chosen_eos or p.rejected_eos for p in pairs):
        raise ValueError("pairs ask for an EOS token but the tokenizer has no eos_token_id")

    def enc(texts: list[str]) -> list[list[int]]:
        return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    prompts = enc([p.prompt for p in pairs])
    chosen = [ids + [eos] if p.chosen_eos else ids for ids, p in zip(enc([p.chosen for p in pairs]), pairs)]
    rejected = [ids + [eos] if p.rejected_eos else ids for ids, p in zip(enc([p.rejected for p in pairs]), pairs)]
    return list(zip(prompts, chosen, rejected))


def _exact_ids(p: Pair, ends: frozenset[int], eos: int | None) -> tuple[list[int], list[int], list[int]]:
    """A pair's own ids; EOS appended to a step flagged ``*_eos`` that no end token ends."""

    def step(ids: tuple[int, ...], flagged: bool) -> list[int]:
        if flagged and ids[-1] not in ends:
            if eos is None:
                raise ValueError(f"{p.source}: the pair asks for an EOS token but the tokenizer has no eos_token_id")
            return list(ids) + [eos]
        return list(ids)

    return list(p.prompt_ids), step(p.chosen_ids, p.chosen_eos), step(p.rejected_ids, p.rejected_eos)


def tokenize_pairs(pairs: Sequence[Pair], tokenizer, *, max_length: int,
                   end_ids: frozenset[int] | None = None) -> TokenizedPairs:
    """Ids of every pair that fits `max_length`: its exact ids when it carries them (`_exact_ids`),
    else its text tokenized (`_text_ids`). `end_ids`: the ids that end a solution (the model's,
    `backends.text.end_token_ids`; default: the tokenizer's). A pair whose prompt + longer step is
    longer is dropped and counted; ValueError when none fits, or for an empty prompt or step."""
    from treesearch.backends.text import end_token_ids

    ends = end_ids if end_ids is not None else end_token_ids(tokenizer)
    texts = iter(_text_ids([p for p in pairs if p.prompt_ids is None], tokenizer))
    kept: list[Pair] = []
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for p in pairs:
        ids = _exact_ids(p, ends, tokenizer.eos_token_id) if p.prompt_ids is not None else next(texts)
        prompt, chosen, rejected = ids
        if not chosen or not rejected:
            raise ValueError(f"{p.source}: a step tokenizes to no tokens")
        if not prompt:
            raise ValueError(f"{p.source}: empty prompt; the first step needs a token to be conditioned on")
        if len(prompt) + max(len(chosen), len(rejected)) > max_length:
            continue
        kept.append(p)
        rows.append(ids)
    if not kept:
        raise ValueError(f"no pair fits max_length={max_length} (all {len(pairs)} are longer); raise max_length")

    def vec(name: str) -> np.ndarray:
        return np.array([np.nan if getattr(p, name) is None else float(getattr(p, name)) for p in kept])

    return TokenizedPairs([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                          vec("chosen_value"), vec("rejected_value"), vec("chosen_visits"), vec("rejected_visits"),
                          [p.source for p in kept], len(pairs) - len(kept))


def loss_norm(tp: TokenizedPairs, idx: Sequence[int]) -> tuple[float, float]:
    """(pairs, chosen-step tokens) of the pairs `idx` (a whole optimizer step's): the denominators
    of its mean loss terms, whichever micro-batch or rank computes a part of them."""
    return float(len(idx)), float(sum(len(tp.chosen_ids[i]) for i in idx))


def epoch_batches(lengths: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                  group_by_length: bool) -> list[np.ndarray]:
    """Pair indices of each batch of one epoch; a pure function of (seed, epoch), so a resumed
    run replays the same order. With `group_by_length`, mega-batches of 16 batches are sorted by
    length before splitting (less padding) and the batch order is shuffled again."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = 16 * batch_size
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def _add_scores(out: list[list[int]], row: int, first_col: int, next_col: int, step: list[int], seq: int) -> None:
    """Append (row, col, target, seq) for each token of `step`: its first token is predicted at
    `first_col` (the last prompt position), token k > 0 at column `next_col` + k − 1."""
    for k, target in enumerate(step):
        out[0].append(row)
        out[1].append(first_col if k == 0 else next_col + k - 1)
        out[2].append(target)
        out[3].append(seq)


def collate(tp: TokenizedPairs, idx: Sequence[int], pad_id: int, *, packed: bool = False) -> dict:
    """One batch of B pairs as model inputs plus the positions to score.

    Output sequences are numbered 0..2B-1: s < B is pair idx[s]'s chosen step, s >= B its rejected step.
    Unpacked: 2B right-padded rows, prompt+chosen then prompt+rejected (TRL's layout).
    Packed: B rows prompt+chosen+rejected; rejected tokens get positions continuing the prompt and a
    4D mask hides the chosen tokens from them, so the shared prompt runs once per pair.

    Keys: input_ids [R, T] long; attention_mask [R, T] long (unpacked) or [R, 1, T, T] bool (packed);
    position_ids [R, T] (packed only); score_rows, score_cols, score_targets, score_seq [M] long:
    hidden state (row, col) predicts token `target` of output sequence `seq`; n_seqs (int, = 2B).
    """
    import torch

    from treesearch.train.logps import right_pad

    score: list[list[int]] = [[], [], [], []]
    rows, positions, segments = (_packed_rows if packed else _unpacked_rows)(tp, idx, score)
    input_ids, valid = right_pad(rows, pad_id)
    out = {"input_ids": input_ids, "n_seqs": 2 * len(idx)}
    out.update({k: torch.tensor(v, dtype=torch.long) for k, v in
                zip(("score_rows", "score_cols", "score_targets", "score_seq"), score)})
    if not packed:
        out["attention_mask"] = valid.long()
        return out
    out["attention_mask"], out["position_ids"] = _packed_mask(positions, segments, valid.bool())
    return out


def _unpacked_rows(tp: TokenizedPairs, idx: Sequence[int], score: list[list[int]]):
    """Rows prompt+chosen (row r) then prompt+rejected (row B + r); each row is its own output sequence."""
    b = len(idx)
    rows = []
    for half, steps in enumerate((tp.chosen_ids, tp.rejected_ids)):
        for r, i in enumerate(idx):
            prompt, step = tp.prompt_ids[i], steps[i]
            rows.append(prompt + step)
            _add_scores(score, half * b + r, len(prompt) - 1, len(prompt), step, half * b + r)
    return rows, None, None


def _packed_rows(tp: TokenizedPairs, idx: Sequence[int], score: list[list[int]]):
    """Rows prompt+chosen+rejected, the rejected tokens' positions continuing the prompt's; segments
    mark each token 0 (prompt), 1 (chosen) or 2 (rejected)."""
    b = len(idx)
    rows, positions, segments = [], [], []
    for r, i in enumerate(idx):
        prompt, c, j = tp.prompt_ids[i], tp.chosen_ids[i], tp.rejected_ids[i]
        n = len(prompt)
        rows.append(prompt + c + j)
        positions.append(list(range(n + len(c))) + list(range(n, n + len(j))))
        segments.append([0] * n + [1] * len(c) + [2] * len(j))
        _add_scores(score, r, n - 1, n, c, r)
        _add_scores(score, r, n - 1, n + len(c), j, b + r)
    return rows, positions, segments


def _packed_mask(positions: list[list[int]], segments: list[list[int]], valid):
    """The packed rows' 4D attention mask [R, 1, T, T] (causal, padding hidden, chosen keys hidden from
    rejected queries) and position ids [R, T]."""
    import torch

    n_rows, width = valid.shape
    pos = torch.zeros((n_rows, width), dtype=torch.long)
    seg = torch.full((n_rows, width), -1, dtype=torch.long)
    for r, (p, g) in enumerate(zip(positions, segments)):
        pos[r, : len(p)] = torch.tensor(p)
        seg[r, : len(g)] = torch.tensor(g)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    hidden_chosen = (seg[:, :, None] == 2) & (seg[:, None, :] == 1)  # rejected queries never see chosen keys
    mask = causal[None] & valid[:, None, :] & ~hidden_chosen
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding queries see themselves: no all-masked rows (NaN)
    return mask[:, None], pos
