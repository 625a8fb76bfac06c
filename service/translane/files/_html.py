"""HTML and XHTML: each innermost block's text, and alt/title attributes, found at their exact source offsets.

The standard library's HTMLParser reports where every tag and text run starts, so the file can
be rebuilt from its own bytes with only the translated text replaced: entities, quoting,
whitespace and comments outside it stay exactly as they were. Inline markup inside a block goes
to the model as placeholders (see _protect.py); `<script>`, `<style>`, `<code>`, `<pre>` and
anything under `translate="no"` are never sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["html_segments", "set_lang"]

BLOCKS = frozenset(
    "p h1 h2 h3 h4 h5 h6 li dt dd td th caption figcaption title blockquote div section article aside header footer "
    "main nav ol ul dl table tr thead tbody tfoot figure body html head text".split()
)
SKIP = frozenset({"script", "style", "code", "pre", "svg", "math"})
_ATTRS = re.compile(r"""\s(alt|title)\s*=\s*("([^"]*)"|'([^']*)')""", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass(slots=True)
class _Open:
    tag: str
    inner_start: int
    skip: bool
    has_block: bool = False


class _Scanner(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.spans: list[tuple[int, int, str]] = []
        self.stack: list[_Open] = []

    def _here(self) -> int:
        line, col = self.getpos()
        return self.starts[line - 1] + col

    def _skipping(self) -> bool:
        return any(o.skip for o in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._here()
        raw = self.get_starttag_text() or ""
        end = start + len(raw)
        skip = tag in SKIP or any(k == "translate" and (v or "").lower() == "no" for k, v in attrs)
        if not self._skipping() and not skip:
            for m in _ATTRS.finditer(raw):
                group = 3 if m.group(3) is not None else 4
                s, e = start + m.start(group), start + m.end(group)
                if self.text[s:e].strip():
                    self.spans.append((s, e, f"{tag}@{m.group(1).lower()}"))
        if tag in _VOID or raw.endswith("/>"):
            return
        if tag in BLOCKS:
            for o in self.stack:
                o.has_block = True
        self.stack.append(_Open(tag, end, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        # Close back to the matching element (tolerating unclosed inline tags).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                break
        else:
            return
        opened = self.stack[i]
        skipped = self._skipping()
        del self.stack[i:]
        if tag in BLOCKS and not opened.has_block and not skipped:
            end = self._here()
            # Only a block with text of its own between its tags (not one that holds just an image).
            if _TAG.sub("", self.text[opened.inner_start : end]).strip():
                self.spans.append((opened.inner_start, end, tag))


def html_segments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, where) of every translatable run, in document order, none inside another.

    An attribute inside a block that is translated whole goes with that block's markup (as a
    placeholder), so its own span is dropped rather than cut across.
    """
    scanner = _Scanner(text)
    scanner.feed(text)
    scanner.close()
    spans = sorted(scanner.spans)
    return [s for s in spans if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]


_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_LANG = re.compile(r"""(\s(?:xml:)?lang\s*=\s*)("[^"]*"|'[^']*')""", re.IGNORECASE)


def set_lang(text: str, lang: str) -> str:
    """`lang` (and `xml:lang`, where present) on the root element set to `lang`."""
    m = _HTML_TAG.search(text)
    if m is None:
        return text
    tag = m.group()
    if _LANG.search(tag):
        new = _LANG.sub(lambda x: f'{x.group(1)}"{lang}"', tag)
    else:
        new = tag[:-1].rstrip("/") + f' lang="{lang}"' + ("/>" if tag.endswith("/>") else ">")
    return text[: m.start()] + new + text[m.end() :]
