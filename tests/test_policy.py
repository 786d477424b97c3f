"""The embedded default: offline load through the standard Auto classes, tokenizer, template, size."""
import os
from pathlib import Path

import pytest

from treesearch.policy import EMBEDDED, PolicyError, load_policy, resolve


def test_loads_offline_with_auto_classes():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    tok = AutoTokenizer.from_pretrained(EMBEDDED)
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED)
    assert model.config.model_type in ("qwen2", "llama")
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == model.config.eos_token_id
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert (Path(EMBEDDED) / "tokenizer.json").is_file()


def test_checkpoint_is_small_enough_to_commit():
    size = sum(f.stat().st_size for f in Path(EMBEDDED).iterdir())
    assert size < 20 * 2**20, size


def test_tokenizer_round_trips_every_task_character(policy, arithmetic):
    _, tok = policy
    texts = [p.prompt + "\n" + p.solution for p in arithmetic.problems("test", 200, seed=0)]
    chars = sorted(set("".join(texts)) | set("0123456789+-*/=?:()., \n\tAnswerQx^{}[]<>\\$#'\"_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    for text in texts[:50] + ["".join(chars)] + chars:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    digits = tok("12345", add_special_tokens=False)["input_ids"]
    assert len(digits) == 5  # digits are split one per token, as Qwen and Llama do


def test_chat_template_and_special_tokens(policy):
    _, tok = policy
    text = tok.apply_chat_template([{"role": "user", "content": "Q: 1+2=?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nQ: 1+2=?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    assert tok.eos_token_id in ids


def test_seeded_generation_is_deterministic(policy, arithmetic):
    import torch

    model, tok = policy
    ids = tok.apply_chat_template([{"role": "user", "content": arithmetic.problems("test", 1)[0].prompt}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(model.generate(**ids, do_sample=True, max_new_tokens=30, pad_token_id=tok.pad_token_id).tolist())
    torch.manual_seed(8)
    other = model.generate(**ids, do_sample=True, max_new_tokens=30, pad_token_id=tok.pad_token_id).tolist()
    assert outs[0] == outs[1]
    greedy = [model.generate(**ids, do_sample=False, max_new_tokens=60).tolist() for _ in range(2)]
    assert greedy[0] == greedy[1]
    assert outs[0] != other or outs[0] != greedy[0]


def test_bootstrap_report_records_the_target_band():
    import json

    report = json.loads((Path(EMBEDDED) / "bootstrap_report.json").read_text())
    acc = report["history"][-1]["greedy_acc_3op"]
    assert 0.15 <= acc <= 0.5
    assert report["train_seconds"] > 0


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        resolve(tmp_path / "nope")
    with pytest.raises(PolicyError, match="no config.json"):
        resolve(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PolicyError, match="no weights"):
        resolve(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PolicyError, match="cannot load checkpoint"):
        load_policy(tmp_path)
