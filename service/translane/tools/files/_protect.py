"""Markup the model must not touch, swapped for placeholders before a segment is sent and back after."""

from __future__ import annotations

import re

__all__ = ["placeholders", "protect", "restore"]

# Inline code, link and image targets, autolinks, inline HTML tags, and bare URLs.
_MARKDOWN = re.compile(r"`[^`\n]+`|\]\([^)\s]*(?:\s+\"[^\"]*\")?\)|<https?://[^>\s]+>|</?[A-Za-z][^>\n]*>|https?://\S+")
_SUBTITLE = re.compile(r"</?[A-Za-z][^>]*>|\{\\[^}]*\}")
# Inline code-like elements whole, other tags, comments: the text between tags is what is translated.
_HTML = re.compile(
    r"<([A-Za-z][\w-]*)\b[^>]*\btranslate\s*=\s*[\"']no[\"'][^>]*>.*?</\1\s*>"  # marked not to translate: whole
    r"|<(code|kbd|samp|var)\b[^>]*>.*?</\2\s*>|<!--.*?-->|</?[A-Za-z][^>]*>",
    re.DOTALL | re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def protect(text: str, kind: str) -> tuple[str, list[str]]:
    """`text` with each protected run replaced by {0}, {1}, ... and the runs, in order."""
    pattern = {"markdown": _MARKDOWN, "srt": _SUBTITLE, "vtt": _SUBTITLE, "html": _HTML}.get(kind)
    if pattern is None:
        return text, []
    runs: list[str] = []

    def swap(m: re.Match[str]) -> str:
        runs.append(m.group())
        return f"{{{len(runs) - 1}}}"

    # Placeholders already in the text ({0} from the plugin's world) must not be mistaken for ours.
    if _PLACEHOLDER.search(text):
        return text, []
    return pattern.sub(swap, text), runs


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


def placeholders(text: str) -> set[str]:
    """The {n} placeholders in `text`."""
    return {m.group() for m in _PLACEHOLDER.finditer(text)}
