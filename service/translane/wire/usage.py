"""A usage ledger row (GetUsage) as JSON: the one rendering `GET /v1/usage` and `translane usage --json` share."""

from __future__ import annotations

from typing import Any

from ..v1 import translate_pb2 as pb

__all__ = ["usage_row_json"]


def usage_row_json(row: pb.UsageRow) -> dict[str, Any]:
    """`row` as a JSON object, its fields by their proto names."""
    return {
        "tenant": row.tenant,
        "model": row.model,
        "day": row.day,
        "task_id": row.task_id,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cached_tokens": row.cached_tokens,
        "cost": row.cost,
        "currency": row.currency,
    }
