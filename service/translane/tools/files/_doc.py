"""A file as segments of human text between untouched byte ranges, and its formats."""

from __future__ import annotations

import fnmatch
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._epub import EpubBook, read_epub
from ._html import html_segments, set_lang

__all__ = ["FORMATS", "Doc", "FormatError", "Segment", "load"]


class FormatError(ValueError):
    """A file that cannot be read in the format asked for."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of human text: where it is (`start`:`end` in the text), and a place a person can read."""

    index: int
    text: str
    start: int
    end: int
    where: str


@dataclass(slots=True)
class Doc:
    """A file's text, its segments in order, and how translations go back in."""

    path: str
    kind: str
    text: str
    segments: list[Segment] = field(default_factory=list)
    # For JSON: the parsed value and each segment's path in it, rendered back with json.dumps.
    data: Any = None
    paths: list[tuple[Any, ...]] = field(default_factory=list)
    # Set before rendering: HTML gets it as its root `lang`, an EPUB its dc:language.
    target_language: str = ""
    # An EPUB: the book, and for each segment the part and span it came from.
    book: EpubBook | None = None
    places: list[tuple[int, int, int]] = field(default_factory=list)

    def output(self, translations: dict[int, str]) -> bytes:
        """The translated file's bytes."""
        if self.book is None:
            return self.render(translations).encode("utf-8")
        per_part: list[dict[tuple[int, int], str]] = [{} for _ in self.book.parts]
        for seg in self.segments:
            if seg.index in translations:
                part, start, end = self.places[seg.index]
                per_part[part][(start, end)] = translations[seg.index]
        return self.book.render(per_part, self.target_language or "und")

    def render(self, translations: dict[int, str]) -> str:
        """The file with segment i replaced by translations[i] (untouched where absent)."""
        if self.kind == "json":
            data = json.loads(self.text)
            for seg, path in zip(self.segments, self.paths, strict=True):
                if seg.index in translations:
                    node = data
                    for key in path[:-1]:
                        node = node[key]
                    node[path[-1]] = translations[seg.index]
            indent = 2 if "\n" in self.text.strip() else None
            return json.dumps(data, ensure_ascii=False, indent=indent) + ("\n" if self.text.endswith("\n") else "")
        out: list[str] = []
        pos = 0
        for seg in self.segments:
            out.append(self.text[pos : seg.start])
            if seg.index not in translations:
                out.append(self.text[seg.start : seg.end])
            elif self.kind == "yaml":
                # A double-quoted scalar (JSON's string syntax is YAML's) holds any translation safely.
                out.append(json.dumps(translations[seg.index], ensure_ascii=False))
            else:
                out.append(translations[seg.index])
            pos = seg.end
        out.append(self.text[pos:])
        rendered = "".join(out)
        if self.kind == "html" and self.target_language:
            rendered = set_lang(rendered, self.target_language)
        return rendered


def _add(doc: Doc, start: int, end: int, where: str) -> None:
    while end > start and doc.text[end - 1] == "\r":  # a CRLF line's \r belongs to the line ending
        end -= 1
    text = doc.text[start:end]
    if text.strip():
        doc.segments.append(Segment(len(doc.segments), text, start, end, where))


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
    """CommonMark: headings, paragraphs, list items and table cells; code, HTML blocks and front matter keys kept.

    Each inline run is replaced where it stands in the source, so the markers around it (`#`, `-`,
    `>`, `|`) and everything between blocks stay byte for byte.
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
            _add(doc, found, found + len(content), f"line {first + 1}")
            continue
        # A paragraph over several lines inside a list or quote: translate it line by line.
        for part in content.split("\n"):
            pos = text.find(part, region_start, region_end)
            if pos >= 0 and part.strip():
                _add(doc, pos, pos + len(part), f"line {text.count(chr(10), 0, pos) + 1}")
                region_start = pos + len(part)
    doc.segments.sort(key=lambda s: s.start)
    doc.segments[:] = [Segment(i, s.text, s.start, s.end, s.where) for i, s in enumerate(doc.segments)]


def _walk(node: Any, path: tuple[Any, ...]) -> Iterable[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))
    elif isinstance(node, str):
        yield path, node


# RenPy translation files exported as JSON: the dialogue and menu strings, not ids or speakers.
RENPY_KEYS = ("*.what", "*.text", "*.translation", "*.menu.*", "dialogue.*.text", "strings.*.new")


def _json(doc: Doc, keys: tuple[str, ...]) -> None:
    """String values at glob-style key paths (`dialogue.*.text`); keys, numbers and other strings kept."""
    try:
        doc.data = json.loads(doc.text)
    except ValueError as exc:
        raise FormatError(f"{doc.path}: not JSON: {exc}") from None
    patterns = keys or ("*",)
    for path, value in _walk(doc.data, ()):
        dotted = ".".join(str(p) for p in path)
        if value.strip() and any(fnmatch.fnmatchcase(dotted, pat) for pat in patterns):
            doc.segments.append(Segment(len(doc.segments), value, 0, 0, dotted))
            doc.paths.append(path)


def _yaml(doc: Doc, keys: tuple[str, ...]) -> None:
    """String scalars at glob-style key paths, found at their source positions (comments, order, style kept)."""
    import yaml

    try:
        root = yaml.compose(doc.text)
    except yaml.YAMLError as exc:
        raise FormatError(f"{doc.path}: not YAML: {str(exc)[:200]}") from None
    patterns = keys or ("*",)

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, (*path, str(k.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, str(i)))
        elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and node.value.strip():
            dotted = ".".join(path)
            if any(fnmatch.fnmatchcase(dotted, pat) for pat in patterns):
                start, end = node.start_mark.index, node.end_mark.index
                doc.segments.append(Segment(len(doc.segments), node.value, start, end, dotted))

    if root is not None:
        walk(root, ())
    doc.segments.sort(key=lambda s: s.start)
    doc.segments[:] = [Segment(i, s.text, s.start, s.end, s.where) for i, s in enumerate(doc.segments)]


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
        for start, end, where in part.spans:
            doc.segments.append(Segment(len(doc.segments), part.text[start:end], start, end, where))
            doc.places.append((n, start, end))
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
    doc = Doc(str(p), kind, text)
    if kind == "text":
        _plain(doc)
    elif kind == "markdown":
        _markdown(doc)
    elif kind in ("srt", "vtt"):
        _subtitles(doc)
    elif kind == "html":
        for start, end, where in html_segments(text):
            _add(doc, start, end, where)
    elif kind == "yaml":
        _yaml(doc, RENPY_KEYS if preset == "renpy" else keys)
    else:
        _json(doc, RENPY_KEYS if preset == "renpy" else keys)
    return doc
