"""Peak memory and speed of our Step-DPO trainer against TRL's DPOTrainer at a real vocabulary.

    .venv/bin/python bench/trainer_memory.py [--lengths 1024,2048] [--pairs 4] [--batch-size 2]

The model is a randomly initialised Qwen2 (Qwen2ForCausalLM) with the real Qwen3 vocabulary of
151,669 tokens, hidden 256, 4 layers, 4 heads (2 KV heads), MLP 1,024, tied embeddings: 43M
parameters, 39M of them the embedding, as in small Qwen models. Token ids are random; a word-level
tokenizer over the same 151,669 entries (token k is the word ``tk``) turns them into text that both
trainers tokenize back to exactly those ids, so they see identical sequences. Each pair is a
Step-DPO pair: a prompt (problem and earlier steps) of L − 128 tokens and two 128-token steps
(EOS included; TRL always appends it), so every sequence is L = 1,024 or 2,048 tokens.

Both trainers: same weights, pairs, batch size, 1 epoch, β 0.1, lr 1e-5, no warmup, clipping at 1,
fp32 on CPU, one thread, with their memory options on: TRL ``precompute_ref_log_probs=True`` and
``gradient_checkpointing=True`` (its fused chunked LM head is always on; ``padding_free`` is
disabled in this TRL release; activation offloading is CUDA-only); ours ``gradient_checkpointing``
with its defaults (prompt packing, reference pass once, chunked selected-token log-probs).

Memory: each (trainer, length) runs in its own fresh subprocess, which first imports the same
modules (torch, transformers, trl, datasets, peft, treesearch), then loads the model and runs the
whole training call; the peak is the process's peak resident set size (``ru_maxrss``), which counts
every allocation torch makes on CPU. ``*_peak_gib`` is that peak; ``*_train_gib`` the part above the
RSS just before the training call (model loaded), i.e. what training itself added.
``peak_mem_ratio_vs_trl`` is ours ÷ TRL's peak at the longest length. Speed: pairs per second of
the training call (tokenization, reference pass, updates; ours also writes its final model).

``loss_abs_diff``: |ours − TRL's| first-batch loss at the shortest length, each by its own
tokenization, collation and loss code, against a reference that differs from the policy (Gaussian
noise added). ``fsdp_weight_diff``: the same model trained 2 steps with FSDP2 on 2 gloo ranks
(torchrun) against one process on the same global batches (8 pairs of 256 tokens, batch 4), the
largest absolute weight difference. ``mem_estimate_gib``: our formula's estimate for our run at
the longest length (`treesearch.train.memory`), next to the measurement.

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = 151_669
STEP = 128
SPECIAL = {"<pad>": VOCAB - 2, "<eos>": VOCAB - 1}


def build_model_dir(path: Path) -> None:
    """The Qwen2 model with the Qwen3 vocabulary and its word-level tokenizer, saved to `path`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=1024, max_position_embeddings=4096,
                      tie_word_embeddings=True, pad_token_id=SPECIAL["<pad>"], eos_token_id=SPECIAL["<eos>"])
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    vocab = {f"t{k}": k for k in range(VOCAB - 2)} | SPECIAL
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
    tok.save_pretrained(path)


def load(model_dir: str):
    """(model fp32, tokenizer). The tokenizer is loaded by its own class: AutoTokenizer would pick the
    architecture's BPE tokenizer class for a Qwen2 directory and ignore the word-level vocabulary."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    import torch

    return (AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            PreTrainedTokenizerFast.from_pretrained(model_dir))


def make_pairs(n: int, length: int, seed: int) -> list[dict]:
    """n Step-DPO pairs of `length` tokens per sequence (prompt + a 128-token step, EOS included)."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(f"t{rng.randrange(VOCAB - 2)}" for _ in range(k))

    return [{"prompt": words(length - STEP), "chosen": " " + words(STEP - 1), "rejected": " " + words(STEP - 1),
             "chosen_eos": True, "rejected_eos": True} for _ in range(n)]


def _imports() -> None:
    """The same libraries in every child, so the processes' baselines match."""
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers
    import trl  # noqa: F401

    import treesearch.train.trainer  # noqa: F401

    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _rss() -> float:
    import psutil

    return psutil.Process().memory_info().rss


