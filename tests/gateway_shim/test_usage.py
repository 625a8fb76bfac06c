"""GET /v1/usage: the service's usage ledger through the shim, its own tenant's for a caller and anyone's for an
admin, with a 400 naming the parameter for a bad one."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from translane.wire import WireError

from gateway_shim._usage import usage_scope

TR = "doubao-seed-translation-250915"


async def chat(http: aiohttp.ClientSession, text: str, task_id: str) -> dict[str, Any]:
    body = {"model": TR, "messages": [{"role": "user", "content": text}]}
    async with http.post("/v1/chat/completions", json=body, headers={"X-Task-Id": task_id}) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def test_the_usage_of_chats_sums_as_their_usage_says(http: aiohttp.ClientSession) -> None:
    answers = [await chat(http, f"Hello number {i}.", "site") for i in range(3)]
    async with http.get("/v1/usage", params={"group_by": "model,day"}) as resp:
        assert resp.status == 200, await resp.text()
        got = await resp.json()
    assert got["start"] == got["end"][:8] + "01" and got["group_by"] == ["model", "day"]
    [row] = got["data"]
    assert (row["tenant"], row["model"], row["task_id"], row["requests"]) == ("", TR, "", 3)
    assert row["day"] == got["end"]
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert row[field] == sum(a["usage"][field] for a in answers)
    async with http.get("/v1/usage", params=[("group_by", "task"), ("group_by", "model")]) as resp:
        by_task = await resp.json()
    assert [(r["task_id"], r["model"], r["requests"]) for r in by_task["data"]] == [("site", TR, 3)]


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"start": "2026-02-30"}, "start", "start: '2026-02-30' is not a date"),
        ({"end": "soon"}, "end", "end: 'soon' is not a date"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "start", "start: the range is 732 days"),
        ({"group_by": "model,tenant"}, "group_by", "group_by: unknown value 'tenant'"),
        ({"from": "2026-01-01"}, "from", "from: unknown parameter"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    http: aiohttp.ClientSession, params: dict[str, str], param: str, message: str
) -> None:
    async with http.get("/v1/usage", params=params) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == param
    assert error["message"].startswith(message)


def test_the_scope_rule() -> None:
    assert usage_scope("acme", False, "") == "acme"
    assert usage_scope("acme", False, "acme") == "acme"
    assert usage_scope("ops", True, "") == "*"
    assert usage_scope("ops", True, "acme") == "acme"
    with pytest.raises(WireError) as denied:
        usage_scope("acme", False, "*")
    assert denied.value.status == 403
