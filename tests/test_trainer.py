"""The Step-DPO trainer end to end on the real tiny policy: masking, learning, reference caching,
checkpoints and resume (including a real SIGKILL), LoRA merge, bad input, config and CLI."""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from treesearch.train import StepDPOConfig, load_config, load_pairs, train_step_dpo
from treesearch.train.data import as_pairs, collate, tokenize_pairs
from treesearch.train.trainer import reference_logps, sequence_logps

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
POLICY = "embedded"
FAST = dict(progress=False, device="cpu", warmup_ratio=0.0)


@pytest.fixture(scope="module")
def policy():
    from treesearch.policy import load_policy

    return load_policy(POLICY, device="cpu", dtype="float32")


def arithmetic_pairs(tok, n: int, seed: int = 0) -> list[dict]:
    """Pairs from reference solutions: chosen = the correct next step, rejected = its first number
    changed; the final 'Answer:' step ends the solution, so it gets EOS (mid steps do not)."""
    import random

    from tasks.arithmetic import ArithmeticTask
    from treesearch.prompting import render_prompt

    rng = random.Random(seed)
    out = []
    for pr in ArithmeticTask().problems("train", n, seed=seed, n_ops=2):
        steps = pr.solution.split("\n")
        k = rng.randrange(len(steps))
        good = steps[k]
        m = re.search(r"\d+", good)
        bad = good[: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + good[m.end():]
        last = k == len(steps) - 1
        out.append({"prompt": render_prompt(tok, pr.prompt) + "".join(s + "\n" for s in steps[:k]),
                    "chosen": good + ("" if last else "\n"), "rejected": bad + ("" if last else "\n"),
                    "problem_id": pr.id, "round": 0, "depth": k, "kind": "first_error",
                    "chosen_value": 1.0, "rejected_value": -1.0, "chosen_visits": 4 + k, "rejected_visits": 2,
                    "chosen_eos": last, "rejected_eos": last})
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def fresh(policy):
    model, tok = policy
    return copy.deepcopy(model), tok


def margins(model, ref_model, tok, pairs):
    """β-free margins h = logratio_w − logratio_l per pair, [N]."""
    tp = tokenize_pairs(as_pairs(pairs), tok, max_length=512)
    ref_w, ref_l, _ = reference_logps(ref_model, tp, batch_size=16, pad_id=tok.pad_token_id, device="cpu")
    pol_w, pol_l, _ = reference_logps(model, tp, batch_size=16, pad_id=tok.pad_token_id, device="cpu")
    return (pol_w - ref_w) - (pol_l - ref_l)


# ----------------------------------------------------------------- masking: exactly the step tokens are scored


def test_step_logps_cover_exactly_the_step_tokens(policy):
    model, tok = policy
    pairs = arithmetic_pairs(tok, 6)
    pairs[0] = dict(pairs[0], chosen_eos=True)  # one step with EOS, one without, in the same pair
    tp = tokenize_pairs(as_pairs(pairs), tok, max_length=512)
    eos = tok.eos_token_id
    for i, p in enumerate(pairs):
        assert tp.chosen_ids[i] == tok(p["chosen"], add_special_tokens=False)["input_ids"] + [eos] * p["chosen_eos"]
        assert tp.prompt_ids[i] == tok(p["prompt"], add_special_tokens=False)["input_ids"]
    idx = list(range(len(pairs)))
    manual, counts = [], []
    with torch.no_grad():
        for steps in (tp.chosen_ids, tp.rejected_ids):
            for i in idx:
                prompt, step = tp.prompt_ids[i], steps[i]
                lp = model(torch.tensor([prompt + step])).logits[0].log_softmax(-1)
                manual.append(sum(lp[len(prompt) - 1 + k, t].item() for k, t in enumerate(step)))
                counts.append(len(step))
        for packed in (False, True):
            for pad in (tok.pad_token_id, 7):  # what sits in the padding must not matter
                got, n = sequence_logps(model, collate(tp, idx, pad, packed=packed))
                assert torch.allclose(got, torch.tensor(manual), atol=1e-4), (packed, pad)
                assert n.tolist() == counts


def test_prompt_only_conditions_the_loss(policy):
    """Gradient reaches the prompt only through the step tokens' conditioning: the logits the
    loss reads are exactly at the positions predicting step tokens."""
    model, tok = fresh(policy)
    pairs = arithmetic_pairs(tok, 2)
    tp = tokenize_pairs(as_pairs(pairs), tok, max_length=512)
    batch = collate(tp, [0, 1], tok.pad_token_id)
    emb = model.get_input_embeddings()
    captured = {}

    def grab(_module, _inp, out):
        out.retain_grad()
        captured["e"] = out

    handle = emb.register_forward_hook(grab)
    logp, _ = sequence_logps(model, batch)
    handle.remove()
    logp.sum().backward()
    grad = captured["e"].grad.abs().sum(-1)  # [2B, T]
    for row in range(4):
        i = row % 2
        step = (tp.chosen_ids if row < 2 else tp.rejected_ids)[i]
        end = len(tp.prompt_ids[i]) + len(step)
        assert (grad[row, end - 1:] == 0).all(), "the last step token and padding predict nothing scored"
        assert (grad[row, : end - 1] > 0).all(), "prompt and step tokens condition the scored predictions"


def test_long_pairs_are_dropped_whole_and_batches_cover_every_pair_once(policy):
    from treesearch.train.data import epoch_batches

    tok = policy[1]
    pairs = arithmetic_pairs(tok, 10)
    full = tokenize_pairs(as_pairs(pairs), tok, max_length=512)
    lengths = full.lengths()
    limit = int(np.median(lengths))
    tp = tokenize_pairs(as_pairs(pairs), tok, max_length=limit)
    fits = [i for i in range(10) if lengths[i] <= limit]
    # never cut into the question: a pair either fits whole or is left out, and counted
    assert tp.dropped == 10 - len(fits) > 0 and len(tp) == len(fits)
    assert tp.prompt_ids == [full.prompt_ids[i] for i in fits] and tp.chosen_ids == [full.chosen_ids[i] for i in fits]
    lengths = full.lengths()
    for grouped in (False, True):
        a = epoch_batches(lengths, 3, seed=5, epoch=1, group_by_length=grouped)
        assert sorted(int(i) for b in a for i in b) == list(range(10))
        again = epoch_batches(lengths, 3, seed=5, epoch=1, group_by_length=grouped)
        assert [b.tolist() for b in a] == [b.tolist() for b in again]  # replayable on resume
    assert [b.tolist() for b in epoch_batches(lengths, 3, seed=5, epoch=2, group_by_length=False)] != [
        b.tolist() for b in epoch_batches(lengths, 3, seed=5, epoch=1, group_by_length=False)]


# ----------------------------------------------------------------- learning and reference caching


def test_training_raises_margin_and_accuracy(policy, tmp_path):
    model, tok = fresh(policy)
    base = copy.deepcopy(model)
    pairs = arithmetic_pairs(tok, 8)
    cfg = StepDPOConfig(learning_rate=2e-3, epochs=4, batch_size=4, beta=0.1, **FAST)
    result = train_step_dpo(model, pairs, cfg, tmp_path / "run", tokenizer=tok)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == result.steps == 8
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin"} <= set(lines[0])
    assert lines[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at step 0
    assert lines[-1]["rewards/margin"] > 0.05 and lines[-1]["loss"] < lines[0]["loss"]
    h = margins(result.model, base, tok, pairs)
    assert (h > 0).float().mean() >= 0.75 and h.mean() > 0.5


def test_reference_logps_computed_once(policy, tmp_path):
    model, tok = fresh(policy)
    ref = copy.deepcopy(model)
    calls = []
    ref.get_decoder().register_forward_hook(lambda *a: calls.append(1))  # every path runs the decoder
    pairs = arithmetic_pairs(tok, 8)
    cfg = StepDPOConfig(learning_rate=1e-3, epochs=3, batch_size=2, ref_batch_size=4, **FAST)
    result = train_step_dpo(model, pairs, cfg, tmp_path / "run", tokenizer=tok, reference=ref)
    assert result.steps == 12 and result.reference_batches == 2
    assert len(calls) == 2, "the reference runs once per dataset, not once per step or epoch"
    cache = torch.load(tmp_path / "run" / "ref_logps.pt")
    assert cache["chosen"].shape == (8,) and torch.isfinite(cache["rejected"]).all()


def test_gradient_accumulation_matches_one_large_batch(policy, tmp_path):
    """2 micro-batches of 4 per optimizer step take the same steps as batches of 8: a step's pairs are
    drawn (and length-grouped) as one batch, the DPO term is a mean over them and the NLL term a mean
    over all their chosen tokens, not per micro-batch."""
    model, tok = policy
    pairs = arithmetic_pairs(tok, 16, seed=3)
    runs = {}
    for name, bs, accum in (("big", 8, 1), ("accum", 4, 2)):
        cfg = StepDPOConfig(learning_rate=5e-4, epochs=1, batch_size=bs, grad_accum=accum, rpo_alpha=1.0, **FAST)
        runs[name] = train_step_dpo(copy.deepcopy(model), pairs, cfg, tmp_path / name, tokenizer=tok, reference=model)
    assert runs["big"].steps == runs["accum"].steps == 2
    before, big, acc = model.state_dict(), runs["big"].model.state_dict(), runs["accum"].model.state_dict()
    moved = max((big[k] - before[k]).abs().max().item() for k in big)
    diff = max((big[k] - acc[k]).abs().max().item() for k in big)
    # Adam's first steps are ~lr·sign(g): a weight whose gradient is ~0 turns summation-order noise
    # (other padding, other matmul shapes) into up to lr; per-micro-batch normalization was off by 3·lr
    assert moved > 1e-4 and diff < 0.05 * 5e-4, (moved, diff)
    logs = {n: [json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in runs}
    for a, b in zip(logs["big"], logs["accum"]):
        for key in ("loss", "dpo_loss", "nll", "rewards/margin", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key


# ----------------------------------------------------------------- checkpoints and resume


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


@pytest.mark.parametrize("variant", ["fp32", "lora", "bf16-master"])
def test_resume_from_checkpoint_matches_uninterrupted(policy, tmp_path, variant):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, tok = fresh(policy)
    pairs = arithmetic_pairs(tok, 12)
    lora = variant == "lora"
    precision = dict(dtype="bfloat16", gradient_checkpointing=True) if variant == "bf16-master" else {}
    cfg = StepDPOConfig(learning_rate=5e-3, epochs=2, batch_size=4, save_steps=2, keep_checkpoints=3, lora=lora,
                        lora_r=4, **precision, **FAST)
    full = train_step_dpo(model, pairs, cfg, tmp_path / "a", tokenizer=tok)
    assert full.steps == 6 and sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-4"]
    # a checkpoint and the final model are plain HF checkpoints (LoRA merged in)
    loaded = AutoModelForCausalLM.from_pretrained(full.model_dir)
    assert _same_weights(loaded, full.model)
    ids = torch.tensor([[1, 20, 21, 13]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, full.model(ids).logits, atol=1e-5)
        assert not torch.allclose(loaded(ids).logits.float(), policy[0](ids).logits, atol=1e-4)  # training moved it
    AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "checkpoint-4")
    ckpt = tmp_path / "a" / "checkpoint-4"
    state = torch.load(ckpt / "optimizer.pt", weights_only=False)
    # only the newest checkpoint keeps the optimizer state; the older one is a model snapshot
    assert not (tmp_path / "a" / "checkpoint-2" / "optimizer.pt").exists()
    if lora:  # the adapter alone: a few kB, not the merged model
        assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
        assert all("lora_" in k for k in load_file(str(ckpt / "adapter_model.safetensors")))
    else:  # the model in its training dtype; the fp32 master weights only in the resumable state
        dtypes = {v.dtype for v in load_file(str(ckpt / "model.safetensors")).values()}
        assert dtypes == ({torch.bfloat16} if precision else {torch.float32})
        assert ("master" in state) == bool(precision)
        if precision:
            assert all(m.dtype == torch.float32 for m in state["master"])
            assert {v.dtype for v in load_file(str(full.model_dir / "model.safetensors")).values()} == {torch.bfloat16}
    assert "optimizer" in state  # the final model holds no resumable state
    assert not (full.model_dir / "trainer_state.pt").exists() and not (full.model_dir / "optimizer.pt").exists()

    # what a kill between steps 4 and 6 leaves: checkpoint-4, the reference cache, metrics up to
    # step 5, and a half-written temporary directory
    b = tmp_path / "b"
    b.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-4", b / "checkpoint-4")
    shutil.copy(tmp_path / "a" / "ref_logps.pt", b / "ref_logps.pt")
    metrics = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    write_jsonl(b / "metrics.jsonl", metrics[:5])
    (b / ".tmp-checkpoint-6-12345").mkdir()
    resumed = train_step_dpo(copy.deepcopy(policy[0]), pairs, cfg, b, tokenizer=tok)
    assert resumed.resumed_from == 4 and resumed.reference_batches == 0
    assert _same_weights(resumed.model, full.model)
    assert [json.loads(x)["step"] for x in (b / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    # a rerun of a finished run returns it; other pairs in the same directory are refused
    again = train_step_dpo(copy.deepcopy(policy[0]), pairs, cfg, b, tokenizer=tok)
    assert again.steps == 6 and again.seconds == 0 and _same_weights(again.model, full.model)
    with pytest.raises(ValueError, match="finished run of other pairs"):
        train_step_dpo(copy.deepcopy(policy[0]), pairs[:8], cfg, b, tokenizer=tok)
    # an interrupted run resumes only its own pairs, and only with its reference sums
    c = tmp_path / "c"
    shutil.copytree(tmp_path / "a" / "checkpoint-4", c / "checkpoint-4")
    with pytest.raises(ValueError, match="checkpoint-4: checkpoint of other pairs"):
        train_step_dpo(copy.deepcopy(policy[0]), pairs[:8], cfg, c, tokenizer=tok)
    with pytest.raises(ValueError, match="ref_logps.pt: reference cache missing or stale, cannot resume"):
        train_step_dpo(copy.deepcopy(policy[0]), pairs, cfg, c, tokenizer=tok)


CHILD = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from treesearch.train import StepDPOConfig, train_step_dpo
    cfg = StepDPOConfig(learning_rate=1e-3, epochs=15, batch_size=4, save_steps=1, progress=False, device="cpu")
    train_step_dpo(sys.argv[1], sys.argv[2], cfg, sys.argv[3])
""")


def test_killed_run_resumes_to_the_same_model(policy, tmp_path):
    """A real SIGKILL mid-run, then the same call again: it continues from the last checkpoint and
    ends with exactly the weights of an uninterrupted run."""
    model, tok = policy
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs(tok, 8))
    policy_dir = tmp_path / "policy"
    model.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(policy_dir), str(pairs_file), str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoint-3" / "trainer_state.pt").exists() and child.poll() is None:
        assert time.time() < deadline, "child made no checkpoint in time"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert not (out / "model").exists()

    cfg = StepDPOConfig(learning_rate=1e-3, epochs=15, batch_size=4, save_steps=1, progress=False, device="cpu")
    resumed = train_step_dpo(policy_dir, pairs_file, cfg, out)
    assert 3 <= resumed.resumed_from < resumed.steps == 30 and resumed.reference_batches == 0
    straight = train_step_dpo(policy_dir, pairs_file, cfg, tmp_path / "straight")
    assert _same_weights(resumed.model, straight.model)


# ----------------------------------------------------------------- LoRA


def test_lora_trains_adapter_against_disabled_base_and_merges(policy, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = fresh(policy)
    pairs = arithmetic_pairs(tok, 8)
    cfg = StepDPOConfig(learning_rate=1e-2, epochs=3, batch_size=4, lora=True, lora_r=4, **FAST)
    result = train_step_dpo(model, pairs, cfg, tmp_path / "lora", tokenizer=tok)
    assert result.reference_batches == 1
    assert result.model is model, "the caller's model holds the merged result"
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert not any("lora" in k for k in merged.state_dict()) and not any("lora" in k for k in model.state_dict())
    assert _same_weights(merged, result.model)
    h = margins(merged, policy[0], tok, pairs)
    assert h.mean() > 0.1, "the merged adapter prefers chosen steps relative to the untouched base"
    first = json.loads((tmp_path / "lora" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["rewards/margin"] == pytest.approx(0.0, abs=1e-4)  # adapter starts as identity = reference


def test_lora_without_merge_exports_the_adapter_alone(policy, tmp_path):
    from peft import PeftModel

    model, tok = fresh(policy)
    pairs = arithmetic_pairs(tok, 8)
    cfg = StepDPOConfig(learning_rate=1e-2, epochs=1, batch_size=4, lora=True, lora_r=4, lora_merge=False, **FAST)
    result = train_step_dpo(model, pairs, cfg, tmp_path / "lora", tokenizer=tok)
    files = {p.name for p in result.model_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files and "model.safetensors" not in files
    reloaded = PeftModel.from_pretrained(copy.deepcopy(policy[0]), result.model_dir).eval()
    ids = torch.tensor([[1, 20, 21, 13]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, result.model(ids).logits, atol=1e-6)
        assert not torch.allclose(reloaded(ids).logits, policy[0](ids).logits, atol=1e-4)  # the adapter moved it


# ----------------------------------------------------------------- objectives wired through the trainer


def test_rpo_apo_and_visit_smoothing_run_and_need_their_fields(policy, tmp_path):
    model, tok = fresh(policy)
    pairs = arithmetic_pairs(tok, 4)
    cfg = StepDPOConfig(learning_rate=1e-3, batch_size=4, rpo_alpha=1.0, apo_alpha=0.5,
                        label_smoothing_from_visits=True, **FAST)
    result = train_step_dpo(model, pairs, cfg, tmp_path / "mix", tokenizer=tok)
    m = result.metrics
    assert m["nll"] > 0 and m["loss"] == pytest.approx(m["dpo_loss"] + m["nll"], abs=1e-5)
    no_values = [{k: v for k, v in p.items() if k != "rejected_value"} for p in pairs]
    with pytest.raises(ValueError, match=r"pairs\[0\]: missing field 'rejected_value' \(needed by apo_alpha"):
        train_step_dpo(model, no_values, cfg, tmp_path / "bad", tokenizer=tok)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("line, lineno, field", [
    ("{not json", 2, "invalid JSON"),
    ('{"prompt": "p", "chosen": "a"}', 2, "'rejected'"),
    ('{"prompt": "p", "chosen": 3, "rejected": "b"}', 2, "'chosen'"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_visits": "7"}', 2, "'chosen_visits'"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_eos": 1}', 2, "'chosen_eos'"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "kind": "cousin"}', 2, "'kind'"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_value": true}', 2, "'chosen_value'"),
    ('["prompt"]', 2, "JSON object"),
    ('{"prompt": "p", "chosen": "a", "rejected": ""}', 2, "'rejected' is empty"),
])
def test_bad_pairs_name_file_line_and_field(tmp_path, line, lineno, field):
    good = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, line, good])
    with pytest.raises(ValueError) as e:
        load_pairs(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{lineno}:") and field in msg and "\n" not in msg


def test_eos_only_step_is_the_end_token_alone(policy, tmp_path):
    """A policy that stops without writing anything produced the step "" + EOS: a legal rejected
    step (found in a real 8,192-problem search), scored as the EOS token alone."""
    model, tok = policy
    pairs = arithmetic_pairs(tok, 2)
    pairs[1] = dict(pairs[1], rejected="", rejected_eos=True)
    tp = tokenize_pairs(load_pairs(write_jsonl(tmp_path / "p.jsonl", pairs)), tok, max_length=512)
    assert tp.rejected_ids[1] == [tok.eos_token_id]
    got, n = sequence_logps(model, collate(tp, [0, 1], tok.pad_token_id, packed=True))
    assert n.tolist()[3] == 1 and torch.isfinite(got).all()


def test_pairs_file_loads_in_trl_format(policy, tmp_path):
    """The same file feeds `datasets`/TRL: standard prompt/chosen/rejected strings, extra keys allowed."""
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    path = write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs(policy[1], 4))
    ds = load_dataset("json", data_files=str(path), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and not is_conversational(ds[0])
    assert [p.chosen for p in load_pairs(path)] == ds["chosen"]


# ----------------------------------------------------------------- config and command line


def test_config_yaml_is_strict(tmp_path):
    import dataclasses

    good = tmp_path / "good.yaml"
    good.write_text("beta: 0.2\nepochs: 3\nlora_target_modules: [q_proj, v_proj]\nadam_betas: [0.9, 0.95]\n")
    cfg = load_config(good, {"epochs": 4})
    assert (cfg.beta, cfg.epochs, cfg.lora_target_modules, cfg.adam_betas) == (
        0.2, 4, ("q_proj", "v_proj"), (0.9, 0.95))
    for text, what in [("betta: 0.2\n", "'betta'"), ("epochs: 1.5\n", "epochs: expected an integer"),
                       ("lora: yes please\n", "lora: expected true or false"),
                       ("label_smoothing: 0.7\n", "label_smoothing=0.7: must be in [0, 0.5)")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=re.escape(what)) as e:
            load_config(bad)
        assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value)
    assert all(f.metadata.get("help") for f in dataclasses.fields(StepDPOConfig))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.beta = 1.0


def test_cli_train_dpo(policy, tmp_path, capsys):
    from treesearch.commands import train as train_cmd

    model, tok = policy
    policy_dir = tmp_path / "policy"
    model.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs(tok, 4))
    (tmp_path / "c.yaml").write_text("beta: 0.2\nbatch_size: 2\n")
    parser = argparse.ArgumentParser(prog="treesearch")
    train_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-dpo", "--pairs", str(pairs), "--model", str(policy_dir), "--out",
                              str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml"), "--epochs", "2",
                              "--no-progress", "--learning-rate", "1e-3"])
    assert args.func(args) == 0
    assert "trained: 4 steps on 4 pairs" in capsys.readouterr().out
    info = json.loads((tmp_path / "out" / "model" / "train_result.json").read_text())
    assert info["config"]["beta"] == 0.2 and info["config"]["epochs"] == 2 and info["config"]["batch_size"] == 2

    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "p", "chosen": "a"}'])
    args = parser.parse_args(["train-dpo", "--pairs", str(bad), "--model", str(policy_dir), "--out",
                              str(tmp_path / "o2")])
    with pytest.raises(ValueError, match=re.escape(f"{bad}:1: missing required field 'rejected'")):
        args.func(args)
