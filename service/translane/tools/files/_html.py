"""HTML and XHTML: each innermost block's text, and `alt`, `title` and `aria-label` values, at their exact source
offsets.

The standard library's HTMLParser reports where every tag and text run starts, so the file can
be rebuilt from its own bytes with only the translated text replaced: entities, quoting,
whitespace and comments outside it stay exactly as they were. Inline markup inside a block goes
to the model as placeholders (see _protect.py); an attribute value is a segment of its own, even
on a tag inside a block's text (an `<img>` or `<a>` in a paragraph). `<script>`, `<style>`,
`<code>`, `<pre>` and anything under `translate="no"` are never sent. Inside a `<nav>`, each link
(`<a>`, `<span>`) is a block: a table of contents' entry is translated inside its link, never
around it (an EPUB 3 nav allows no text in its `<li>` outside them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser

from ._spans import Span
from ._values import looks_like_code

__all__ = ["html_segments", "html_spans", "set_lang"]

BLOCKS = frozenset(
    "p h1 h2 h3 h4 h5 h6 li dt dd td th caption figcaption title blockquote div section article aside header footer "
    "main nav ol ul dl table tr thead tbody tfoot figure body html head text".split()
)
SKIP = frozenset({"script", "style", "code", "pre", "svg", "math"})
_ATTRS = re.compile(r"""\s(alt|title|aria-label)\s*=\s*("([^"]*)"|'([^']*)')""", re.IGNORECASE)
# Elements whose title names a thing rather than saying something (an alternate style sheet's title is its id).
_NO_ATTRS = frozenset("base head html link meta script style".split())
# In a <nav>, the elements that hold an entry's text (the outermost one: a <span> inside a link is inline).
_NAV_BLOCKS = frozenset({"a", "span"})
_TAG = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")
_LETTER = re.compile(r"[^\W\d_]")
# Elements that sit inside a line of text: skipped ones stay in their run (sent as placeholders).
_INLINE = frozenset(
    "a abbr b bdi bdo cite code data dfn em i kbd mark q s samp small span strong sub sup time u var".split()
)
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass(slots=True)
class _Open:
    tag: str
    inner_start: int
    skip: bool
    # Delimits text runs: a block element, or a link inside a <nav>.
    block: bool
    has_block: bool = False
    # Where the current run of text directly inside this block began (after its start tag or its
    # last child block): a block that holds blocks also has text of its own between them.
    run_start: int = 0


