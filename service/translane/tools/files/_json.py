"""JSON's string values at their source offsets, with their key paths: the file is never re-serialised.

The document is checked with `json.loads` first, then walked token by token (the `json` module's
own string scanner decodes each string), so a translation replaces one string token and every
other byte (key order, spacing, indentation, escapes, the final newline) stays as it was.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

__all__ = ["JsonString", "json_strings", "string_form"]

JsonString = tuple[tuple[str | int, ...], str, int, int]
_SPACE = re.compile(r"[ \t\n\r]*")
# A \u escape of a character outside ASCII: the file writes non-ASCII text as escapes.
_ESCAPED_NON_ASCII = re.compile(r"\\u(?:00[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]{2}|[1-9a-fA-F][0-9a-fA-F]{3})")


def json_strings(text: str) -> list[JsonString]:
    """(path, value, start, end) of every string value in `text` (a valid JSON document), in document order;
    start:end is the token with its quotes. Keys are not values."""
    decoder = json.JSONDecoder()
    found: list[JsonString] = []

    def skip(i: int) -> int:
        m = _SPACE.match(text, i)
        return i if m is None else m.end()

    def value(i: int, path: tuple[str | int, ...]) -> int:
        i = skip(i)
        c = text[i]
        if c == '"':
            s, end = scanstring(text, i + 1)
            found.append((path, s, i, end))
            return int(end)
        if c == "{":
            i = skip(i + 1)
            while text[i] != "}":
                key, i = scanstring(text, i + 1)
                i = value(skip(i) + 1, (*path, key))  # past the colon
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            return i + 1
        if c == "[":
            i = skip(i + 1)
            n = 0
            while text[i] != "]":
                i = skip(value(i, (*path, n)))
                n += 1
                if text[i] == ",":
                    i = skip(i + 1)
            return i + 1
        _, end = decoder.raw_decode(text, i)
        return int(end)

    value(1 if text.startswith("\ufeff") else 0, ())
    return found


def string_form(text: str) -> str:
    """How the file writes non-ASCII text in its strings: as is ("json"), or as \\u escapes ("json-ascii");
    a file with neither writes it as is."""
    if not text.isascii():
        return "json"
    return "json-ascii" if _ESCAPED_NON_ASCII.search(text) else "json"
