"""What comes back is what was asked for: no silent cut, no reasoning in a translation, no junk language sent.

Driven over real gRPC against the simulated provider, which honours output caps and plays a
thinking model on demand.
"""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from translane.config import Config, load_config
from translane.sim import SimConfig
from translane.upstream import ThinkFilter, strip_think
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config

TR = "doubao-seed-translation-250915"
CHAT = "doubao-seed-1-6-251015"
TWO_SENTENCES = "The first sentence is here. The second one follows it."


def no_fallbacks(cfg: Config) -> Config:
    models = {n: dataclasses.replace(m, fallbacks=()) for n, m in cfg.models.items()}
    return dataclasses.replace(cfg, models=models)


@pytest.fixture
def config(sim: Sim) -> Config:
    return no_fallbacks(server_config(sim))


async def calls(sim: Sim, model: str = TR) -> int:
    return int((await sim.stats())["models"][model]["admitted"])


async def read_stream(stub: pb_grpc.TranslatorStub, req: pb.TranslateRequest) -> list[pb.TranslateChunk]:
    return [c async for c in stub.TranslateStream(req, timeout=10)]


class TestTruncation:
    async def test_a_cut_at_the_callers_cap_is_retried_with_the_models_budget(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        req = pb.TranslateRequest(segments=[TWO_SENTENCES], target_language="zh", max_output_tokens=4)
        resp = await stub.Translate(req, timeout=10)
        assert resp.translations[0].text == f"[sim auto->zh] {TWO_SENTENCES}"
        assert not resp.translations[0].truncated
        assert await calls(sim) == 2

    async def test_a_cut_at_the_models_own_limit_is_translated_in_smaller_pieces(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        # The whole answer is 19 of the sim's token-sized pieces; each sentence's is 13.
        await sim.set(output_cap_tokens=15)
        resp = await stub.Translate(pb.TranslateRequest(segments=[TWO_SENTENCES], target_language="zh"), timeout=10)
        text = resp.translations[0].text
        assert text == "[sim auto->zh] The first sentence is here. [sim auto->zh] The second one follows it."
        assert not resp.translations[0].truncated

    async def test_what_cannot_complete_fails_clearly_unless_the_caller_accepts_a_cut(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        await sim.set(output_cap_tokens=9)  # "[sim auto->zh] ok" fits; no sentence does
        req = pb.TranslateRequest(segments=["ok", TWO_SENTENCES], target_language="zh")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert (info.value.details() or "").startswith("segments[1]: ")
        req.allow_truncated = True
        resp = await stub.Translate(req, timeout=10)
        assert [t.truncated for t in resp.translations] == [False, True]
        assert resp.translations[1].text and resp.translations[1].text != f"[sim auto->zh] {TWO_SENTENCES}"

    async def test_a_streamed_cut_is_an_error_or_a_marked_segment_never_a_silent_end(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        await sim.set(output_cap_tokens=6)
        req = pb.TranslateRequest(segments=[TWO_SENTENCES], target_language="zh")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read_stream(stub, req)
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        req.allow_truncated = True
        chunks = await read_stream(stub, req)
        done = [c for c in chunks if c.segment_done]
        assert len(done) == 1 and done[0].truncated and chunks[-1].final


class TestThinkingModels:
    @pytest.mark.parametrize("in_content", [0, 1])
    @pytest.mark.parametrize("stream", [False, True])
    async def test_reasoning_never_reaches_the_translation_and_is_counted(
        self, stub: pb_grpc.TranslatorStub, sim: Sim, in_content: int, stream: bool
    ) -> None:
        await sim.set(reasoning_tokens=30, think_in_content=in_content)
        req = pb.TranslateRequest(segments=["Hello there."], target_language="zh", model=CHAT)
        if stream:
            chunks = await read_stream(stub, req)
            text = "".join(c.delta for c in chunks)
            usage = chunks[-1].usage
        else:
            resp = await stub.Translate(req, timeout=10)
            text, usage = resp.translations[0].text, resp.usage
        assert text.endswith("Hello there.") and "<think>" not in text and "consider" not in text
        assert 25 <= usage.reasoning_tokens <= 35
        assert usage.completion_tokens > usage.reasoning_tokens
        assert usage.cost > 0

    async def test_a_budget_spent_on_reasoning_is_reported_never_an_empty_translation(
        self, stub: pb_grpc.TranslatorStub, sim: Sim
    ) -> None:
        await sim.set(reasoning_tokens=50, think_in_content=1, output_cap_tokens=40)
        req = pb.TranslateRequest(segments=["Hello there. How are you?"], target_language="zh", model=CHAT)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "reasoning" in (info.value.details() or "")


def test_think_blocks_are_dropped_whole_or_split_across_deltas() -> None:
    assert strip_think("<think>plan it</think>\n\nBonjour") == "Bonjour"
    assert strip_think("  <think>never closed") == ""
    assert strip_think("<b0>Bonjour</b0>") == "<b0>Bonjour</b0>"
    f = ThinkFilter()
    out = [f.feed(d) for d in ("<thi", "nk>plan", " it</th", "ink>\nBon", "jour")]
    assert "".join(out) + f.finish() == "Bonjour"
    f = ThinkFilter()
    assert f.feed("<") == "" and f.feed("b0>Hi") == "<b0>Hi"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_language", "x"),
        ("target_language", "null"),
        ("target_language", "zh\0"),
        ("target_language", "q" * 500),
        ("target_language", "\u0301" * 10_000),
        ("source_language", "klingon"),
        ("source_language", "e" * 20_000),
    ],
)
async def test_an_unknown_language_is_invalid_and_never_reaches_the_provider(
    stub: pb_grpc.TranslatorStub, sim: Sim, field: str, value: str
) -> None:
    req = pb.TranslateRequest(segments=["Hello"], target_language="zh")
    setattr(req, field, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Translate(req, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith(f"{field}: unknown language") and "zh-Hant" in details
    assert len(details) < 1000
    assert (await sim.stats())["models"][TR]["admitted"] == 0


async def test_whitespace_segments_come_back_as_sent_on_every_path(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    segments = ["Hello", "   ", "\n", "World"]
    req = pb.TranslateRequest(segments=segments, target_language="zh")
    resp = await stub.Translate(req, timeout=10)
    assert [t.text for t in resp.translations][1:3] == ["   ", "\n"]
    chunks = await read_stream(stub, req)
    streamed = ["".join(c.delta for c in chunks if c.segment_index == i and not c.final) for i in range(4)]
    assert streamed[1:3] == ["   ", "\n"]
    assert await calls(sim) == 4  # only the two real segments, twice


class TestFallbackNames:
    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        return server_config(sim)

    async def test_the_requested_model_is_named_on_every_chunk_and_the_served_one_per_segment(
        self, stub: pb_grpc.TranslatorStub
    ) -> None:
        # Hindi is not among the translation model's languages: its first fallback serves.
        req = pb.TranslateRequest(segments=["Hello"], target_language="hi", model=TR)
        resp = await stub.Translate(req, timeout=10)
        assert resp.requested_model == TR and resp.model == resp.translations[0].model != TR
        chunks = await read_stream(stub, req)
        assert {c.requested_model for c in chunks} == {resp.requested_model}


def test_reasoning_settings_reach_the_request_body() -> None:
    from translane.upstream import SegmentCall, _body

    base = load_config(env={}).models[CHAT]
    call = SegmentCall("Hi", "zh")
    off = _body(dataclasses.replace(base, reasoning="disabled", extra_body={}), call, stream=False)
    assert off["thinking"] == {"type": "disabled"} and "reasoning_effort" not in off
    low = _body(dataclasses.replace(base, reasoning="low", extra_body={}), call, stream=False)
    assert low["reasoning_effort"] == "low" and "thinking" not in low


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(load_config(env={}), pseudo_translate=0.0)
