"""Selected-token log-probabilities without full-vocabulary logits.

    lp = selected_logps(hidden, lm_head.weight, targets)      # hidden [N, H], targets [N] -> [N] float32

is ``log_softmax(hidden @ W.T + b)[n, targets[n]]`` computed ``chunk`` rows at a time, so
at most ``[chunk, V]`` logits exist at once (forward *and* backward) instead of ``[N, V]``:
with a 151,669-token vocabulary one fp32 logit row is 0.6 MB, so 2 × 2,048 scored tokens
would be 2.5 GB of logits (more with the softmax and its gradient). The backward pass
recomputes each chunk's logits from the saved ``hidden`` and the row's saved log-normaliser
(``lse``, [N] floats) and turns them into the logits gradient in place,

    d lp_n / d z_nv = 1[v = t_n] − softmax(z_n)_v,

which it multiplies into the hidden-state gradient ([chunk, V] @ [V, H]) and accumulates into
the head's weight gradient in fp32 ([V, H]). The numbers equal the plain computation
(``F.linear(...).float().log_softmax(-1).gather(...)``) to float rounding (tests/test_logps.py:
1e-5 on values and gradients); the logits of each chunk are taken in the head's dtype and
upcast to fp32 exactly as the plain path does.

Built on it: `sequence_logps` (the Step-DPO trainer's per-sequence sums at scored positions),
`causal_lm_loss` (RFT's mean NLL, equal to transformers' ``labels=`` loss) and `head_of`
(decoder + LM head of a causal LM, or None when the model rescales its logits after the head,
e.g. Gemma's soft-capping; callers then fall back to the model's full forward).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from treesearch.train.losses import sum_by_row, token_logps

# Logit elements per chunk: 2^25 fp32 = 128 MiB (221 rows at V = 151,669). The memory estimate
# (`treesearch.train.memory`) counts the same number, times the 3 buffers a chunk's backward holds.
CHUNK_ELEMENTS = 2 ** 25


def chunk_rows(vocab: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk for a vocabulary of `vocab` entries (at least 1)."""
    return max(1, chunk_elements // max(1, vocab))


class _SelectedLogps(torch.autograd.Function):
    """lp[n] = log_softmax(hidden[n] @ weight.T + bias)[targets[n]], chunked over n in both passes."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int):
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        for s in range(0, n, chunk):
            z = F.linear(hidden[s:s + chunk], weight, bias).float()
            lse[s:s + chunk] = torch.logsumexp(z, dim=-1)
            out[s:s + chunk] = z.gather(-1, targets[s:s + chunk, None])[:, 0] - lse[s:s + chunk]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk = chunk
        # the backward recomputes under the same autocast as the forward (CUDA bf16 autocast)
        dev = hidden.device.type
        ctx.autocast = (dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dev, enabled, dtype = ctx.autocast
        n, chunk = hidden.shape[0], ctx.chunk
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        grad_out = grad_out.float()
        with torch.autocast(dev, dtype=dtype, enabled=enabled):
            for s in range(0, n, chunk):
                h, g = hidden[s:s + chunk], grad_out[s:s + chunk]
                z = F.linear(h, weight, bias)
                compute_dtype = z.dtype
                # in place: z -> softmax(z) -> −g·softmax(z) + g·onehot(target), the logits gradient
                p = z.float().sub_(lse[s:s + chunk, None]).exp_()
                del z
                p.mul_(-g[:, None])
                p.scatter_add_(-1, targets[s:s + chunk, None], g[:, None])
                gz = p.to(compute_dtype)
                if need_h:
                    grad_h[s:s + chunk] = (gz @ weight.to(compute_dtype)).to(hidden.dtype)
                if need_w:  # accumulated in fp32 over chunks, whatever the compute dtype
                    grad_w.addmm_(p.t(), h.float())
                if need_b:
                    grad_b += p.sum(0)
                del p, gz
        return (grad_h, grad_w.to(weight.dtype) if need_w else None,
                grad_b.to(bias.dtype) if need_b else None, None, None)


def selected_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
                   *, chunk: int | None = None) -> torch.Tensor:
    """log p(targets[n] | hidden[n]) under the head (weight [V, H], bias [V]): hidden [N, H] -> [N] float32.

    chunk: rows per chunk (default `chunk_rows(V)`). Differentiable in hidden, weight and bias.
    """
    assert hidden.dim() == 2 and targets.shape == hidden.shape[:1], (hidden.shape, targets.shape)
    if hidden.shape[0] == 0:
        return hidden.sum(-1).float() * 0.0  # keeps the graph connected for an empty selection
    rows = chunk or chunk_rows(weight.shape[0])
    return _SelectedLogps.apply(hidden, weight, bias, targets.long(), rows)


def plain_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same as `selected_logps` through the full [N, V] logits (the definition it is tested against)."""
    return token_logps(F.linear(hidden, weight, bias), targets.long())


# ---------------------------------------------------------------- causal LMs


def causal_lm(model):
    """The transformers CausalLM inside a PEFT wrapper (LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_of(model):
    """(decoder, lm_head) of a causal LM, or None when its logits are rescaled after the head."""
    lm = causal_lm(model)
    cfg = lm.config
    if getattr(cfg, "final_logit_softcapping", None) is not None or getattr(cfg, "logit_scale", None) is not None:
        return None
    head = lm.get_output_embeddings()
    if head is None or not hasattr(lm, "get_decoder"):
        return None
    return lm.get_decoder(), head


def position_logps(model, inputs: dict, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[m]) predicted by the hidden state at (rows[m], cols[m]) of the model run on `inputs`
    (input_ids, attention_mask, ...): [M] float32. Only the selected positions reach the LM head, in chunks."""
    parts = head_of(model)
    if parts is None:  # a model that post-processes its logits: the full forward, then the positions
        return token_logps(model(**inputs, use_cache=False).logits[rows, cols], targets)
    decoder, head = parts
    hidden = decoder(**inputs, use_cache=False).last_hidden_state
    return selected_logps(hidden[rows, cols], head.weight, targets, getattr(head, "bias", None))


def right_pad(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows as one right-padded batch: (input_ids [B, L] long, attention_mask [B, L] long, 1 on real tokens),
    L the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def continuation_logps(model, inputs: dict, rows, starts) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(rows[i][j]) for every j >= starts[i] (and >= 1) of each right-padded row of `inputs`: the flat
    [M] float32 log-probabilities, row after row, and the row [M] each belongs to. Differentiable."""
    r_idx, c_idx, tgt = [], [], []
    for i, (r, s0) in enumerate(zip(rows, starts)):
        for j in range(max(s0, 1), len(r)):  # token j is predicted at position j - 1
            r_idx.append(i)
            c_idx.append(j - 1)
            tgt.append(r[j])
    device = inputs["input_ids"].device
    owner = torch.tensor(r_idx, dtype=torch.long, device=device)
    cols, targets = (torch.tensor(x, dtype=torch.long, device=device) for x in (c_idx, tgt))
    return position_logps(model, inputs, owner, cols, targets), owner


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each output sequence's scored tokens, and their counts.

    batch: `treesearch.train.data.collate` output (packed or not): model inputs plus score_rows,
    score_cols, score_targets, score_seq [M] and n_seqs. Returns (logp_sum [n_seqs] float32,
    n_tokens [n_seqs] long). Prompt and padding positions never reach the LM head.
    """
    n, seq = batch["n_seqs"], batch["score_seq"]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"]
    lp = position_logps(model, inputs, batch["score_rows"], batch["score_cols"], batch["score_targets"])
    return sum_by_row(lp, seq, n), torch.bincount(seq, minlength=n)


def causal_lm_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over the labelled tokens (labels −100 elsewhere), as transformers' ``labels=`` loss:
    label[b, t] is predicted at position t − 1. input_ids, attention_mask, labels [B, T] -> scalar."""
    shifted = labels[:, 1:]
    rows, cols = (shifted != -100).nonzero(as_tuple=True)
    lp = position_logps(model, {"input_ids": input_ids, "attention_mask": attention_mask}, rows, cols,
                        shifted[rows, cols])
    return -lp.sum() / max(1, lp.numel())