def child_ours(model_dir: str, pairs: list[dict], batch: int) -> dict:
    from treesearch.train import StepDPOConfig, train_step_dpo

    model, tok = load(model_dir)
    cfg = StepDPOConfig(beta=0.1, learning_rate=1e-5, epochs=1, batch_size=batch, warmup_ratio=0.0,
                        max_grad_norm=1.0, save_steps=0, progress=False, device="cpu", seed=0, max_length=4096,
                        gradient_checkpointing=True)
    before = _rss()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        result = train_step_dpo(model, pairs, cfg, d, tokenizer=tok)
        sec = time.perf_counter() - t
    return {"seconds": sec, "rss_before": before, "loss": result.metrics["train/loss_mean"]}


def trl_config(out: str, batch: int, *, precompute: bool = True):
    from trl import DPOConfig

    return DPOConfig(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, beta=0.1,
                     learning_rate=1e-5, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
                     use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
                     precompute_ref_log_probs=precompute, precompute_ref_batch_size=batch, disable_tqdm=True,
                     dataloader_num_workers=0, seed=0, max_length=4096, gradient_checkpointing=True)


def child_trl(model_dir: str, pairs: list[dict], batch: int) -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer

    model, tok = load(model_dir)
    before = _rss()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        trainer = DPOTrainer(model=model, args=trl_config(d, batch), train_dataset=Dataset.from_list(pairs),
                             processing_class=tok)
        trainer.remove_callback(PrinterCallback)
        out = trainer.train()
        sec = time.perf_counter() - t
    return {"seconds": sec, "rss_before": before, "loss": out.training_loss}


def child_loss(model_dir: str, pairs: list[dict], batch: int) -> dict:
    """First-batch loss, ours and TRL's, against a perturbed reference."""
    import torch
    from datasets import Dataset
    from trl import DPOTrainer

    from treesearch.train import StepDPOConfig
    from treesearch.train.data import as_pairs, collate, tokenize_pairs
    from treesearch.train.trainer import reference_logps, sequence_logps, step_dpo_objective

    base, tok = load(model_dir)
    ref = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    first = pairs[:batch]
    tp = tokenize_pairs(as_pairs(first), tok, max_length=4096)
    ref_w, ref_l, _ = reference_logps(ref, tp, batch_size=batch, pad_id=tok.pad_token_id, device="cpu")
    with torch.no_grad():
        logp, ntok = sequence_logps(base, collate(tp, list(range(batch)), tok.pad_token_id, packed=True))
        ours = step_dpo_objective(logp, ntok, ref_w, ref_l, StepDPOConfig(beta=0.1))[0].item()
    with tempfile.TemporaryDirectory() as d:
        trainer = DPOTrainer(model=copy.deepcopy(base), ref_model=ref, args=trl_config(d, batch, precompute=False),
                             train_dataset=Dataset.from_list(first), processing_class=tok)
        inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(batch)])
        with torch.no_grad():
            theirs = trainer.compute_loss(trainer.model, inputs).item()
    return {"ours": ours, "trl": theirs}


FSDP_CFG = dict(beta=0.1, learning_rate=5e-4, epochs=1, batch_size=4, warmup_ratio=0.0, save_steps=0, progress=False,
                device="cpu", max_length=4096, sharding="fsdp", gradient_checkpointing=True)


def child_fsdp_rank(model_dir: str, pairs: list[dict], out: str) -> dict:
    """One training process: alone, or one rank of a torchrun job (train_step_dpo joins it)."""
    from treesearch.train import StepDPOConfig, train_step_dpo

    model, tok = load(model_dir)
    result = train_step_dpo(model, pairs, StepDPOConfig(**FSDP_CFG), out, tokenizer=tok)
    return {"steps": result.steps}


def child_fsdp(model_dir: str, work: str) -> dict:
    """2 FSDP ranks (torchrun, gloo) against 1 process on the same global batches: max |weight diff|."""
    from safetensors.torch import load_file

    pairs = make_pairs(8, 256, seed=7)
    one = child_fsdp_rank(model_dir, pairs, str(Path(work) / "one"))
    spec = Path(work) / "fsdp_spec.json"
    spec.write_text(json.dumps({"model_dir": model_dir, "pairs": pairs, "out": str(Path(work) / "two")}))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    __file__, "--child", "fsdp_rank", "--spec", str(spec)], check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)), timeout=900)
    a = load_file(str(Path(work) / "one" / "model" / "model.safetensors"))
    b = load_file(str(Path(work) / "two" / "model" / "model.safetensors"))
    base = load_file(str(Path(model_dir) / "model.safetensors"))
    common = sorted(set(a) & set(b) & set(base))
    diff = max((a[k] - b[k]).abs().max().item() for k in common)
    moved = max((a[k] - base[k]).abs().max().item() for k in common)
    return {"diff": diff, "moved": moved, "steps": one["steps"], "keys": len(common)}


