"""Telling human text from values a translator must leave alone: identifiers, numbers, versions, URLs, paths.

Used where a file does not say which strings are text (a JSON or YAML file without `--keys`, an
`alt` or `title` attribute): a value is kept as it is when it has no letters outside its
placeholders, or is a single token shaped like code rather than like a word.
"""

from __future__ import annotations

import re

__all__ = ["looks_like_code", "looks_like_identifier"]

# Format placeholders: {name} {0} {{count}} %s %(name)s %-5.2f ${var} $var
_PLACEHOLDER = re.compile(
    r"\{\{[^{}]*\}\}|\{[^{}]*\}|%(?:\([^)]*\))?[-+ #0]*(?:\d+|\*)?(?:\.\d+)?[sdifFeEgGxXocru%]|\$\{[^}]*\}|\$\w+"
)
_LETTER = re.compile(r"[^\W\d_]")
_URL = re.compile(r"(?:[A-Za-z][\w+.-]*:(?://)?|www\.)\S+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_COLOR = re.compile(r"#[0-9A-Fa-f]{3,8}")
# Words joined by `_`, `.`, `:`, `/` or `\`: snake_case, dotted keys, file names, paths, namespaced names.
_JOINED = re.compile(r"(?:[\w-]*\w[_.:/\\]+[\w.:/\\-]*\w|[_./\\~][\w.:/\\-]*)[/\\]?")
# Joined by hyphens: kebab-case, language tags, uuids, dates; but not a capitalised compound ("Sign-in").
_KEBAB = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+")
_COMPOUND_WORD = re.compile(r"[A-Z]?[a-z]+(?:-[a-z]+)+|[A-Z][a-z]*(?:-[A-Za-z][a-z]*)+")
_LOWER = re.compile(r"[a-z][a-z0-9]*")
_UPPER = re.compile(r"[A-Z][A-Z0-9]*")
_CAMEL = re.compile(r"[A-Za-z0-9]*[a-z][A-Z][A-Za-z0-9]*")
_MIXED = re.compile(r"(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]+")


def _no_words(value: str) -> bool:
    return _LETTER.search(_PLACEHOLDER.sub("", value)) is None


def looks_like_code(value: str) -> bool:
    """No letters outside placeholders (numbers, dates, `{0} / {1}`), or one token that is a URL, an e-mail
    address, a path or file name, a dotted or snake_case name, a hex colour, or letters mixed with digits."""
    v = value.strip()
    if _no_words(v):
        return True
    if any(c.isspace() for c in v):
        return False
    if _URL.fullmatch(v) or _EMAIL.fullmatch(v):
        return True
    if not v.isascii():
        return False
    if _COLOR.fullmatch(v) or _JOINED.fullmatch(v) or _MIXED.fullmatch(v):
        return True
    return bool(_KEBAB.fullmatch(v)) and not _COMPOUND_WORD.fullmatch(v)


def looks_like_identifier(value: str) -> bool:
    """What `looks_like_code` reads as code, and also one ASCII token all in lower case (`start`, `dark`), all in
    upper case (`USD`, `OK`), in camelCase or PascalCase, or a lower-case kebab-case name: the values of a
    configuration rather than a sentence. A capitalised word (`Start`) or any phrase is text."""
    v = value.strip()
    if looks_like_code(v):
        return True
    if any(c.isspace() for c in v) or not v.isascii():
        return False
    return bool(_LOWER.fullmatch(v) or _UPPER.fullmatch(v) or _CAMEL.fullmatch(v) or re.fullmatch(r"[a-z-]+", v))
