"""POST /translate: Immersive Translate's custom API, with its language codes honoured."""

from __future__ import annotations

import aiohttp

from ..conftest import Sim

MODEL = "doubao-seed-translation-250915"


async def test_translates_each_text_into_the_requested_language(http: aiohttp.ClientSession, sim: Sim) -> None:
    texts = ["Hello {0} world", "<b0></b0> bold <b1>tags</b1>", "Third"]
    async with http.post("/translate", json={"source_lang": "en", "target_lang": "ja", "text_list": texts}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body == {"translations": [{"detected_source_lang": "en", "text": f"[sim en->ja] {t}"} for t in texts]}
    assert (await sim.stats())["models"][MODEL]["requests"] == 3


async def test_plugin_codes_are_mapped(http: aiohttp.ClientSession) -> None:
    async with http.post("/translate/", json={"source_lang": "auto", "target_lang": "zh-TW", "text_list": ["Hi"]}) as r:
        body = await r.json()
    assert body["translations"] == [{"detected_source_lang": "auto", "text": "[sim auto->zh-Hant] Hi"}]
    async with http.post(
        "/translate", json={"source_lang": "zh-CN", "target_lang": "en-US", "text_list": ["你好"]}
    ) as r:
        body = await r.json()
    # The source comes back spelled as the plugin sent it.
    assert body["translations"] == [{"detected_source_lang": "zh-CN", "text": "[sim zh->en] 你好"}]


async def test_missing_target_uses_the_default_and_empty_list_calls_nothing(
    http: aiohttp.ClientSession, sim: Sim
) -> None:
    async with http.post("/translate", json={"text_list": []}) as r:
        assert r.status == 200 and await r.json() == {"translations": []}
    assert (await sim.stats())["models"][MODEL]["requests"] == 0
    async with http.post("/translate", json={"text_list": ["Hi"]}, headers={"X-Task-Id": "job-7"}) as r:
        assert (await r.json())["translations"][0]["text"] == "[sim auto->zh] Hi"
        assert r.headers["X-Task-Id"] == "job-7"


async def test_wrong_types_name_the_field(http: aiohttp.ClientSession) -> None:
    for body, field in (
        ({"text_list": "Hi"}, "text_list"),
        ({"text_list": ["a", 1]}, "text_list"),
        ({"text_list": ["a"], "target_lang": 3}, "target_lang"),
        ({"text_list": ["a"], "target_lang": "fr", "target_language": 3}, "target_language"),
        ({"text_list": ["a"], "model": 0}, "model"),
    ):
        async with http.post("/translate", json=body) as r:
            assert r.status == 400
            error = (await r.json())["error"]
            assert error["param"] == field and field in error["message"]


async def test_the_services_refusals_name_the_fields_the_caller_sent(http: aiohttp.ClientSession) -> None:
    """The service speaks of `segments` and `target_language`; this body has `text_list` and `target_lang`."""
    for body, field in (
        ({"text_list": ["a"] * 1001, "target_lang": "de"}, "text_list"),
        ({"text_list": ["ok", "x" * 100_001], "target_lang": "de"}, "text_list[1]"),
    ):
        async with http.post("/translate", json=body) as r:
            assert r.status == 400, await r.text()
            error = (await r.json())["error"]
        assert error["param"] == field and error["message"].startswith(field + ":"), error


async def test_a_refusal_names_the_field_as_the_body_spelled_it(http: aiohttp.ClientSession) -> None:
    for key in ("target_lang", "target_language"):
        async with http.post("/translate", json={"text_list": ["a"], key: "x" * 20_000}) as r:
            assert r.status == 400, await r.text()
            error = (await r.json())["error"]
        assert error["param"] == key, error
