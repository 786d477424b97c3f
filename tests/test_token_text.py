"""Text <-> ids on the real Qwen3, Llama-3 and SentencePiece tokenizers (`treesearch.backends.text`).

Seeded random cases (hypothesis is not installed): texts built from pieces real tokenizers merge
(``":\\n\\n"``, whitespace runs, digits, multi-byte characters), and raw random id sequences, which
is what a model samples (special tokens, lone UTF-8 bytes, byte-fallback tokens).
"""
import random
import unicodedata

import pytest

from treesearch.backends.text import StreamDecoder, TokenText, bos_ids, end_token_ids, expects_bos, find_stop, pad_id
from treesearch.prompting import encode_prompt

NAMES = ("qwen3", "llama3", "llama2")
PIECES = ["1", "23", "456", "7890", " ", "  ", "    ", "\n", "\n\n", "\n\n\n", ":\n\n", ")\n", ".\n", " + ", "=",
          "Answer: ", "é", "日本語", "😀", "naïve", "\t", "x", "The", " answer", "ünï", "—", "½", "\r\n", " 12", "$",
          "\\frac{1}{2}", "€", "🧮🧮"]


def texts(seed: int, n: int):
    rng = random.Random(seed)
    return [unicodedata.normalize("NFC", "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14))))
            for _ in range(n)]


def random_ids(tok, seed: int, n: int, length: int = 40):
    rng = random.Random(seed)
    return [[rng.randrange(len(tok)) for _ in range(rng.randint(1, length))] for _ in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_decode_is_additive_on_character_boundaries(real_tokenizers, name):
    tok = real_tokenizers[name]
    tt = TokenText(tok)
    for text in texts(0, 150):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        whole = tt.decode(ids)
        if name != "llama2":  # byte-level BPE round-trips exactly
            assert whole == text
        for k in range(len(ids) + 1):
            left, right = tt.decode(ids[:k]), tt.decode(ids[k:])
            if "\ufffd" not in left + right:  # a split inside a character shows U+FFFD on both sides
                assert left + right == whole, (text, k)


def test_sentencepiece_keeps_the_leading_space_plain_decode_drops(real_tokenizers):
    """Why `TokenText` exists: the SentencePiece decoder strips the first ``▁``, so joining the plain
    decodes of two steps loses a space."""
    tok = real_tokenizers["llama2"]
    ids = tok("x = 3 and the answer", add_special_tokens=False)["input_ids"]
    k = next(i for i in range(1, len(ids)) if tok.convert_ids_to_tokens(ids[i]).startswith("▁"))
    plain = tok.decode(ids[:k]) + tok.decode(ids[k:])
    assert plain != tok.decode(ids)
    tt = TokenText(tok)
    assert tt.decode(ids[:k]) + tt.decode(ids[k:]) == tt.decode(ids)


@pytest.mark.parametrize("name", NAMES)
def test_stream_decoder_equals_decode_at_every_token(real_tokenizers, name):
    tok = real_tokenizers[name]
    tt = TokenText(tok)
    cases = [tok(t, add_special_tokens=False)["input_ids"] for t in texts(1, 40)] + random_ids(tok, 2, 60)
    held_back = 0
    for ids in cases:
        stream = StreamDecoder(tt)
        for k, t in enumerate(ids, 1):
            stream.push(t)
            full = tt.decode(ids[:k])
            # held back: only an incomplete character (shown as U+FFFD); SentencePiece's byte fallback
            # may show a whole byte run as U+FFFD while its last character is incomplete
            assert full == stream.text or (full.startswith(stream.text) and "\ufffd" in full[len(stream.text):]) \
                or (name == "llama2" and "\ufffd" in full), (ids, k)
            held_back += full != stream.text
        assert stream.finish() == tt.decode(ids)
    assert held_back > 0  # the random ids did split characters


@pytest.mark.parametrize("name", NAMES)
def test_stop_in_the_new_tail_is_the_first_token_completing_it(real_tokenizers, name):
    """The backend's rule: stop at the first token after which the decoded text contains a stop string,
    found by searching only the tail the token added."""
    tok = real_tokenizers[name]
    tt = TokenText(tok)
    stops = ("\n", "Answer:")
    cases = [tok(t, add_special_tokens=False)["input_ids"] for t in texts(3, 80)] + random_ids(tok, 4, 40)
    found = 0
    for ids in cases:
        brute = next((k for k in range(1, len(ids) + 1) if find_stop(tt.decode(ids[:k]), stops) is not None), None)
        stream, at = StreamDecoder(tt), None
        for k, t in enumerate(ids, 1):
            seen = len(stream.text)
            if stream.push(t) and find_stop(stream.text, stops, seen - max(map(len, stops)) + 1) is not None:
                at = k
                break
        assert at == brute, ids
        found += at is not None
    assert found > 20


def test_end_tokens_cover_generation_config_and_chat_template(real_tokenizers):
    qwen, llama3, llama2 = (real_tokenizers[n] for n in NAMES)
    assert end_token_ids(qwen) == {151645}  # <|im_end|>: the tokenizer's EOS and the template's end of turn
    assert end_token_ids(qwen, {"eos_token_id": [151645, 151643]}) == {151645, 151643}
    # Llama-3's tokenizer EOS is <|end_of_text|>; its chat template ends a turn with <|eot_id|>
    assert end_token_ids(llama3) == {128001, 128009}
    assert end_token_ids(llama3, {"eos_token_id": 128008}) == {128001, 128008, 128009}
    assert end_token_ids(llama2) == {2}


def test_bos_once_and_no_pad_assumption(real_tokenizers):
    qwen, llama3, llama2 = (real_tokenizers[n] for n in NAMES)
    fmt = "Question: {prompt}\nAnswer:\n"
    assert not expects_bos(qwen) and encode_prompt(qwen, "2+2?", fmt)[0] != qwen.pad_token_id
    for tok in (llama3, llama2):
        assert expects_bos(tok)
        ids = encode_prompt(tok, "2+2?", fmt)
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert bos_ids(tok, ids) == ids  # never twice
    chat = encode_prompt(llama3, "2+2?")  # the chat template writes <|begin_of_text|> itself
    assert chat[0] == 128000 and chat.count(128000) == 1
    assert llama3.pad_token_id is None and pad_id(llama3) == llama3.eos_token_id


def test_missing_tokenizer_cache_fails_with_the_command_to_run(tmp_path, monkeypatch):
    from treesearch.testing_models import FixtureMissing, load_tokenizer, tokenizer_dir

    good = tokenizer_dir("llama2")
    monkeypatch.setenv("TREESEARCH_CACHE", str(tmp_path))
    with pytest.raises(FixtureMissing, match="scripts/fetch_tokenizers.py"):
        load_tokenizer("qwen3")
    # a copy whose checksum stamp is not the pinned one counts as missing too
    fake = tmp_path / "tokenizers" / good.name
    fake.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (fake / f).write_bytes((good / f).read_bytes())
    (fake / "SHA256").write_text("0" * 64 + "\n")
    with pytest.raises(FixtureMissing, match="not cached"):
        tokenizer_dir("llama2")
    (fake / "SHA256").write_text((good / "SHA256").read_text())
    assert tokenizer_dir("llama2") == fake
