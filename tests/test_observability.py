"""One trace from the HTTP request to the provider call, the metrics an operator watches, one log line a request.

The shim, the service and the simulated provider run as separate processes
(`python -m translane.cli ...`) on loopback, exactly as deployed: tracing is
switched on by the standard OTEL_* variables, with OTLP/HTTP to a receiver in
this test, and both Prometheus endpoints are scraped over HTTP.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from translane.config import default_models_text, load_config

from .helpers.eventually import eventually_sync
from .helpers.otlp import CLIENT, INTERNAL, SERVER, STATUS_ERROR, OtlpReceiver, SpanRecord
from .helpers.processes import clean_env, free_port, translane

MODEL = "doubao-seed-translation-250915"  # the default model; the provider allows it 2 requests a minute here
FALLBACK = "doubao-seed-1-6-flash-250828"  # its first fallback
# Here in a lane of its own with room for one call, and 60 RPM: a bucket of one request refilling
# about every second, so a second call in quick succession waits for the lane and then the governor.
SOLO_MODEL = "doubao-seed-1-6-251015"
METRICS_MODEL = "deepseek-v3-2-251201"
SHIM_KEY = "sk-shim-e2e-" + secrets.token_hex(8)
PROVIDER_KEY = "sk-ark-e2e-" + secrets.token_hex(8)
# The simulated provider's RNG with this seed draws 0.134 then 0.847: with error_rate 0.5
# the first call after a reset fails with a 500 and the second succeeds.
SIM_SEED = 1
TEXT = "Observability must never leak this sentence {n}."
TEXTS_SENT: list[str] = []


@dataclass
class Stack:
    shim: str
    sim: str
    service_metrics: str
    receiver: OtlpReceiver
    service_log: Path
    logs: list[Path]

    def chat(self, model: str, *, stream: bool = False, task_id: str = "") -> tuple[str, str, dict[str, Any]]:
        """POST /v1/chat/completions with a fresh traceparent; (trace id, caller's span id, answer)."""
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        text = TEXT.format(n=len(TEXTS_SENT))
        TEXTS_SENT.append(text)
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": text}],
            "target_language": "zh",
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if model:
            body["model"] = model
        headers = {
            "Authorization": f"Bearer {SHIM_KEY}",
            "Content-Type": "application/json",
            "traceparent": f"00-{trace_id}-{span_id}-01",
        }
        if task_id:
            headers["X-Task-Id"] = task_id
        req = urllib.request.Request(f"{self.shim}/v1/chat/completions", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read().decode()
        if stream:
            frames = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
            usage = next(f["usage"] for f in reversed(frames) if f.get("usage"))
            return trace_id, span_id, {"frames": frames, "usage": usage}
        return trace_id, span_id, json.loads(raw)

    def sim_post(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"{self.sim}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=5).close()

    def traceparents(self) -> list[str]:
        with urllib.request.urlopen(f"{self.sim}/_sim/stats", timeout=5) as r:
            return list(json.loads(r.read())["traceparents"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("observability")
    service_models = _models_file(tmp / "service-models.yaml", _solo_lane)
    # The provider grants the default model far less than the models file claims, so its third call is a 429.
    sim_models = _models_file(tmp / "sim-models.yaml", lambda d: d["models"][MODEL].update(rpm=2))
    sim_port, grpc_port, metrics_port, shim_port = free_port(), free_port(), free_port(), free_port()
    with OtlpReceiver() as receiver:
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        sim_env = clean_env(TRANSLANE_LOG_LEVEL="WARNING")
        service_env = clean_env(TRANSLANE_LOG_LEVEL="INFO", ARK_API_KEY=PROVIDER_KEY, **otel)
        shim_env = clean_env(TRANSLANE_LOG_LEVEL="INFO", TRANSLANE_API_KEYS=SHIM_KEY, **otel)
        logs = [tmp / "sim.log", tmp / "service.log", tmp / "shim.log"]
        sim_args = ["--models-file", str(sim_models), "sim", "--port", str(sim_port), "--seed", str(SIM_SEED), "--echo"]
        sim_args += ["--ttft-s", "0.01", "--tokens-per-s", "2000"]
        serve_args = ["--models-file", str(service_models), "serve", "--port", str(grpc_port)]
        serve_args += ["--metrics-port", str(metrics_port)]
        serve_args += ["--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
        shim_args = ["shim", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"]
        with (
            translane(sim_args, sim_port, logs[0], sim_env),
            translane(serve_args, grpc_port, logs[1], service_env),
            translane(shim_args, shim_port, logs[2], shim_env),
        ):
            yield Stack(
                shim=f"http://127.0.0.1:{shim_port}",
                sim=f"http://127.0.0.1:{sim_port}",
                service_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
                receiver=receiver,
                service_log=logs[1],
                logs=logs,
            )
        # After every test: nothing an operator sees holds a translated text or a key.
        secrets_ = [*TEXTS_SENT, SHIM_KEY, PROVIDER_KEY]
        for span in receiver.spans:
            for key, value in span.attributes.items():
                assert not any(s in str(value) for s in secrets_), f"{span.name}: attribute {key} leaks {value!r}"
        for log in logs:
            content = log.read_text(encoding="utf-8")
            assert not any(s in content for s in secrets_), f"{log.name} leaks a text or a key"


def _models_file(path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """The shipped models file, changed by `change`, written as YAML."""
    data = tomllib.loads(default_models_text())
    change(data)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _solo_lane(data: dict[str, Any]) -> None:
    data["lanes"]["solo"] = {"max_concurrency": 1, "max_queue": 100}
    data["models"][SOLO_MODEL].update(lane="solo", rpm=60)


# -- traces ------------------------------------------------------------------


def _of(spans: list[SpanRecord], service: str, kind: int, name: str) -> list[SpanRecord]:
    return sorted(
        (s for s in spans if s.service == service and s.kind == kind and s.name == name), key=lambda s: s.start_ns
    )


def _one(spans: list[SpanRecord], service: str, kind: int, name: str) -> SpanRecord:
    found = _of(spans, service, kind, name)
    assert len(found) == 1, f"expected one {service} {name}, got {len(found)}"
    return found[0]


def _complete(calls: int, rpc: str = "Translate") -> Callable[[list[SpanRecord]], bool]:
    """The whole request has been exported: its HTTP span and `calls` provider calls under the server span."""

    def done(spans: list[SpanRecord]) -> bool:
        posts = [s for s in spans if s.service == "translane" and s.kind == CLIENT and s.name == "POST"]
        return (
            any(s.service == "translane-shim" and s.kind == SERVER for s in spans)
            and any(s.service == "translane-shim" and s.kind == CLIENT for s in spans)
            and any(s.name == f"/translane.v1.Translator/{rpc}" and s.kind == SERVER for s in spans)
            and len(posts) >= calls
        )

    return done


def _outline(spans: list[SpanRecord]) -> str:
    t0 = min(s.start_ns for s in spans)
    lines = []
    for s in sorted(spans, key=lambda s: s.start_ns):
        at, took = (s.start_ns - t0) / 1e6, (s.end_ns - s.start_ns) / 1e6
        lines.append(f"  {at:8.1f} ms +{took:7.1f} ms  {s.service} {s.name} {s.attributes}")
    return "\n".join(lines)


def _check_chain(stack: Stack, spans: list[SpanRecord], caller_span: str, rpc: str = "Translate") -> SpanRecord:
    """HTTP span → gRPC client span → gRPC server span; returns the server span."""
    http = _one(spans, "translane-shim", SERVER, "POST /v1/chat/completions")
    assert http.parent_id == caller_span  # the caller's traceparent was honoured
    assert http.attributes.get("http.status_code", http.attributes.get("http.response.status_code")) == 200
    client = _one(spans, "translane-shim", CLIENT, f"/translane.v1.Translator/{rpc}")
    assert client.parent_id == http.span_id
    server = _one(spans, "translane", SERVER, f"/translane.v1.Translator/{rpc}")
    assert server.parent_id == client.span_id
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert http.start_ns <= client.start_ns <= server.start_ns and server.end_ns <= http.end_ns
    return server


def _check_calls(stack: Stack, spans: list[SpanRecord], server: SpanRecord, models: list[str]) -> list[SpanRecord]:
    """Under the server span: one call span per provider call (in time order, `models`), each over the HTTP
    span whose traceparent the provider received, and the lane and governor waits (only those that happened)."""
    calls = sorted((s for s in spans if s.kind == CLIENT and s.name.startswith("chat ")), key=lambda s: s.start_ns)
    assert [c.attributes["gen_ai.request.model"] for c in calls] == models
    posts = _of(spans, "translane", CLIENT, "POST")
    assert len(posts) == len(calls)
    seen = stack.traceparents()
    for i, call in enumerate(calls):
        assert call.parent_id == server.span_id
        assert call.attributes["translane.attempt"] == i
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["translane.model"] == models[i]
        (post,) = [p for p in posts if p.parent_id == call.span_id]
        assert post.start_ns >= call.start_ns and post.end_ns <= call.end_ns
        assert f"00-{server.trace_id}-{post.span_id}-01" in seen, "the provider never saw this call's traceparent"
    for wait in (s for s in spans if s.name in ("translane.lane.wait", "translane.governor.wait")):
        assert wait.parent_id == server.span_id and wait.kind == INTERNAL
        # Each wait ends before the call it let through starts.
        assert any(wait.end_ns <= c.start_ns + 1_000_000 for c in calls)
    return calls


def test_a_retry_is_one_trace_from_the_http_request_to_each_provider_call(stack: Stack) -> None:
    stack.sim_post("/_sim/reset", {})
    stack.sim_post("/_sim/config", {"error_rate": 0.5})
    try:
        trace_id, caller, answer = stack.chat(SOLO_MODEL, task_id="e2e-retry")
    finally:
        stack.sim_post("/_sim/config", {"error_rate": 0.0})
    spans = stack.receiver.wait_for(trace_id, _complete(calls=2))
    assert {s.trace_id for s in spans} == {trace_id}

    server = _check_chain(stack, spans, caller)
    calls = _check_calls(stack, spans, server, [SOLO_MODEL, SOLO_MODEL])
    failed, ok = calls
    assert failed.status == STATUS_ERROR and failed.attributes["error.type"] == "InternalServiceError"
    assert failed.attributes["http.response.status_code"] == 500
    assert ok.status != STATUS_ERROR and ok.attributes["gen_ai.usage.output_tokens"] > 0
    # The retry passed the governor again, and waited there: the model's one-request bucket was spent.
    retry_waits = [s for s in spans if s.name == "translane.governor.wait" and s.start_ns >= failed.end_ns - 1_000_000]
    assert len(retry_waits) == 1, _outline(spans)
    (governed,) = retry_waits
    assert governed.end_ns <= ok.start_ns + 1_000_000 and governed.attributes["translane.model"] == SOLO_MODEL
    assert ok.attributes["translane.governed_ms"] > 0

    usage = answer["usage"]
    a = server.attributes
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == SOLO_MODEL
    assert a["translane.task_id"] == "e2e-retry" and a["translane.segments"] == 1
    assert a["translane.retries"] == 1 and a["translane.fallbacks"] == 0 and a["translane.fallback"] is False
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["translane.cost"] > 0 and a["translane.lane"] == "solo"

    # One INFO line for the request, JSON (not a terminal), carrying the trace id.
    line = _log_line(stack.service_log, "e2e-retry")
    assert line["level"] == "info" and line["status"] == "OK" and line["trace_id"] == trace_id
    assert line["model"] == SOLO_MODEL and line["lane"] == "solo" and line["retries"] == 1
    assert line["prompt_tokens"] == usage["prompt_tokens"] and line["completion_tokens"] == usage["completion_tokens"]
    assert line["cost"] > 0 and line["currency"] == "CNY"


def test_a_fallback_after_a_429_is_one_trace(stack: Stack) -> None:
    stack.sim_post("/_sim/reset", {})
    before = scrape(stack.service_metrics)
    for _ in range(2):
        assert stack.chat("")[2]["served_model"] == MODEL
    trace_id, caller, answer = stack.chat("")
    # The reply names the model asked for, and the one that served in its extension field.
    assert answer["model"] == MODEL and answer["served_model"] == FALLBACK
    spans = stack.receiver.wait_for(trace_id, _complete(calls=2))

    server = _check_chain(stack, spans, caller)
    limited, served = _check_calls(stack, spans, server, [MODEL, FALLBACK])
    assert limited.status == STATUS_ERROR and limited.attributes["http.response.status_code"] == 429
    assert limited.attributes["error.type"].startswith("RateLimitExceeded")
    assert limited.attributes["translane.fallback"] is False and served.attributes["translane.fallback"] is True
    assert served.attributes["translane.lane"] == "fast"
    a = server.attributes
    assert a["gen_ai.request.model"] == MODEL and a["gen_ai.response.model"] == FALLBACK
    assert a["translane.fallbacks"] == 1 and a["translane.fallback"] is True and a["translane.retries"] == 1

    moved = delta(before, scrape(stack.service_metrics))
    assert moved[("translane_upstream_rate_limited_total", (("model", MODEL),))] == 1
    assert moved[("translane_upstream_calls_total", (("model", MODEL), ("outcome", "rate_limited")))] == 1
    assert moved[("translane_upstream_calls_total", (("model", MODEL), ("outcome", "ok")))] == 2
    assert moved[("translane_upstream_calls_total", (("model", FALLBACK), ("outcome", "ok")))] == 1
    assert moved[("translane_fallbacks_total", (("fallback", FALLBACK), ("model", MODEL)))] == 1
    ok = (("lane", "slow"), ("model", MODEL), ("rpc", "Translate"), ("status", "OK"))
    assert moved[("translane_requests_total", ok)] == 3


def test_a_stream_has_one_server_span_covering_it_with_its_first_token_marked(stack: Stack) -> None:
    trace_id, caller, answer = stack.chat(METRICS_MODEL, stream=True)
    assert any(c.get("finish_reason") == "stop" for f in answer["frames"] for c in f["choices"])
    spans = stack.receiver.wait_for(trace_id, _complete(calls=1, rpc="TranslateStream"))
    server = _check_chain(stack, spans, caller, rpc="TranslateStream")
    (call,) = _check_calls(stack, spans, server, [METRICS_MODEL])
    assert "first_token" in server.events
    assert 0 < server.attributes["translane.time_to_first_token_ms"] < (server.end_ns - server.start_ns) / 1e6
    assert server.end_ns >= call.end_ns  # the server span lasts as long as the stream


def test_waits_for_the_lane_and_the_governor_are_spans_of_their_own(stack: Stack) -> None:
    solo = (("model", SOLO_MODEL),)

    def full() -> bool:
        now = scrape(stack.service_metrics)
        return now[("translane_governor_request_level", solo)] >= now[("translane_governor_request_capacity", solo)]

    # Earlier tests may have taken the solo model's one request.
    eventually_sync(full, 5.0, "the solo model's request bucket full")
    with ThreadPoolExecutor(2) as pool:
        traces = list(pool.map(lambda _: stack.chat(SOLO_MODEL), range(2)))
    waited = []
    for trace_id, caller, _ in traces:
        spans = stack.receiver.wait_for(trace_id, _complete(calls=1))
        server = _check_chain(stack, spans, caller)
        (call,) = _check_calls(stack, spans, server, [SOLO_MODEL])
        waits = {s.name: s for s in spans if s.kind == INTERNAL}
        if waits:
            waited.append((waits, call))
    # One of the two got the lane's only slot at once; the other queued behind it, then waited for the
    # model's request bucket to refill.
    assert len(waited) == 1
    waits, call = waited[0]
    lane, governed = waits["translane.lane.wait"], waits["translane.governor.wait"]
    assert lane.attributes["translane.lane"] == "solo" and lane.attributes["translane.priority"] == "interactive"
    assert lane.end_ns <= governed.start_ns + 1_000_000 and governed.end_ns <= call.start_ns + 1_000_000
    assert (governed.end_ns - governed.start_ns) / 1e9 > 0.5
    assert governed.attributes["translane.reserved_tokens"] > 0
    assert call.attributes["translane.queued_ms"] > 0 and call.attributes["translane.governed_ms"] > 500


# -- metrics -----------------------------------------------------------------

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Series:
    """Every sample at `url`, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before: Series, after: Series) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def test_both_metrics_endpoints_count_the_traffic(stack: Stack) -> None:
    shim_metrics = f"{stack.shim}/metrics"
    before, shim_before = scrape(stack.service_metrics), scrape(shim_metrics)
    usages = [stack.chat(METRICS_MODEL)[2]["usage"] for _ in range(3)]
    usages.append(stack.chat(METRICS_MODEL, stream=True)[2]["usage"])
    moved = delta(before, scrape(stack.service_metrics))
    shim_moved = delta(shim_before, scrape(shim_metrics))
    after = scrape(stack.service_metrics)

    m = (("model", METRICS_MODEL),)
    for rpc, n in (("Translate", 3), ("TranslateStream", 1)):
        labels = (("lane", "fast"), ("model", METRICS_MODEL), ("rpc", rpc), ("status", "OK"))
        assert moved[("translane_requests_total", labels)] == n
        assert moved[("translane_request_duration_seconds_count", (("model", METRICS_MODEL), ("rpc", rpc)))] == n
    assert moved[("translane_upstream_calls_total", (*m, ("outcome", "ok")))] == 4
    assert moved[("translane_upstream_duration_seconds_count", m)] == 4
    assert moved[("translane_queue_wait_seconds_count", (("lane", "fast"),))] == 4
    assert moved[("translane_governor_wait_seconds_count", m)] == 4
    assert moved[("translane_time_to_first_token_seconds_count", m)] == 1
    assert moved.get(("translane_upstream_rate_limited_total", m), 0) == 0
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    assert moved[("translane_tokens_total", (*m, ("type", "input")))] == prompt > 0
    assert moved[("translane_tokens_total", (*m, ("type", "output")))] == completion > 0
    price = load_config(env={}).models[METRICS_MODEL]
    cost = (prompt * price.input_price_per_mtok + completion * price.output_price_per_mtok) / 1e6
    assert moved[("translane_cost_total", (("currency", "CNY"), *m))] == pytest.approx(cost)

    # Read at scrape time: nothing in flight or queued now, and the governor's view of the model.
    assert after[("translane_lane_in_flight", (("lane", "fast"),))] == 0
    assert after[("translane_lane_queued", (("lane", "fast"),))] == 0
    assert after[("translane_lane_max_concurrency", (("lane", "fast"),))] == 500
    assert 0.9 * 30000 < after[("translane_governor_admitted_rpm", m)] <= 30000
    assert 0 < after[("translane_governor_request_level", m)] <= after[("translane_governor_request_capacity", m)]
    assert after[("translane_governor_paused_seconds", m)] == 0  # no 429 for this model, so no pause
    assert after[("process_resident_memory_bytes", ())] > 0

    route = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert shim_moved[("translane_shim_requests_total", route)] == 4
    assert shim_moved[("translane_shim_request_duration_seconds_count", (("route", "/v1/chat/completions"),))] == 4
    assert shim_moved[("translane_shim_requests_in_flight", ())] == 0


# -- logs --------------------------------------------------------------------


def _log_line(log: Path, task_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    def mine() -> list[dict[str, Any]] | None:
        lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("task_id") == task_id] or None

    found = eventually_sync(mine, timeout_s, f"a log line for task {task_id} in {log}")
    assert len(found) == 1, found
    return found[0]


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    """Without OTEL_TRACES_EXPORTER nothing is traced: the provider sees no traceparent we made up."""
    sim_port, grpc_port = free_port(), free_port()
    env = clean_env(TRANSLANE_LOG_LEVEL="WARNING")
    with (
        translane(["sim", "--port", str(sim_port), "--ttft-s", "0", "--echo"], sim_port, tmp_path / "sim.log", env),
        translane(
            ["serve", "--port", str(grpc_port), "--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"],
            grpc_port,
            tmp_path / "serve.log",
            env,
        ),
    ):
        command = ["translate", "--target", f"127.0.0.1:{grpc_port}", "--to", "zh", "hello there"]
        done = subprocess.run(
            [sys.executable, "-m", "translane.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert "hello there" in done.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/_sim/stats", timeout=5) as r:
            assert json.loads(r.read())["traceparents"] == []
    # Nothing printed either (no console exporter, no startup chatter at WARNING).
    assert (tmp_path / "serve.log").read_text().strip() == ""


@pytest.mark.parametrize(
    ("otel", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_tracing_setting_it_cannot_honour_stops_the_start(otel: dict[str, str], named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "translane.cli", "serve", "--port", str(free_port())],
        env=clean_env(**otel),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and named in done.stderr
