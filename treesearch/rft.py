"""Rejection-sampling fine-tuning (RFT): SFT on the policy's own verified-correct solutions.

The baseline that step-level preference learning has to beat at an equal budget
of sampled tokens: it sees the same search trees, keeps only what verified, and
maximises its likelihood (loss on the solution tokens, EOS included).

It trains on the exact ids the search sampled (``prompt_ids``, ``completion_ids``); a
solution that ended without an end token (a finished answer line, a depth limit) gets
the tokenizer's EOS appended, so the model learns to stop there.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from treesearch.backends.text import end_token_ids, pad_id
from treesearch.io import atomic_write_text


def _examples(records: list[dict], tok, model) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per record: the sampled ids, plus EOS unless an end token
    (any of the model's, `end_token_ids`) already ends them."""
    ends = end_token_ids(tok, getattr(model, "generation_config", None))
    eos = tok.eos_token_id if tok.eos_token_id is not None else min(ends)
    out = []
    for r in records:
        completion = list(r["completion_ids"])
        out.append((list(r["prompt_ids"]), completion + ([] if completion[-1:] and completion[-1] in ends else [eos])))
    return out


def train_rft(policy: str, records: list[dict], settings, out_dir: str | Path, *, seed: int = 0, device: str = "auto") -> dict:
    """Fine-tune `policy` on records {prompt_ids, completion_ids}; save to out_dir/model atomically."""
    import torch
    from tqdm import tqdm

    from treesearch.policy import load_policy
    from treesearch.train.logps import causal_lm_loss

    out = Path(out_dir)
    final = out / "model"
    if (final / "config.json").is_file():
        return json.loads((out / "rft.json").read_text())
    torch.manual_seed(seed)
    model, tok = load_policy(policy, device=device, dtype="float32")
    model.train()
    data = _examples(records, tok, model)
    pad = pad_id(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    rng = random.Random(seed)
    dev = next(model.parameters()).device
    losses = []
    steps = 0
    for _ in range(settings.epochs):
        order = list(range(len(data)))
        rng.shuffle(order)
        for start in tqdm(range(0, len(order), settings.batch_size), desc="rft", dynamic_ncols=True):
            rows = [data[i] for i in order[start : start + settings.batch_size]]
            width = max(len(p) + len(c) for p, c in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, (p, c) in enumerate(rows):
                seq = p + c
                ids[i, : len(seq)] = torch.tensor(seq)
                labels[i, len(p) : len(seq)] = torch.tensor(c)
                mask[i, : len(seq)] = 1
            # the mean NLL of the solution tokens; only those positions reach the LM head, in chunks
            loss = causal_lm_loss(model, ids.to(dev), mask.to(dev), labels.to(dev))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            steps += 1
    model.eval()
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    info = {"steps": steps, "solutions": len(data), "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    atomic_write_text(out / "rft.json", json.dumps(info) + "\n")
    tmp.rename(final)
    return info
