"""A file as segments of human text between untouched byte ranges, and its formats."""

from __future__ import annotations

import fnmatch
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._epub import EpubBook, read_epub
from ._html import html_spans, set_lang
from ._json import json_strings, string_form
from ._protect import markdown_inner_texts, protect
from ._spans import decode, splice
from ._values import looks_like_code, looks_like_identifier

__all__ = ["CUTTING", "FORMATS", "Doc", "FormatError", "Segment", "load", "parse"]

# How files are cut into segments, as a version: a resumed run's state is read only against the same cutting
# (a segment's index means the same text).
CUTTING = "2"


class FormatError(ValueError):
    """A file that cannot be read in the format asked for."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of human text: where it is (`start`:`end` in the text), a place a person can read, and how the
    text writes it there (see _spans.py: "" as it is; an attribute value, a JSON string, ... escaped)."""

    index: int
    text: str
    start: int
    end: int
    where: str
    form: str = ""


@dataclass(slots=True)
class Doc:
    """A file's text, its segments in order, and how translations go back in."""

    path: str
    kind: str
    text: str
    segments: list[Segment] = field(default_factory=list)
    # What a person should know about how the file was cut (values kept as identifiers, ...).
    notes: list[str] = field(default_factory=list)
    # Set before rendering: HTML gets it as its root `lang`, an EPUB its dc:language.
    target_language: str = ""
    # An EPUB: the book, and for each segment the part and span it came from.
    book: EpubBook | None = None
    places: list[tuple[int, int]] = field(default_factory=list)

    def output(self, translations: dict[int, str]) -> bytes:
        """The translated file's bytes."""
        if self.book is None:
            return self.render(translations).encode("utf-8")
        per_part: list[dict[int, str]] = [{} for _ in self.book.parts]
        for seg in self.segments:
            if seg.index in translations:
                part, span = self.places[seg.index]
                per_part[part][span] = translations[seg.index]
        return self.book.render(per_part, self.target_language or "und")

    def render(self, translations: dict[int, str]) -> str:
        """The file with segment i replaced by translations[i], written as its place needs (untouched where
        absent, or translated to its own text)."""
        rendered = splice(self.text, self.segments, translations, self.kind)
        if self.kind == "html" and self.target_language:
            rendered = set_lang(rendered, self.target_language)
        return rendered


def _add(doc: Doc, start: int, end: int, where: str, form: str = "") -> None:
    while not form and end > start and doc.text[end - 1] == "\r":  # a CRLF line's \r belongs to the line ending
        end -= 1
    text = decode(doc.text[start:end], form)
    if text.strip():
        doc.segments.append(Segment(len(doc.segments), text, start, end, where, form))


def _in_order(doc: Doc) -> None:
    """Segments numbered in document order (one inside another after it)."""
    doc.segments.sort(key=lambda s: (s.start, -s.end))
    doc.segments[:] = [Segment(i, s.text, s.start, s.end, s.where, s.form) for i, s in enumerate(doc.segments)]


_LETTER = re.compile(r"[^\W\d_]")
_OUR_PLACEHOLDER = re.compile(r"\{\d+\}")


def _has_words(text: str, kind: str) -> bool:
    """Whether `text` says something outside its markup (a paragraph that is only an image does not)."""
    masked, _ = protect(text, kind)
    return _LETTER.search(_OUR_PLACEHOLDER.sub("", masked)) is not None


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


def _plain(doc: Doc) -> None:
    """Paragraphs: runs of non-blank lines."""
    for m in re.finditer(r"[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*", doc.text):
        line = doc.text.count("\n", 0, m.start()) + 1
        _add(doc, m.start(), m.end(), f"line {line}")


_CUE_TIMING = re.compile(r"^\s*(?:\d{1,2}:)?\d{1,2}:\d{2}[.,]\d{3}\s*-->")
_TAGS = re.compile(r"</?[a-zA-Z][^>]*>|\{\\[^}]*\}")


def _subtitles(doc: Doc) -> None:
    """SRT and WebVTT: each cue's text lines (ids, timings, settings and headers kept)."""
    lines = doc.text.split("\n")
    starts = _line_starts(doc.text)
    i = 0
    while i < len(lines):
        if _CUE_TIMING.match(lines[i]):
            first = i + 1
            last = first
            while last < len(lines) and lines[last].strip():
                last += 1
            if last > first:
                end = starts[last - 1] + len(lines[last - 1].rstrip("\r"))
                _add(doc, starts[first], end, f"cue at {lines[i].split('-->')[0].strip()}")
            i = last
        i += 1


def _markdown(doc: Doc) -> None:
    """CommonMark: headings, paragraphs, list items and table cells, images' alt text and links' and images'
    titles; code, HTML blocks and front matter keys kept.

    Each inline run is replaced where it stands in the source, so the markers around it (`#`, `-`,
    `>`, `|`) and everything between blocks stay byte for byte. An image goes to the model as a
    placeholder in its sentence, its alt and title as segments of their own (as HTML's attributes do).
    """
    from markdown_it import MarkdownIt

    text = doc.text
    body_from = 0
    front = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if front:
        body_from = front.end()
        for m in re.finditer(r"^(title|description):[ \t]*(.+?)[ \t]*$", front.group(1), re.MULTILINE):
            value_start = front.start(1) + m.start(2)
            value = m.group(2)
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
            inner = 1 if quoted else 0
            _add(doc, value_start + inner, value_start + len(value) - inner, f"front matter {m.group(1)}")
    md = MarkdownIt("commonmark").enable("table")
    starts = _line_starts(text)
    body = text[body_from:]
    offset_line = text.count("\n", 0, body_from)
    for token in md.parse(body):
        if token.type != "inline" or token.map is None or not token.content.strip():
            continue
        first, last = token.map[0] + offset_line, token.map[1] + offset_line
        region_start = starts[first]
        region_end = starts[last] if last < len(starts) else len(text)
        # Table rows share one inline per cell: find each cell's text within its row.
        content = token.content
        found = text.find(content, region_start, region_end)
        if found >= 0:
            _inline(doc, found, found + len(content), f"line {first + 1}")
            continue
        # A paragraph over several lines inside a list or quote: translate it line by line.
        for part in content.split("\n"):
            pos = text.find(part, region_start, region_end)
            if pos >= 0 and part.strip():
                _inline(doc, pos, pos + len(part), f"line {text.count(chr(10), 0, pos) + 1}")
                region_start = pos + len(part)
    _in_order(doc)