# Start tags that end an open element the way HTML's parser does (`<p>One<p>Two`, `<li>A<li>B`),
# each with the elements that bound the search.
_ENDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "tr": (frozenset({"tr", "td", "th"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
}


class _Scanner(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.spans: list[Span] = []
        self.stack: list[_Open] = []

    def _here(self) -> int:
        line, col = self.getpos()
        return self.starts[line - 1] + col

    def _skipping(self) -> bool:
        return any(o.skip for o in self.stack)

    def _parent_block(self) -> _Open | None:
        return next((o for o in reversed(self.stack) if o.block), None)

    def _nav_entry(self) -> bool:
        """Inside a <nav> and in no entry yet: an `<a>` or `<span>` here holds an entry's text."""
        in_nav = any(o.tag == "nav" for o in self.stack)
        return in_nav and not any(o.block and o.tag in _NAV_BLOCKS for o in self.stack)

    def _emit(self, start: int, end: int, tag: str) -> None:
        # Only words of its own between the tags (not a run that holds just an image, a number or whitespace).
        if end > start and _LETTER.search(_TAG.sub("", self.text[start:end])):
            self.spans.append(Span(start, end, tag, "html", self.text[start:end]))

    def _attributes(self, tag: str, start: int, raw: str) -> None:
        if tag in _NO_ATTRS:
            return
        for m in _ATTRS.finditer(raw):
            group = 3 if m.group(3) is not None else 4
            value = unescape(m.group(group))
            if value.strip() and not looks_like_code(value):
                form = "attr'" if group == 4 else 'attr"'
                s, e = start + m.start(group), start + m.end(group)
                self.spans.append(Span(s, e, f"{tag}@{m.group(1).lower()}", form, value))

    def _implied_ends(self, tag: str, at: int) -> None:
        if tag in BLOCKS and self.stack and self.stack[-1].tag == "p":
            self._close(len(self.stack) - 1, at)
        rule = _ENDS.get(tag)
        if rule is None:
            return
        ends, bounds = rule
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag in bounds:
                return
            if self.stack[i].tag in ends:
                self._close(i, at)
                return

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._here()
        raw = self.get_starttag_text() or ""
        end = start + len(raw)
        self._implied_ends(tag, start)
        skip = tag in SKIP or any(k == "translate" and (v or "").lower() == "no" for k, v in attrs)
        if not self._skipping() and not skip:
            self._attributes(tag, start, raw)
        if tag in _VOID or raw.endswith("/>"):
            return
        block = tag in BLOCKS or (tag in _NAV_BLOCKS and self._nav_entry())
        # A block, or a skipped element that is no inline span (a script, a style), ends the text run
        # of the block around it; an inline <code> stays in its run, as a placeholder.
        if block or (skip and tag not in _INLINE):
            parent = self._parent_block()
            if parent is not None and not self._skipping():
                self._emit(parent.run_start, start, parent.tag)  # the parent's own text before this one
            for o in self.stack:
                o.has_block = True
        self.stack.append(_Open(tag, end, skip, block, run_start=end))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        # Close back to the matching element (tolerating unclosed inline tags).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                here = self._here()
                close = self.text.find(">", here)
                self._close(i, here, close + 1 if close >= 0 else here)
                return

    def _close(self, i: int, end: int, after: int | None = None) -> None:
        """Close stack[i] (and, first, what it holds) with its content ending at `end`, its end tag at `after`."""
        while len(self.stack) > i + 1:
            self._close(len(self.stack) - 1, end, end)  # elements left open inside end where it ends
        opened = self.stack[i]
        skipped = self._skipping()
        del self.stack[i:]
        delimits = opened.block or (opened.skip and opened.tag not in _INLINE)
        if not delimits or (skipped and not opened.skip) or (skipped and self._skipping()):
            return
        if opened.skip:
            parent = self._parent_block()
            if parent is not None:
                parent.run_start = end if after is None else after
            return
        if opened.has_block:
            self._emit(opened.run_start, end, opened.tag)  # its own text after its last child block
        else:
            self._emit(opened.inner_start, end, opened.tag)
        parent = self._parent_block()
        if parent is not None:
            parent.run_start = end if after is None else after


def html_spans(text: str) -> list[Span]:
    """Every piece of text to translate, in document order: the text runs (written as they are, entities and
    inline markup included) and the attribute values (decoded; an attribute on a tag inside a text run lies
    inside that run's span)."""
    scanner = _Scanner(text)
    scanner.feed(text)
    scanner.close()
    return sorted(scanner.spans, key=lambda s: (s.start, -s.end))


def html_segments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, where) of the pieces of text that lie inside no other, in document order."""
    outermost: list[tuple[int, int, str]] = []
    for s in html_spans(text):
        if not outermost or s.end > outermost[-1][1]:  # in order of start: inside the last one, or after it
            outermost.append((s.start, s.end, s.where))
    return outermost


_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_LANG = re.compile(r"""(\s(?:xml:)?lang\s*=\s*)("[^"]*"|'[^']*')""", re.IGNORECASE)


def set_lang(text: str, lang: str) -> str:
    """`lang` (and `xml:lang`, where present) on the root element set to `lang`; where it has neither, `xml:lang`
    added to XHTML (XHTML 1.1, an EPUB 2's, allows no `lang`) and `lang` to HTML."""
    m = _HTML_TAG.search(text)
    if m is None:
        return text
    tag = m.group()
    if _LANG.search(tag):
        new = _LANG.sub(lambda x: f'{x.group(1)}"{lang}"', tag)
    else:
        name = "xml:lang" if "xmlns" in tag else "lang"
        new = tag[:-1].rstrip("/") + f' {name}="{lang}"' + ("/>" if tag.endswith("/>") else ">")
    return text[: m.start()] + new + text[m.end() :]
