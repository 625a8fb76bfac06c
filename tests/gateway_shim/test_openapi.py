"""The shim's OpenAPI document: served as it is written, valid, covering every route, and true of the real shim.

The schemathesis run drives the real shim (with a key), the real service and the simulated provider on loopback
with requests generated from the document, valid and invalid (its examples, coverage and fuzzing phases), and
checks every answer: never a 5xx, a status the document declares for the route, its content type, headers and
schema (stream chunks included), and within a bounded time.

One 5xx is the document's answer to the caller rather than a fault: 504 when the caller's own deadline passes
before the service has answered. With the 50 ms deadlines the document allows, a stall of a few tens of ms (a
garbage collection on a shared 2-core machine) is enough: about 1 in 300 such requests. The run allows 504 only
for a deadline under SHORT_DEADLINE_S, and counts them apart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from typing import Any

import aiohttp
import jsonschema
import pytest
import schemathesis
import yaml
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import Case, CheckContext, Response
from translane.config import load_config
from translane.languages import NAMES
from translane.server import running_server
from translane.sim import SimConfig
from translane.wire import WireError, parse_chat, parse_custom

from gateway_shim import RunningShim, ShimConfig, running_shim
from gateway_shim._http import task_id_of

from ..conftest import server_config, start_sim
from .conftest import KEY
from .test_properties import ANY_TEXT, FAST, JSON_VALUES

DOCUMENT = yaml.safe_load(resources.files("gateway_shim").joinpath("openapi.yaml").read_text(encoding="utf-8"))

# -- the document -------------------------------------------------------------------------------------------------


@pytest.fixture
def shim_config() -> ShimConfig:
    return ShimConfig(port=0, default_target_language="zh", api_keys=frozenset({KEY}))


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
        routes.add((route.method.lower(), info.get("path", info.get("formatter", ""))))
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
STOP_TEXTS = st.sampled_from(["", "x", "%%", "x" * 1000, "x" * 1001]) | ANY_TEXT
STOPS = STOP_TEXTS | st.lists(STOP_TEXTS | JSON_VALUES, max_size=5) | JSON_VALUES
CHOICES = st.sampled_from([1, 1.0, 2, 0, -1, True, None, 1.5]) | JSON_VALUES
FORMATS = (
    st.fixed_dictionaries(
        {}, optional={"type": st.sampled_from(["text", "json_object", "json_schema", "TEXT"]) | JSON_VALUES}
    )
    | JSON_VALUES
)
TOOL_CHOICES = (
    st.sampled_from(["none", "auto", "required", "any", {"type": "function", "function": {"name": "f"}}]) | JSON_VALUES
)
MODALITIES = st.lists(st.sampled_from(["text", "audio"]) | JSON_VALUES, max_size=3) | JSON_VALUES
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
        "stop": STOPS,
        "n": CHOICES,
        "response_format": FORMATS,
        "tool_choice": TOOL_CHOICES,
        "function_call": TOOL_CHOICES,
        "tools": JSON_VALUES,
        "modalities": MODALITIES,
        "logprobs": FLAGS,
        "audio": JSON_VALUES,
        "web_search_options": JSON_VALUES,
        "moderation": JSON_VALUES,
        "seed": JSON_VALUES,
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
    except WireError as exc:
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


# -- schemathesis -------------------------------------------------------------------------------------------------

# Fuzzing examples per operation; the coverage phase adds its own (boundaries, each field missing or of the wrong
# type, unexpected methods). About 1,400 requests in all, in 20-30 s on 2 cores.
MAX_EXAMPLES = 200
# No answer may take longer, streams included: the shim's own deadline below bounds every call.
MAX_RESPONSE_S = 10.0
SHIM_TIMEOUT_S = 5.0
# A 504 for a caller whose own deadline was shorter is its deadline passing, not a server fault (see above).
SHORT_DEADLINE_S = 0.25
DEADLINE_HEADERS = ("request-timeout", "x-request-timeout", "x-stainless-read-timeout")


@contextlib.contextmanager
def shim_in_a_thread() -> Iterator[str]:
    """The simulated provider, the service and the shim (with KEY) on their own event loop in a thread;
    yields the shim's URL. schemathesis calls it synchronously, so the test's thread cannot serve it."""
    url: concurrent.futures.Future[str] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with stack() as shim:
            url.set_result(shim.url)
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:
            if not url.done():
                url.set_exception(exc)
            raise
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="shim-under-test", daemon=True)
    thread.start()
    try:
        yield url.result(timeout=30)
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is closed already when the stack failed to start
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


@contextlib.asynccontextmanager
async def stack() -> AsyncIterator[RunningShim]:
    runner, sim = await start_sim(SimConfig.from_config(load_config(env={})))
    try:
        async with running_server(server_config(sim)) as server:
            config = ShimConfig(
                port=0,
                grpc_target=f"127.0.0.1:{server.port}",
                api_keys=frozenset({KEY}),
                timeout_s=SHIM_TIMEOUT_S,
                grace_s=0.5,
            )
            async with running_shim(config) as shim:
                yield shim
    finally:
        await runner.cleanup()


@dataclasses.dataclass
class Tally:
    """What the run sent and got back."""

    statuses: Counter[int] = dataclasses.field(default_factory=Counter)
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    operations: Counter[str] = dataclasses.field(default_factory=Counter)
    deadlines_passed: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def record(self, case: Case, response: Response) -> None:
        self.statuses[response.status_code] += 1
        if _deadline_passed(case, response):
            self.deadlines_passed += 1
        self.operations[case.operation.label] += 1
        if case.meta is not None:
            self.kinds[f"{case.meta.phase.name.value} {case.meta.generation.mode.value}"] += 1

    def summary(self) -> str:
        server_errors = self.server_errors()
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.kinds.items()))
        return (
            f"schemathesis {schemathesis.__version__}: {self.statuses.total()} requests in "
            f"{time.monotonic() - self.started:.1f} s, {server_errors} 5xx (and {self.deadlines_passed} 504 at a "
            f"caller deadline under {SHORT_DEADLINE_S:g} s); by status {statuses}; by phase {kinds}"
        )

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500) - self.deadlines_passed


@pytest.fixture(scope="module")
def tally(pytestconfig: pytest.Config) -> Iterator[Tally]:
    """Counts the run's requests, and says how many there were and what they got, in the test report."""
    counts = Tally()
    yield counts
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{counts.summary()}")
    # An operation with no parameters still gets its coverage cases (each unexpected method, say).
    assert all(n >= 5 for n in counts.operations.values()), counts.operations
    assert counts.server_errors() == 0, counts.summary()


