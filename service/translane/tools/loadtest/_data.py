"""What each request sends: rows of a CSV or JSONL file filling {{column}} placeholders, or synthetic prompts."""

from __future__ import annotations

import copy
import csv
import json
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import LoadConfigError

__all__ = ["Prompt", "fill", "prompts"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")
# Words of about one token each, for synthetic prompts of a known length.
_WORDS = (
    "the quick brown fox jumps over lazy dog while rate limits hold every request in its lane and "
    "tokens flow through the governor at the speed the provider allows"
).split()

Prompt = dict[str, str]


def _rows(path: str) -> list[Prompt]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadConfigError(f"data: cannot read {path!r}: {exc.strerror}") from None
    rows: list[Prompt] = []
    if p.suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise LoadConfigError(f"data: {path}:{i}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise LoadConfigError(f"data: {path}:{i}: expected a JSON object")
            rows.append({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
    else:
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
    if not rows:
        raise LoadConfigError(f"data: {path!r} holds no rows")
    return rows


def _synthetic(mean: int, spread: int, rng: random.Random) -> str:
    n = max(1, round(rng.gauss(mean, spread))) if spread else max(1, mean)
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def prompts(data: str, mean_tokens: int, spread_tokens: int, seed: int, salt: str = "") -> Iterator[Prompt]:
    """Rows of `data`, cycling when requests outnumber them; else synthetic rows with a `prompt` column, each
    ending in `salt` and its number when a salt is given (so no cache has seen it)."""
    if data:
        rows = _rows(data)
        i = 0
        while True:
            yield rows[i % len(rows)]
            i += 1
    rng = random.Random(seed)
    n = 0
    while True:
        text = _synthetic(mean_tokens, spread_tokens, rng)
        yield {"prompt": f"{text} {salt}-{n}" if salt else text}
        n += 1


def fill(template: Any, row: Mapping[str, str]) -> Any:
    """A copy of `template` with {{column}} replaced in every string; a string that is one placeholder
    takes the value as it is. An unknown column is an error naming it."""

    def one(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in row:
                raise LoadConfigError(f"body: no column {key!r} in the data (columns: {', '.join(row)})")
            return row[key]

        return _PLACEHOLDER.sub(sub, text)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return one(node)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return walk(copy.deepcopy(template))
