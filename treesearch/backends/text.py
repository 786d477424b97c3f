"""Where text meets token ids: the pieces every backend shares, exact on real tokenizers.

Real tokenizers break three naive assumptions, and each piece here answers one:

* **Tokens merge across a stop string.** Qwen's and Llama-3's byte-level BPE has tokens like
  ``":\\n\\n"``; a step that stops at ``"\\n"`` ends *inside* one. A completion therefore keeps
  whole tokens and its text is their decode (`find_stop` says at which token to stop; the text
  may run past the stop string by the rest of that token: ``"1:\\n\\n"``).
* **Decoding is not additive.** SentencePiece decoders (Llama-2, Mistral) drop the ``▁`` space of
  the first token of whatever they decode, and byte-level BPE can split one UTF-8 character over
  two tokens. `TokenText.decode` gives the text ids add *after* other text (the space kept), so a
  path's text is the concatenation of its steps' texts; `StreamDecoder` emits text token by token,
  holding back an incomplete character, and ends equal to `TokenText.decode` of all its ids.
* **More than one token ends a turn.** `end_token_ids` collects the tokenizer's EOS, every id of
  the model's ``generation_config.eos_token_id`` (an int or a list: Qwen2.5 and Llama-3 have two)
  and the chat template's end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, ...).

Also here: `bos_ids` (the BOS a tokenizer expects in front of a prompt, never twice) and
`pad_id` (a filler id for padded positions, without assuming the tokenizer has a pad token).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

# End-of-turn markers of the chat templates in use; whichever the tokenizer has ends a completion.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
_REPLACEMENT = "\ufffd"  # what decoding shows for an incomplete UTF-8 character


def _as_ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _generation_eos(generation_config) -> list[int]:
    """eos_token_id of a GenerationConfig, a dict, or a checkpoint directory's generation_config.json."""
    if generation_config is None:
        return []
    if isinstance(generation_config, (str, Path)):
        path = Path(generation_config)
        path = path / "generation_config.json" if path.is_dir() else path
        if not path.is_file():
            return []
        generation_config = json.loads(path.read_text())
    if isinstance(generation_config, dict):
        return _as_ids(generation_config.get("eos_token_id"))
    return _as_ids(getattr(generation_config, "eos_token_id", None))


def end_token_ids(tokenizer, generation_config=None) -> frozenset[int]:
    """Every id that ends a completion with finish reason "eos".

    `generation_config`: a `transformers.GenerationConfig`, a dict, or a checkpoint directory (its
    generation_config.json); None uses the tokenizer's alone. The chat template's end-of-turn token
    counts only when the tokenizer has it as a single token and the template uses it."""
    ids = set(_as_ids(tokenizer.eos_token_id)) | set(_generation_eos(generation_config))
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates
        template = "".join(template.values())
    vocab = tokenizer.get_vocab()
    for marker in END_OF_TURN:
        if marker in template and marker in vocab:
            ids.add(int(vocab[marker]))
    if not ids:
        raise ValueError("the tokenizer has no eos_token_id and no end-of-turn token; nothing can end a completion")
    return frozenset(ids)