def run_child(kind: str, args, **kw) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(kw, fh)
        spec = fh.name
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--spec", spec], env=env,
                          capture_output=True, text=True)
    os.unlink(spec)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    _imports()
    fn = {"ours": child_ours, "trl": child_trl, "loss": child_loss, "fsdp": child_fsdp,
          "fsdp_rank": child_fsdp_rank}[kind]
    out = fn(**spec)
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    print(json.dumps(out))


def estimate_ours(model_dir: str, pairs: list[dict], batch: int) -> float:
    from transformers import AutoConfig

    from treesearch.train import StepDPOConfig, memory

    cfg = StepDPOConfig(batch_size=batch, gradient_checkpointing=True, device="cpu")
    width = len(pairs[0]["prompt"].split()) + 2 * STEP
    shape = memory.ModelShape.from_hf_config(AutoConfig.from_pretrained(model_dir))
    return memory.estimate(shape, cfg, rows=batch, width=width, packed=True, device="cpu").total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1024,2048")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--no-fsdp", action="store_true", help="skip the 2-rank FSDP check")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child, args.spec)
        return
    lengths = [int(x) for x in args.lengths.split(",")]
    gib = 2 ** 30
    result: dict = {"vocab": VOCAB, "hidden": 256, "layers": 4, "step_tokens": STEP, "pairs": args.pairs,
                    "batch_size": args.batch_size, "seq_lengths": lengths, "device": "cpu", "threads": 1}
    with tempfile.TemporaryDirectory() as work:
        model_dir = str(Path(work) / "model")
        build_model_dir(Path(model_dir))
        from transformers import AutoConfig

        from treesearch.train.memory import ModelShape

        result["params"] = ModelShape.from_hf_config(AutoConfig.from_pretrained(model_dir)).params
        for length in lengths:
            pairs = make_pairs(args.pairs, length, seed=length)
            for side in ("trl", "ours"):
                r = run_child(side, args, model_dir=model_dir, pairs=pairs, batch=args.batch_size)
                result[f"{side}_peak_gib_{length}"] = round(r["peak_rss"] / gib, 3)
                result[f"{side}_train_gib_{length}"] = round((r["peak_rss"] - r["rss_before"]) / gib, 3)
                result[f"{side}_pairs_per_s_{length}"] = round(args.pairs / r["seconds"], 4)
                result[f"{side}_train_loss_{length}"] = r["loss"]
                print(f"{side:4s} L={length}: peak {r['peak_rss'] / gib:.2f} GiB (training added "
                      f"{(r['peak_rss'] - r['rss_before']) / gib:.2f}), {r['seconds']:.1f} s, "
                      f"{args.pairs / r['seconds']:.3f} pairs/s, loss {r['loss']:.5f}", flush=True)
        longest = max(lengths)
        result["mem_estimate_gib"] = round(estimate_ours(model_dir, make_pairs(1, longest, 0), args.batch_size)
                                           / gib, 3)
        loss = run_child("loss", args, model_dir=model_dir, pairs=make_pairs(args.batch_size, min(lengths), 99),
                         batch=args.batch_size)
        result.update(first_batch_loss_ours=loss["ours"], first_batch_loss_trl=loss["trl"],
                      loss_abs_diff=abs(loss["ours"] - loss["trl"]))
        if not args.no_fsdp:
            f = run_child("fsdp", args, model_dir=model_dir, work=work)
            result.update(fsdp_weight_diff=f["diff"], fsdp_weight_change=f["moved"], fsdp_steps=f["steps"])
    result["peak_mem_ratio_vs_trl"] = round(result[f"ours_peak_gib_{longest}"] / result[f"trl_peak_gib_{longest}"], 3)
    result["train_mem_ratio_vs_trl"] = round(result[f"ours_train_gib_{longest}"]
                                             / result[f"trl_train_gib_{longest}"], 3)
    result["speedup_vs_trl"] = round(result[f"ours_pairs_per_s_{longest}"] / result[f"trl_pairs_per_s_{longest}"], 3)
    for length in lengths:
        result[f"peak_mem_ratio_vs_trl_{length}"] = round(result[f"ours_peak_gib_{length}"]
                                                          / result[f"trl_peak_gib_{length}"], 3)
        result[f"speedup_vs_trl_{length}"] = round(result[f"ours_pairs_per_s_{length}"]
                                                   / result[f"trl_pairs_per_s_{length}"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
