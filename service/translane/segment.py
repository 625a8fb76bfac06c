"""Splitting a segment longer than a model's input limit at sentence boundaries, and rejoining it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Piece", "join_pieces", "split_text"]

# A sentence ends at . ! ? ; … (Latin, followed by space) or 。！？； (CJK, no
# space needed), or at a line break. The whitespace after it is kept apart so
# the translations can be rejoined with the same spacing.
_SENTENCE_END = re.compile(r"(?<=[.!?;…])\s+|(?<=[。！？；])\s*|\n+\s*")
_WORD_GAP = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a segment, and the whitespace that followed it in the original."""

    text: str
    sep: str = ""


def _units(text: str, pattern: re.Pattern[str]) -> list[Piece]:
    units: list[Piece] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() == pos and not units:
            continue
        if m.end() == m.start():
            units.append(Piece(text[pos : m.start()]))
        else:
            units.append(Piece(text[pos : m.start()], m.group()))
        pos = m.end()
    if pos < len(text):
        units.append(Piece(text[pos:]))
    return [u for u in units if u.text or u.sep]


def _hard_split(text: str, max_tokens: int, count: Callable[[str], int]) -> list[Piece]:
    # No sentence or word boundary is small enough: cut by characters, each piece the longest prefix within
    # the limit. Searched within a window (a little past the last piece's length, doubled while it fits), so a
    # piece costs counts of about its own length, not of the whole rest of the text.
    out: list[Piece] = []
    start = 0
    window = max(16, 4 * max_tokens)
    while start < len(text):
        if out:  # the next piece is likely about as long as the last
            window = max(16, len(out[-1].text) + len(out[-1].text) // 4)
        hi = min(len(text), start + window)
        while hi < len(text) and count(text[start:hi]) <= max_tokens:
            window *= 2
            hi = min(len(text), start + window)
        lo = start + 1
        while lo < hi:  # longest prefix within the limit
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append(Piece(text[start:lo]))
        start = lo
    return out


def _pack(units: list[Piece], max_tokens: int, count: Callable[[str], int]) -> list[Piece]:
    """Consecutive units joined into pieces of at most `max_tokens` where one unit fits (a larger unit stays alone).

    Each unit is counted once with the whitespace after it (a line break is a token of its own), a piece is
    filled by the sum of those counts, and the joined text is counted to confirm it, backing off by bisection
    when the sum came in low: a few counts a piece, where counting every candidate again was quadratic (a
    100,000-character segment took from 0.1 s to minutes of event-loop time, by its line breaks). The sum
    errs high by about a token a sentence, so a piece may stop a few percent short of the limit.
    """
    counts = [count(u.text + u.sep) for u in units]
    pieces: list[Piece] = []
    i = 0
    while i < len(units):
        j, total = i + 1, counts[i]
        while j < len(units) and total + counts[j] <= max_tokens:
            total += counts[j]
            j += 1
        if j - i > 1 and count(_joined(units, i, j)) > max_tokens:
            # The largest end that fits, by bisection (i + 1 always does: one unit stays whole).
            lo, hi = i + 1, j - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if count(_joined(units, i, mid)) <= max_tokens:
                    lo = mid
                else:
                    hi = mid - 1
            j = lo
        pieces.append(Piece(_joined(units, i, j), units[j - 1].sep))
        i = j
    return pieces


def _joined(units: list[Piece], start: int, end: int) -> str:
    """units[start:end] as they stood in the text, less the whitespace after the last."""
    last = end - 1
    return "".join(u.text + (u.sep if k < last else "") for k, u in enumerate(units[start:end], start))


def split_text(text: str, max_tokens: int, count: Callable[[str], int]) -> list[Piece]:
    """Split `text` into pieces of at most `max_tokens`, at sentence ends where possible."""
    if count(text) <= max_tokens:
        return [Piece(text)]
    out: list[Piece] = []
    for sentence in _pack(_units(text, _SENTENCE_END), max_tokens, count):
        if count(sentence.text) <= max_tokens:
            out.append(sentence)
            continue
        words = _pack(_units(sentence.text, _WORD_GAP), max_tokens, count)
        parts: list[Piece] = []
        for w in words:
            if count(w.text) <= max_tokens:
                parts.append(w)
                continue
            hard = _hard_split(w.text, max_tokens, count)
            hard[-1] = Piece(hard[-1].text, hard[-1].sep + w.sep)  # the space after the word stays
            parts.extend(hard)
        parts[-1] = Piece(parts[-1].text, parts[-1].sep + sentence.sep)
        out.extend(parts)
    return out


def join_pieces(pieces: list[Piece], translations: list[str]) -> str:
    """Rejoin translated pieces with the whitespace that separated the originals."""
    return "".join(t + p.sep for p, t in zip(pieces, translations, strict=True))
