"""Where each piece of text sits in its source, how the source writes it, and writing translations back there.

A piece's `form` says how its text is written in the source, so a translation goes back escaped
the way its place needs: "" as it is (plain text, Markdown); `html` HTML text with its entities and
inline tags, sent as it is (a `&` or `<` the model wrote bare is escaped on the way back, so the
XHTML stays well-formed); `attr"` / `attr'` an HTML or XML
attribute value in that quote; `xml` XML character data; `md"` `md'` `md(` a Markdown title in
those delimiters and `md[` an image's alt; `json` / `json-ascii` a JSON string token with its
quotes (non-ASCII written as is, or as \\u escapes, as the file does); `yaml` a YAML scalar,
written back double-quoted.

A piece may sit inside another (an image's alt inside a paragraph, a link's title): it is then
inside one of the outer piece's protected runs (the tag, the `](url "title")`), which the model
gave back verbatim, and is rewritten there.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._protect import runs

__all__ = ["Placed", "Span", "decode", "encode", "splice"]


class Placed(Protocol):
    """A piece of text at source[start:end], written there in `form`; `text` is what it says."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def form(self) -> str: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of text found in a source: its place, a place a person can read, how it is written, what it says."""

    start: int
    end: int
    where: str
    form: str = ""
    text: str = ""


# A `&` that starts no entity, a `<` that starts no tag, comment or end tag: the model's, not the markup's.
_BARE_AMP = re.compile(r"&(?![A-Za-z][A-Za-z0-9]*;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)")
_BARE_LT = re.compile(r"<(?![A-Za-z/!?])")
_MD_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
# What a Markdown title or alt must escape besides the backslash, by its delimiter.
_MD_SPECIAL = {'md"': '"', "md'": "'", "md(": "()", "md[": "[]"}


def decode(raw: str, form: str) -> str:
    """What the source text `raw`, written in `form`, says."""
    if form in ('attr"', "attr'", "xml"):
        return html.unescape(raw)
    if form in _MD_SPECIAL:
        return _MD_ESCAPED.sub(r"\1", raw)
    if form in ("json", "json-ascii"):
        value = json.loads(raw)
        return value if isinstance(value, str) else raw
    return raw


def encode(text: str, form: str) -> str:
    """`text` written the way its place in the source needs."""
    if form in ('attr"', "attr'", "xml"):
        # `>` may stand as it is, in attribute values and in text (but for the `]]>` XML reserves).
        out = text.replace("&", "&amp;").replace("<", "&lt;").replace("]]>", "]]&gt;")
        if form == 'attr"':
            out = out.replace('"', "&quot;")
        elif form == "attr'":
            out = out.replace("'", "&#39;")
        return out
    if form == "html":
        return _BARE_LT.sub("&lt;", _BARE_AMP.sub("&amp;", text))
    if form in _MD_SPECIAL:
        special = re.escape("\\" + _MD_SPECIAL[form])
        # A blank line would end the paragraph the title or alt stands in.
        return re.sub(f"([{special}])", r"\\\1", " ".join(text.split()))
    if form == "json-ascii":
        return json.dumps(text)
    if form in ("json", "yaml"):
        return json.dumps(text, ensure_ascii=False)
    return text


def _inside(outer: Placed, inner: Placed) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def splice(source: str, pieces: Sequence[Placed], translations: Mapping[int, str], kind: str) -> str:
    """`source` with pieces[i] replaced by translations[i], written in its form; a piece without a translation,
    or translated to its own text, keeps its source bytes. `kind` names the outer pieces' protected runs."""
    order = sorted(range(len(pieces)), key=lambda i: (pieces[i].start, -pieces[i].end))
    out: list[str] = []
    pos = 0
    n = 0
    while n < len(order):
        outer = order[n]
        inner: list[int] = []
        n += 1
        while n < len(order) and _inside(pieces[outer], pieces[order[n]]):
            inner.append(order[n])
            n += 1
        out.append(source[pos : pieces[outer].start])
        out.append(_one(source, outer, inner, pieces, translations, kind))
        pos = pieces[outer].end
    out.append(source[pos:])
    return "".join(out)


def _changed(piece: Placed, translation: str | None) -> bool:
    return translation is not None and translation != piece.text


def _one(
    source: str, index: int, inner: list[int], pieces: Sequence[Placed], translations: Mapping[int, str], kind: str
) -> str:
    """pieces[index] written back, with the pieces inside it."""
    outer, translation = pieces[index], translations.get(index)
    raw = source[outer.start : outer.end]
    edits = [
        (pieces[i].start - outer.start, pieces[i].end - outer.start, encode(translations[i], pieces[i].form))
        for i in inner
        if _changed(pieces[i], translations.get(i))
    ]
    if translation is None or translation == outer.text:
        return _apply(raw, edits, 0)
    written = encode(translation, outer.form)
    # Each run that holds changed inner pieces, rewritten wherever the model gave it back.
    for start, end in runs(raw, kind):
        mine = [e for e in edits if start <= e[0] and e[1] <= end]
        if mine:
            written = written.replace(raw[start:end], _apply(raw[start:end], mine, start))
    return written


def _apply(text: str, edits: list[tuple[int, int, str]], offset: int) -> str:
    """`text` (which starts at `offset` of the edits' coordinates) with each (start, end, new) edit made."""
    for start, end, new in sorted(edits, reverse=True):
        text = text[: start - offset] + new + text[end - offset :]
    return text
