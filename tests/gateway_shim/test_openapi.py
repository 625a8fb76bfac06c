"""The shim's OpenAPI document: served as it is written, valid, covering every route, and true of the shim."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from translane.languages import NAMES

from gateway_shim import RunningShim, ShimConfig
from gateway_shim._errors import ShimError
from gateway_shim._http import task_id_of
from gateway_shim._openai import parse_chat
from gateway_shim._plugin import parse_custom

from .conftest import KEY
from .test_properties import ANY_TEXT, FAST, JSON_VALUES

DOCUMENT = yaml.safe_load(resources.files("gateway_shim").joinpath("openapi.yaml").read_text(encoding="utf-8"))

# -- the document -------------------------------------------------------------------------------------------------


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0, api_keys=frozenset({KEY}))


async def test_served_without_a_key_as_written(shim: RunningShim) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{shim.url}/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        served = await resp.json()
    assert served == DOCUMENT


def test_is_a_valid_openapi_document() -> None:
    validate(DOCUMENT)


async def test_describes_every_route(shim: RunningShim) -> None:
    routes = set()
    for route in shim.app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp answers HEAD on every GET route, as the document says
        info = route.resource.get_info() if route.resource is not None else {}
        routes.add((route.method.lower(), info.get("path", "")))
    described = {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}
    # The document describes /translate/ as the same route as /translate.
    assert routes - {("post", "/translate/")} == described


def test_names_every_language_code_the_service_knows() -> None:
    codes = DOCUMENT["components"]["schemas"]["LanguageCode"]["anyOf"][0]["enum"]
    assert codes == list(NAMES)


# -- the request schemas accept exactly what the parsers do ------------------------------------------------------


def _validator(name: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    )


LANGUAGES = st.sampled_from(["zh", "zh-CN", "en_US", "French", "简体中文", "auto", "", "xx"]) | JSON_VALUES
TOKENS = st.sampled_from([0, 1, 100.0, 2**32 - 1, 2**32, -1, 1.5, True]) | JSON_VALUES
FLAGS = st.booleans() | st.none() | JSON_VALUES
TASK_IDS = st.sampled_from(["", "job-7", " job", "job 7 ", "x" * 256, "x" * 257, "tab\t", "ü"]) | JSON_VALUES
MODELS = st.none() | ANY_TEXT | JSON_VALUES
PARTS = (
    st.fixed_dictionaries(
        {}, optional={"type": st.sampled_from(["text", "input_text", "image_url"]) | JSON_VALUES, "text": JSON_VALUES}
    )
    | JSON_VALUES
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "developer", "assistant"]) | JSON_VALUES,
            "content": st.none() | ANY_TEXT | st.lists(PARTS, max_size=3) | JSON_VALUES,
        },
    )
    | JSON_VALUES,
    max_size=3,
)
CHAT_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "messages": MESSAGES | JSON_VALUES,
        "model": MODELS,
        "stream": FLAGS,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": FLAGS}) | JSON_VALUES,
        "max_completion_tokens": TOKENS,
        "max_tokens": TOKENS,
        "target_language": LANGUAGES,
        "target_lang": LANGUAGES,
        "source_language": LANGUAGES,
        "source_lang": LANGUAGES,
        "cache": FLAGS,
        "task_id": TASK_IDS,
        "temperature": JSON_VALUES,
    },
)
CUSTOM_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "text_list": st.lists(ANY_TEXT, max_size=3) | st.lists(ANY_TEXT | JSON_VALUES, max_size=3) | JSON_VALUES,
        "target_lang": LANGUAGES,
        "source_lang": LANGUAGES,
        "target_language": LANGUAGES,
        "source_language": LANGUAGES,
        "model": MODELS,
        "task_id": TASK_IDS,
    },
)


def _accepts(parse: Callable[[dict[str, Any], str], object], body: dict[str, Any]) -> bool:
    request = make_mocked_request("POST", "/")
    try:
        parse(body, task_id_of(request, body))
    except ShimError as exc:
        assert exc.status == 400
        return False
    return True


@FAST
@given(CHAT_BODIES)
def test_chat_schema_accepts_what_the_shim_accepts(body: dict[str, Any]) -> None:
    schema_says = _validator("ChatCompletionRequest").is_valid(body)
    assert _accepts(lambda b, task_id: parse_chat(b, task_id, "zh"), body) == schema_says, body


@FAST
@given(CUSTOM_BODIES)
def test_custom_api_schema_accepts_what_the_shim_accepts(body: dict[str, Any]) -> None:
    schema_says = _validator("CustomTranslateRequest").is_valid(body)
    assert _accepts(lambda b, task_id: parse_custom(b, "zh", task_id), body) == schema_says, body
