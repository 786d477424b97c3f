"""Train the embedded default policy from scratch: tokenizer, tiny Qwen2 model, SFT.

`treesearch bootstrap --out DIR` builds, from a seed and nothing downloaded:

1. a byte-level BPE tokenizer (digits split one per token, as Qwen and Llama do)
   with a Qwen-style chat template and special tokens ``<|im_start|>``,
   ``<|im_end|>`` (EOS) and ``<|endoftext|>`` (padding), trained on text of the
   built-in task families;
2. a small `Qwen2ForCausalLM` (the architecture of Qwen2.5-Math), trained by
   supervised fine-tuning on reference solutions of the arithmetic family,
   loss on the assistant turn only.

Training stops early, on purpose: the default must be *improvable by search*
(greedy accuracy on held-out 3-operation problems in 15-50%, pass@16 at least
twice that). The script evaluates greedy accuracy on a fixed held-out set every
`eval_every` steps and keeps the first checkpoint that lands inside the target
band, after the learning-rate schedule has passed `min_step`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path

from treesearch.io import atomic_write_text

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
    out: str = "treesearch/assets/policy"
    seed: int = 0
    vocab_size: int = 384
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    eval_every: int = 50
    eval_problems: int = 400
    min_step: int = 300
    target_low: float = 0.22
    target_high: float = 0.32
    threads: int = 1


def tokenizer_corpus(seed: int) -> list[str]:
    """Text the tokenizer is fitted on: solutions of the task families plus template words."""
    from tasks.arithmetic import ArithmeticTask

    task = ArithmeticTask()
    texts = []
    for p in task.problems("train", 3000, seed=seed):
        texts.append(f"user\n{p.prompt}\nassistant\n{p.solution}\n")
    texts += [
        "system\nYou are a careful solver. Think step by step.\n",
        "Solve for x: 3x + 5 = 20\nx = 5\nAnswer: 5\n",
        "Use the numbers 3 4 6 8 to make 24\n8/4=2\n6*2=12\n",
        "def f(x):\n    return x + 1\nassert f(1) == 2\n",
        "Is the step correct? Yes No\nThe answer is \\boxed{42}\n",
    ]
    return texts


def build_tokenizer(seed: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=512,
    )


def build_model(cfg: BootstrapConfig, tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def encode_example(tokenizer, prompt: str, solution: str) -> tuple[list[int], list[int]]:
    """Token ids of template(prompt) + solution + EOS, and labels (-100 on the prompt)."""
    from treesearch.prompting import render_prompt

    p_ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + c_ids, [-100] * len(p_ids) + c_ids


def _batch(examples, pad_id):
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):  # right padding for training
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask


def greedy_accuracy(model, tokenizer, problems, batch_size: int = 100) -> float:
    """Held-out greedy accuracy with the engine's own HF backend."""
    from tasks.arithmetic import ArithmeticTask
    from treesearch.backends.base import SamplingParams
    from treesearch.backends.hf import HFBackend

    backend = HFBackend.from_model(model, tokenizer, prefix_cache_tokens=0, max_batch=batch_size)
    task = ArithmeticTask()
    params = SamplingParams(temperature=0.0, max_tokens=96)
    outs = backend.generate([backend.encode_prompt(p.prompt) for p in problems], params)
    return sum(task.score(p, o[0].text) for p, o in zip(problems, outs)) / len(problems)


def lr_at(cfg: BootstrapConfig, step: int) -> float:
    """Linear warm-up over `cfg.warmup` steps, then cosine decay to 0 at `cfg.steps`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def save_policy(model, tokenizer, out: Path) -> None:
    """The checkpoint as `load_policy` reads it: weights (safetensors), tokenizer, and a generation config
    that decodes greedily up to 96 new tokens."""
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=96
    ).save_pretrained(out)


def train(cfg: BootstrapConfig) -> dict:
    import torch
    from tqdm import tqdm

    from tasks.arithmetic import ArithmeticTask

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    t0 = time.time()
    tokenizer = build_tokenizer(cfg.seed, cfg.vocab_size)
    model = build_model(cfg, tokenizer)
    task = ArithmeticTask()
    n_train = cfg.steps * cfg.batch_size
    train_set = task.problems("train", min(n_train, 200_000), seed=cfg.seed)
    data = [encode_example(tokenizer, p.prompt, p.solution) for p in train_set]
    held_out = task.problems("test", cfg.eval_problems, seed=cfg.seed + 1000, n_ops=3)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    history, chosen = [], None
    bar = tqdm(range(cfg.steps), desc="bootstrap", dynamic_ncols=True)
    for step in bar:
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        ids, labels, mask = _batch(rng.sample(data, cfg.batch_size), tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % cfg.eval_every == 0:
            model.eval()
            acc = greedy_accuracy(model, tokenizer, held_out)
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "greedy_acc_3op": acc})
            bar.write(json.dumps(history[-1]))
            if step + 1 >= cfg.min_step and cfg.target_low <= acc <= cfg.target_high:
                chosen = step + 1
                break
    model.eval()
    out = Path(cfg.out)
    save_policy(model, tokenizer, out)
    report = {
        "config": dataclasses.asdict(cfg),
        "chosen_step": chosen,
        "train_seconds": round(time.time() - t0, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
    }
    atomic_write_text(out / "bootstrap_report.json", json.dumps(report, indent=2) + "\n")
    return report
