"""Benchmark cutting sampled solutions into steps (`split_completion`) on the real Qwen3 tokenizer.

The loop's search starts every tree from whole sampled solutions (`root_samples`) and Monte-Carlo
rollouts are whole solutions too; each is cut into steps at the first token whose text closes the
step delimiter. The definition decodes the step so far after every token, which is quadratic in a
step's length: nothing on the embedded policy (steps of a few tokens), but a real model's
2k-token solution with long lines is decoded millions of tokens over. `split_completion` tests
each token on the decode of the step's last few ids only. Both run here on the same completions,
and their pieces are checked equal:

* ``one_line``: one 2,000-token line (no delimiter: code, or prose without line breaks);
* ``paragraphs``: 2,000 tokens in paragraphs of about 300 tokens (a chain of thought);
* ``lines``: 2,000 tokens in short lines of about 15 tokens (arithmetic steps).

    .venv/bin/python bench/split.py [--tokens 2000] [--repeat 3]

Last line: JSON ``{"tokens", "<shape>_ms", "<shape>_baseline_ms", "<shape>_speedup" for each shape}``
(best of --repeat runs, milliseconds per completion).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def whole_decode_split(backend, comp, delimiter: str):
    """The definition, as it was implemented: decode the whole step after every token."""
    pieces, cur = [], []
    for tok in comp.token_ids:
        cur.append(int(tok))
        text = backend.decode(cur)
        if delimiter in text:
            pieces.append((text, cur))
            cur = []
    return pieces + ([(backend.decode(cur), cur)] if cur else [])


def completion(tok, n_tokens: int, line_tokens: int | None):
    """A completion of `n_tokens` real Qwen3 ids: arithmetic prose with a newline every ~line_tokens."""
    from treesearch.backends.base import Completion

    ids: list[int] = []
    i = 0
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    while len(ids) < n_tokens:
        line: list[int] = []
        while len(line) < (line_tokens or n_tokens) and len(ids) + len(line) < n_tokens:
            line += tok(f" so {i} plus {7 * i} gives {8 * i},", add_special_tokens=False)["input_ids"]
            i += 1
        ids += line[: n_tokens - len(ids)]
        if line_tokens and len(ids) < n_tokens:
            ids += newline
    ids = ids[:n_tokens]
    return Completion(text=tok.decode(ids), token_ids=tuple(ids), logprobs=(), finish_reason="length")


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from treesearch.backends.hf import HFBackend
    from treesearch.rewards.omega import split_completion
    from treesearch.testing_models import MODELS, tiny_model

    model, tok = tiny_model("qwen3", seed=0)  # the real tokenizer; the model only carries it
    backend = HFBackend.from_model(model, tok, template=MODELS["qwen3"].template)
    out: dict = {"tokens": args.tokens}
    for shape, line_tokens in (("one_line", None), ("paragraphs", 300), ("lines", 15)):
        comp = completion(tok, args.tokens, line_tokens)
        fast = split_completion(backend, comp, "\n")
        if fast != whole_decode_split(backend, comp, "\n"):
            raise SystemExit(f"bench/split.py: {shape}: the windowed split differs from the definition")
        out[f"{shape}_ms"] = round(best_ms(lambda: split_completion(backend, comp, "\n"), args.repeat), 1)
        out[f"{shape}_baseline_ms"] = round(best_ms(lambda: whole_decode_split(backend, comp, "\n"), args.repeat), 1)
        out[f"{shape}_speedup"] = round(out[f"{shape}_baseline_ms"] / out[f"{shape}_ms"], 1)
        print(f"{shape}: {len(fast)} steps, {out[f'{shape}_ms']} ms against {out[f'{shape}_baseline_ms']} ms", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