def pad_id(tokenizer) -> int:
    """An id to fill padded positions with. Padding is always masked, so any valid id works; this
    never sets a pad token on the tokenizer (Llama-3 has none, and a saved tokenizer must not gain one)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def expects_bos(tokenizer) -> bool:
    """Does the model want its BOS token in front of every prompt?

    Yes when its encoder adds BOS by itself (Llama-2), or when it has a BOS token distinct from
    EOS (Llama-3: a tokenizer.json may lack the template that adds it). GPT-2's BOS is its EOS and
    is never wanted; Qwen has none. (transformers 5 does not keep tokenizer_config's
    ``add_bos_token``, so it cannot be read back.)"""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    if tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]:
        return True
    return bos not in _as_ids(tokenizer.eos_token_id)


def bos_ids(tokenizer, ids: Sequence[int]) -> list[int]:
    """`ids` with the BOS the tokenizer expects in front; unchanged when it expects none or
    `ids` already start with it (a chat template that writes it itself)."""
    ids = list(ids)
    if expects_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        return [int(tokenizer.bos_token_id)] + ids
    return ids


class TokenText:
    """Exact, additive text of token ids for one tokenizer.

    ``decode(ids)`` is the text `ids` add when they follow other tokens: special tokens are not
    shown, no clean-up of spaces, and a SentencePiece ``▁`` on the first token stays a space
    (decoded after an anchor token whose text is then cut off). So for a split a + b on a
    character boundary, ``decode(a + b) == decode(a) + decode(b)``: a path's text is the join
    of its steps' texts. Tokenizers whose plain decode is already additive skip the anchor."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._anchor: list[int] = []
        self._anchor_text = ""
        self._holding: dict[str, frozenset[int] | None] = {}  # ids_holding, per character
        anchor = list(tokenizer("a", add_special_tokens=False)["input_ids"])
        anchor_text = self._plain(anchor)
        for probe in (" b", " 1", "\n c", " ."):
            ids = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
            if self._plain(anchor + ids) != anchor_text + self._plain(ids):
                self._anchor, self._anchor_text = anchor, anchor_text
                break

    def ids_holding(self, char: str) -> frozenset[int] | None:
        """The ids whose own text holds `char` (special tokens hidden), from one batch decode of the
        vocabulary in the fast tokenizer's Rust core, made once per character. Every token whose bytes
        hold an ASCII character is among them (that byte decodes alone). None where that does not hold
        or cannot be known: a non-ASCII character, a space (a lone SentencePiece token drops its ``▁``),
        a tokenizer without a Rust core."""
        if char not in self._holding:
            rust = getattr(self.tokenizer, "backend_tokenizer", None)
            exact = rust is not None and char.isascii() and char != " "
            texts = rust.decode_batch([[i] for i in range(len(self.tokenizer))], skip_special_tokens=True) if exact else None
            self._holding[char] = None if texts is None else frozenset(i for i, t in enumerate(texts) if char in t)
        return self._holding[char]

    def _plain(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(t) for t in ids]
        if not self._anchor or not ids:
            return self._plain(ids)
        text = self._plain(self._anchor + ids)
        assert text.startswith(self._anchor_text), "the anchor token's text changed in context"
        return text[len(self._anchor_text):]


class StreamDecoder:
    """Text of a growing id sequence, one token at a time, in O(new tokens) per token.

    `push` returns the text the new token completes ("" while a UTF-8 character is still
    incomplete); `text` is everything emitted so far: complete characters, a prefix
    of ``decode(ids)`` except where a later byte spoils a byte-fallback run (see `finish`), and
    ``finish()`` returns exactly ``decode(ids)`` (an incomplete tail shown as U+FFFD). Only a
    short window is decoded per token: ids[prefix:] against ids[prefix:read], where `read` is
    where the emitted text ends and `prefix` the boundary before it (the usual incremental
    detokenization of vLLM and TGI)."""

    def __init__(self, text: TokenText):
        self._decode = text.decode
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0
        self._read = 0

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if len(after) <= len(before) or after.endswith(_REPLACEMENT):
            return ""  # nothing visible yet (special token, or a character still incomplete)
        new = after[len(before):]
        self.text += new
        self._prefix, self._read = self._read, len(self.ids)
        return new

    def finish(self) -> str:
        """``decode(ids)``, decoded once in full: exact even where the held-back tail would not
        join cleanly (SentencePiece's byte fallback shows a whole run of byte tokens as U+FFFD
        when it ends in an incomplete character, including bytes already emitted)."""
        return self._decode(self.ids)


def find_stop(text: str, stops: Iterable[str], start: int = 0) -> tuple[int, int] | None:
    """(begin, end) of the earliest stop string in ``text[start:]``, None if there is none. Call with
    ``start = len(previous text) - max(len(stop)) + 1`` to search only where a new stop can be."""
    best = None
    lo = max(0, start)
    for s in stops:
        i = text.find(s, lo)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i + len(s))
    return best
