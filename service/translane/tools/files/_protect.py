"""Markup the model must not touch, swapped for placeholders before a segment is sent and back after; and the
human text inside such markup (a Markdown image's alt, a link's title), which is sent as a segment of its own."""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["markdown_inner_texts", "placeholders", "protect", "restore", "runs"]

# A link's destination and optional title, after its text: ](url), ](<url>), ](url "t"), ](url 't'), ](url (t));
# with `![alt` before it (brackets in it balanced, one deep), an image whole (its alt is no part of the sentence
# around it).
_LINKS = (
    r"(?:!\[(?P<alt>(?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*))?\]\(\s*(?:<[^<>\n]*>|[^)\s]*)"
    r"(?:\s+(?P<title>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?\s*\)"
)
_MARKDOWN_LINKS = re.compile(_LINKS)
# Inline code, images, link targets, autolinks, inline HTML tags, and bare URLs.
_MARKDOWN = re.compile(
    r"`[^`\n]+`|" + re.sub(r"\?P<\w+>", "?:", _LINKS) + r"|<https?://[^>\s]+>|</?[A-Za-z][^>\n]*>|https?://\S+"
)
_CODE_SPAN = re.compile(r"`[^`\n]+`")
_SUBTITLE = re.compile(r"</?[A-Za-z][^>]*>|\{\\[^}]*\}")
# Inline code-like elements whole, other tags, comments: the text between tags is what is translated.
# A tag's inside: anything but ">", and quoted attribute values whole (a ">" in alt="a -> b" ends no tag).
_IN_TAG = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_HTML = re.compile(
    rf"<([A-Za-z][\w-]*)\b{_IN_TAG}\btranslate\s*=\s*[\"']no[\"']{_IN_TAG}>.*?</\1\s*>"  # marked not to translate
    rf"|<(code|kbd|samp|var)\b{_IN_TAG}>.*?</\2\s*>|<!--.*?-->|</?[A-Za-z]{_IN_TAG}>",
    re.DOTALL | re.IGNORECASE,
)
_PATTERNS = {"markdown": _MARKDOWN, "srt": _SUBTITLE, "vtt": _SUBTITLE, "html": _HTML}
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def runs(text: str, kind: str) -> list[tuple[int, int]]:
    """(start, end) of each run of `text` the model must not touch, in order."""
    pattern = _PATTERNS.get(kind)
    return [] if pattern is None else [m.span() for m in pattern.finditer(text)]


def protect(text: str, kind: str) -> tuple[str, list[str]]:
    """`text` with each protected run replaced by {0}, {1}, ... and the runs, in order."""
    # Placeholders already in the text ({0} from the plugin's world) must not be mistaken for ours.
    if _PLACEHOLDER.search(text):
        return text, []
    out: list[str] = []
    found: list[str] = []
    pos = 0
    for start, end in runs(text, kind):
        out.append(text[pos:start])
        out.append(f"{{{len(found)}}}")
        found.append(text[start:end])
        pos = end
    out.append(text[pos:])
    return "".join(out), found


def restore(text: str, runs: list[str]) -> tuple[str, list[int]]:
    """The translation with the runs put back; the placeholders that went missing (a leak of another kind)."""
    seen: set[int] = set()

    def back(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if i < len(runs):
            seen.add(i)
            return runs[i]
        return m.group()

    out = _PLACEHOLDER.sub(back, text) if runs else text
    return out, [i for i in range(len(runs)) if i not in seen]


def markdown_inner_texts(text: str) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, form, what) of each image's alt text and each link's or image's title in a Markdown inline
    run, outside code spans; `form` says how the source writes it (see _spans.py)."""
    code = [m.span() for m in _CODE_SPAN.finditer(text)]
    for m in _MARKDOWN_LINKS.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in code):
            continue
        alt = m.group("alt")
        if alt is not None and alt.strip():
            yield m.start("alt"), m.end("alt"), "md[", "image alt"
        title = m.group("title")
        if title and title[1:-1].strip():
            yield m.start("title") + 1, m.end("title") - 1, f"md{title[0]}", "title"


def placeholders(text: str) -> set[str]:
    """The {n} placeholders in `text`."""
    return {m.group() for m in _PLACEHOLDER.finditer(text)}
