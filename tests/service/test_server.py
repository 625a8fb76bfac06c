"""The gRPC server end to end: real server, real gRPC, the simulated provider on loopback."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from translane.config import Config, load_config
from translane.sim import SimConfig
from translane.tokens import count_tokens
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import FullQueue, Sim, server_config

MODEL = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-251015"


def fast_retries(cfg: Config) -> Config:
    providers = {n: dataclasses.replace(p, retry_base_s=0.01, retry_max_s=0.05) for n, p in cfg.providers.items()}
    return dataclasses.replace(cfg, providers=providers)


@pytest.fixture
def config(sim: Sim) -> Config:
    return fast_retries(server_config(sim, max_segment_chars=20000))


async def test_unary_translates_each_segment_in_order(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    segments = ["First paragraph.", "Second one, {0} kept.", "<b0>Third</b0>", ""]
    resp = await stub.Translate(
        pb.TranslateRequest(segments=segments, target_language="zh-CN", task_id="t-1"), timeout=10
    )
    texts = [t.text for t in resp.translations]
    assert texts[:3] == [f"[sim auto->zh] {s}" for s in segments[:3]]
    assert texts[3] == ""  # an empty segment costs no call
    assert resp.model == MODEL and all(t.model == MODEL for t in resp.translations)
    assert resp.task_id == "t-1"
    stats = (await sim.stats())["models"][MODEL]
    assert stats["requests"] == 3
    assert resp.usage.prompt_tokens == stats["prompt_tokens"]
    assert resp.usage.completion_tokens == stats["completion_tokens"]
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    expected_cost = (resp.usage.prompt_tokens * 1.2 + resp.usage.completion_tokens * 3.6) / 1e6
    assert resp.usage.cost == pytest.approx(expected_cost, rel=1e-6)
    assert resp.usage.currency == "CNY" and not resp.usage.estimated
    assert resp.timing.total_ms >= resp.timing.upstream_ms > 0


async def test_chat_model_and_source_language(stub: pb_grpc.TranslatorStub) -> None:
    resp = await stub.Translate(
        pb.TranslateRequest(segments=["Bonjour"], target_language="en", source_language="fr", model=CHAT), timeout=10
    )
    assert resp.model == CHAT
    assert resp.translations[0].text.endswith("Bonjour")
    assert resp.usage.prompt_tokens > count_tokens("Bonjour")  # the system prompt counts too


async def test_stream_yields_segments_in_order_with_final_usage(stub: pb_grpc.TranslatorStub) -> None:
    segments = [f"Segment number {i} with a few words." for i in range(5)]
    chunks = [
        c
        async for c in stub.TranslateStream(
            pb.TranslateRequest(segments=segments, target_language="ja", model=CHAT), timeout=10
        )
    ]
    assert chunks[-1].final
    texts: dict[int, str] = {}
    order: list[int] = []
    for c in chunks[:-1]:
        if c.segment_done:
            order.append(c.segment_index)
            assert c.model == CHAT
        else:
            texts[c.segment_index] = texts.get(c.segment_index, "") + c.delta
    assert order == list(range(5))
    assert [texts[i] for i in range(5)] == [f"[sim auto->Japanese] {s}" for s in segments]
    final = chunks[-1].usage
    assert final.completion_tokens >= sum(count_tokens(texts[i]) for i in range(5)) - 5
    running = [c.usage.total_tokens for c in chunks]
    assert running == sorted(running)  # usage only grows


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "translane.v1.Translator"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for resp in refl.ServerReflectionInfo(requests()):
        names = [s.name for s in resp.list_services_response.service]
    assert "translane.v1.Translator" in names and "grpc.health.v1.Health" in names


async def test_list_models(stub: pb_grpc.TranslatorStub) -> None:
    resp = await stub.ListModels(pb.ListModelsRequest(), timeout=5)
    assert resp.default_model == MODEL
    by_name = {m.name: m for m in resp.models}
    slow = by_name[MODEL]
    assert (slow.lane, slow.rpm, slow.tpm, slow.max_concurrency) == ("slow", 5000, 500000, 80)
    assert (slow.max_input_tokens, slow.max_output_tokens, slow.context_tokens) == (1000, 3000, 4000)
    assert slow.api_style == "responses" and slow.available
    assert by_name[CHAT].lane == "fast" and by_name[CHAT].rpm == 30000


class TestHugeLimits:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        cfg = server_config(sim)
        huge = dataclasses.replace(cfg.models[MODEL], rpm=2**40, tpm=2**50)
        return dataclasses.replace(cfg, models={**cfg.models, MODEL: huge})

    async def test_limits_past_32_bits_are_listed_as_they_are(self, stub: pb_grpc.TranslatorStub) -> None:
        resp = await stub.ListModels(pb.ListModelsRequest(), timeout=5)
        slow = {m.name: m for m in resp.models}[MODEL]
        assert (slow.rpm, slow.tpm) == (2**40, 2**50)


async def test_long_segment_is_split_at_sentences_and_rejoined(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    sentences = [f"This is sentence number {i} of a long document about rate limits." for i in range(250)]
    text = " ".join(sentences)
    assert count_tokens(text) > 3000
    resp = await stub.Translate(pb.TranslateRequest(segments=[text], target_language="zh"), timeout=20)
    out = resp.translations[0].text
    calls = (await sim.stats())["models"][MODEL]["requests"]
    assert calls >= 4
    assert out.count("[sim auto->zh] ") == calls
    # Every sentence comes back once, in order, and no piece was cut mid-sentence.
    stripped = out.replace("[sim auto->zh] ", "")
    assert stripped == text


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"segments": [], "target_language": "zh"}, "segments: at least one"),
        ({"segments": ["hi"], "target_language": ""}, "target_language: required"),
        ({"segments": ["hi"], "target_language": "zh", "model": "gpt-nope"}, "model: unknown model 'gpt-nope'"),
        ({"segments": ["hi", "x" * 20001], "target_language": "zh"}, "segments[1]: 20001 characters"),
        ({"segments": ["hi"], "target_language": "zh", "mime_type": "image/png"}, "mime_type: must be one of"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    stub: pb_grpc.TranslatorStub, sim: Sim, request_kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Translate(pb.TranslateRequest(**request_kwargs), timeout=5)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    assert (await sim.stats())["models"].get(MODEL, {}).get("requests", 0) == 0


async def test_unsupported_target_language_goes_to_a_fallback_that_speaks_it(stub: pb_grpc.TranslatorStub) -> None:
    # The translation model knows 28 languages; Hebrew is served by its chat fallback.
    resp = await stub.Translate(pb.TranslateRequest(segments=["Hello"], target_language="he"), timeout=10)
    assert resp.model == "doubao-seed-1-6-flash-250828"


async def test_provider_5xx_is_retried(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    await sim.set(error_rate=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh", model=CHAT), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "InternalServiceError" in (info.value.details() or "")
    errors = {name: m["errors"] for name, m in (await sim.stats())["models"].items() if m["errors"]}
    # The first call and max_retries retries; after three failures in a row the model is taken to be
    # down (governor.provider_down_after_failures) and the retries go to its fallbacks.
    assert sum(errors.values()) == 1 + 4 and errors[CHAT] == 3, errors
    await sim.set(error_rate=0.0)
    resp = await stub.Translate(pb.TranslateRequest(segments=["hi"], target_language="zh", model=CHAT), timeout=10)
    assert resp.translations[0].text.endswith("hi")


class TestProviderRejection:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        # The provider's input limit is lower than the models file says: it answers 400.
        cfg = SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)
        limits = dict(cfg.models)
        limits[MODEL] = dataclasses.replace(limits[MODEL], max_input_tokens=20)
        return dataclasses.replace(cfg, models=limits)

    async def test_provider_400_is_not_retried(self, stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
        text = "A sentence that is comfortably longer than twenty tokens, so the provider refuses it outright. " * 2
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(pb.TranslateRequest(segments=[text], target_language="zh"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "InvalidParameter" in (info.value.details() or "")
        stats = (await sim.stats())["models"][MODEL]
        assert stats["requests"] + stats["errors"] + stats["rate_limited"] <= 1


class TestQueueFull(FullQueue):
    async def test_full_queue_is_resource_exhausted_with_retry_info(self, stub: pb_grpc.TranslatorStub) -> None:
        calls = [
            stub.Translate(pb.TranslateRequest(segments=[f"s{i}"], target_language="zh", model=CHAT), timeout=10)
            for i in range(4)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(errors) == 2 and sum(1 for r in results if isinstance(r, pb.TranslateResponse)) == 2
        err = errors[0]
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(err.trailing_metadata() or ())
        assert int(trailers["retry-after"]) >= 1
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info)
        assert info.retry_delay.seconds + info.retry_delay.nanos / 1e9 > 0