def _inline(doc: Doc, start: int, end: int, where: str) -> None:
    """A Markdown inline run, when it says something outside its markup, and the alt texts and titles in it."""
    run = doc.text[start:end]
    if _has_words(run, "markdown"):
        _add(doc, start, end, where)
    for s, e, form, what in markdown_inner_texts(run):
        if not looks_like_code(decode(run[s:e], form)):  # an alt that is a file name, say
            _add(doc, start + s, start + e, f"{where} {what}", form)


# RenPy translation files exported as JSON: the dialogue and menu strings, not ids or speakers.
RENPY_KEYS = ("*.what", "*.text", "*.translation", "*.menu.*", "dialogue.*.text", "strings.*.new")


class _Chooser:
    """Which string values to translate: those at the key paths asked for; without any, every value that does not
    look like an identifier, a number, a version, a URL or a path (counted, for the run's summary)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.kept = 0

    def wants(self, dotted: str, value: str) -> bool:
        if not value.strip():
            return False
        if self.keys:
            return any(fnmatch.fnmatchcase(dotted, pat) for pat in self.keys)
        if looks_like_identifier(value):
            self.kept += 1
            return False
        return True

    def note(self, doc: Doc) -> None:
        if self.kept:
            doc.notes.append(
                f"{self.kept} value(s) kept as they are: they look like identifiers, numbers, versions, URLs or "
                "paths (--keys chooses the keys to translate)"
            )


def _json(doc: Doc, keys: tuple[str, ...]) -> None:
    """String values at glob-style key paths (`dialogue.*.text`), or every one that reads as text; keys, numbers
    and the rest kept byte for byte."""
    try:
        json.loads(doc.text[1:] if doc.text.startswith("\ufeff") else doc.text)
    except ValueError as exc:
        raise FormatError(f"{doc.path}: not JSON: {exc}") from None
    chooser = _Chooser(keys)
    form = string_form(doc.text)
    for path, value, start, end in json_strings(doc.text):
        dotted = ".".join(str(p) for p in path)
        if chooser.wants(dotted, value):
            doc.segments.append(Segment(len(doc.segments), value, start, end, dotted, form))
    chooser.note(doc)


def _yaml(doc: Doc, keys: tuple[str, ...]) -> None:
    """String scalars at glob-style key paths, found at their source positions (comments, order, style kept)."""
    import yaml

    try:
        root = yaml.compose(doc.text)
    except yaml.YAMLError as exc:
        raise FormatError(f"{doc.path}: not YAML: {str(exc)[:200]}") from None
    chooser = _Chooser(keys)

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, (*path, str(k.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, str(i)))
        elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            dotted = ".".join(path)
            if chooser.wants(dotted, node.value):
                start, end = node.start_mark.index, node.end_mark.index
                doc.segments.append(Segment(len(doc.segments), node.value, start, end, dotted, "yaml"))

    if root is not None:
        walk(root, ())
    chooser.note(doc)
    _in_order(doc)


FORMATS = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".srt": "srt",
    ".vtt": "vtt",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".epub": "epub",
}


def _epub(p: Path) -> Doc:
    try:
        book = read_epub(str(p))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, ET.ParseError) as exc:
        raise FormatError(f"{p}: not a readable EPUB: {exc}") from None
    doc = Doc(str(p), "epub", "", book=book)
    for n, part in enumerate(book.parts):
        for i, span in enumerate(part.spans):
            doc.segments.append(Segment(len(doc.segments), span.text, span.start, span.end, span.where, span.form))
            doc.places.append((n, i))
    return doc


def load(path: str, keys: tuple[str, ...] = (), preset: str = "") -> Doc:
    """A file as a Doc, its format from its extension."""
    p = Path(path)
    kind = FORMATS.get(p.suffix.lower())
    if kind is None:
        raise FormatError(f"{path}: unsupported format {p.suffix!r} (supported: {', '.join(sorted(FORMATS))})")
    if kind == "epub":
        return _epub(p)
    try:
        # newline="": line endings as they are (CRLF stays CRLF), so every byte outside the text is kept.
        with p.open(encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read as UTF-8 text: {exc}") from None
    return parse(text, kind, str(p), keys, preset)


def parse(text: str, kind: str, path: str = "", keys: tuple[str, ...] = (), preset: str = "") -> Doc:
    """`text`, a file of `kind` (a value of FORMATS other than epub), cut into segments."""
    doc = Doc(path, kind, text)
    if kind == "text":
        _plain(doc)
    elif kind == "markdown":
        _markdown(doc)
    elif kind in ("srt", "vtt"):
        _subtitles(doc)
    elif kind == "html":
        for span in html_spans(text):
            doc.segments.append(Segment(len(doc.segments), span.text, span.start, span.end, span.where, span.form))
    elif kind == "yaml":
        _yaml(doc, RENPY_KEYS if preset == "renpy" else keys)
    else:
        _json(doc, RENPY_KEYS if preset == "renpy" else keys)
    return doc
