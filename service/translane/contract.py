"""Rules of the contract that every door checks alike (gRPC, the shim, the tools): what a task id may be."""

from __future__ import annotations

import re

__all__ = ["LINE_BREAKING", "MAX_TASK_ID_CHARS", "task_id_problem"]

# A task id is logged, traced and echoed: one short line.
MAX_TASK_ID_CHARS = 256
# What must never be in a task id (a log line) or a glossary term (one line of the prompt):
# controls, and anything that ends or folds a line.
LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def task_id_problem(task_id: str) -> str:
    """What is wrong with a caller's task id ("" when nothing)."""
    if len(task_id) > MAX_TASK_ID_CHARS or LINE_BREAKING.search(task_id):
        return f"must be one line of at most {MAX_TASK_ID_CHARS} characters, no control characters"
    return ""