@pytest.fixture(scope="module")
def shim_url() -> Iterator[str]:
    with shim_in_a_thread() as url:
        yield url


# The document as the file holds it (the test above checks the shim serves the same). Loaded eagerly, not with
# schemathesis.pytest.from_fixture: 4.32's lazy loader sets Node._nodeid, which pytest 9.2 no longer has.
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "request-timeout": MAX_RESPONSE_S + 5,
            # Read every stream to its end (schemathesis stops at 20 events by default); the timeout bounds it.
            "max-stream-events": 100_000,
            "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},
            # Extra headers are no violation of an HTTP API: the shim ignores those it does not read.
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "allow-extra-parameters": False},
            "phases": {"stateful": {"enabled": False}},
            # An upload's parts are bytes: a "file" generated as a number or an object arrives as the bytes that
            # spell it, as valid an upload as any, so no request the generator means as invalid can be told apart.
            "operations": [
                {"include-operation-id": "createFile", "checks": {"negative_data_rejection": {"enabled": False}}}
            ],
            "checks": {
                # 504 only when the caller's deadline was short: checked by deadline_passed_or_no_server_error.
                "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "504"]},
                "max_response_time": MAX_RESPONSE_S,
                # A request the document allows may still be refused for what it means: a language or model
                # the service does not know (the document cannot list every spelling) is a 400 from the service
                # (which refused_for_its_meaning checks), besides schemathesis's defaults; and a 408, the
                # document's answer when the body does not arrive within the caller's own deadline (the
                # generator sends X-Request-Timeout as short as 0.05 s: a fresh clone's run met one).
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "400", "401", "403", "404", "408", "409", "429", "5xx"]
                },
            },
        }
    ),
)


def stream_ends(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A stream ends with [DONE], or with one error event when it failed after it began. (schemathesis checks each
    event against the document.)"""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    events = [event.removeprefix("data: ") for event in response.text.split("\n\n") if event]
    assert events, "an empty stream"
    done = [i for i, event in enumerate(events) if event == "[DONE]"]
    if done:
        assert done == [len(events) - 1], f"[DONE] is not the last event alone: {events[-3:]}"
    else:
        assert "error" in json.loads(events[-1]), f"the stream ends with neither [DONE] nor an error: {events[-3:]}"
    return True


def _stated_deadline(case: Case) -> float | None:
    values = []
    for name, value in (case.headers or {}).items():
        if name.lower() in DEADLINE_HEADERS:
            with contextlib.suppress(TypeError, ValueError):
                values.append(float(value))
    return min(values, default=None)


def _deadline_passed(case: Case, response: Response) -> bool:
    deadline = _stated_deadline(case)
    return response.status_code == 504 and deadline is not None and deadline < SHORT_DEADLINE_S


def deadline_passed_or_no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 5xx but a 504 to a caller whose own deadline was under SHORT_DEADLINE_S."""
    if response.status_code < 500:
        return None
    assert _deadline_passed(case, response), f"{response.status_code} with a deadline of {_stated_deadline(case)} s"
    return True


def refused_for_its_meaning(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 400 to a request the document allows comes from the service (an unknown language or model, say) or says
    the request names no target language it can read (the document cannot state which prompts name one), never
    from the shim's own checks of types and bounds, which the document states."""
    if response.status_code != 400 or case.meta is None or case.meta.generation.mode.is_negative:
        return None
    error = json.loads(response.text)["error"]
    meaning = ("invalid_argument", "out_of_range", "unreadable_prompt", "missing_target_language", "unknown_language")
    assert error["code"] in meaning, f"a valid request refused by the shim: {error}"
    return True


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_shim_conforms_to_its_document(case: Case, shim_url: str, tally: Tally) -> None:
    response = case.call(base_url=shim_url)
    tally.record(case, response)
    case.validate_response(
        response,
        additional_checks=[stream_ends, refused_for_its_meaning, deadline_passed_or_no_server_error],
        transport_kwargs={"base_url": shim_url},
    )
