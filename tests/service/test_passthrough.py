"""A passthrough chat over gRPC: the caller's messages sent to a chat model as written, under the same lanes,
governor and usage as any call; refused (INVALID_ARGUMENT naming the field, no provider call) when it cannot be
sent as asked; never split, never cached, never handed to a model that cannot answer a chat."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from translane.config import Config
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim, server_config

CHAT_MODEL = "doubao-seed-1-6-flash-250828"
TRANSLATION_MODEL = "doubao-seed-translation-250915"


async def provider_calls(sim: Sim) -> int:
    return sum(int(m.get("admitted", 0)) for m in (await sim.stats())["models"].values())


def chat(*messages: tuple[str, str], **fields: object) -> pb.TranslateRequest:
    return pb.TranslateRequest(
        messages=[pb.ChatMessage(role=r, content=c) for r, c in messages],
        model=str(fields.pop("model", CHAT_MODEL)),
        **fields,  # type: ignore[arg-type]
    )


async def test_the_messages_reach_the_model_as_written_and_are_billed(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    request = chat(
        ("system", "You translate into German."),
        ("user", "Please help me with this: the meeting moved to Monday."),
        ("assistant", "Sure."),
        ("user", "And this: see you there."),
    )
    resp = await stub.Translate(request, timeout=10)
    # The sim reads the language from the system message and echoes the last user message: both as written.
    assert [t.text for t in resp.translations] == ["[sim auto->German] And this: see you there."]
    assert resp.model == CHAT_MODEL
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0 and resp.usage.cost > 0
    assert (await sim.stats())["models"][CHAT_MODEL]["requests"] == 1
    # Not cached: the same chat again is another provider call.
    await stub.Translate(request, timeout=10)
    assert (await sim.stats())["models"][CHAT_MODEL]["requests"] == 2


async def test_a_passthrough_streams(stub: pb_grpc.TranslatorStub) -> None:
    text = ""
    final = None
    async for chunk in stub.TranslateStream(chat(("user", "Into French please: good morning")), timeout=10):
        text += chunk.delta
        if chunk.final:
            final = chunk
    assert text.endswith("Into French please: good morning")
    assert final is not None and final.usage.completion_tokens > 0


async def test_a_capped_passthrough_comes_back_cut_and_marked(stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
    resp = await stub.Translate(chat(("user", "word " * 200), max_output_tokens=8), timeout=10)
    assert resp.translations[0].truncated
    # Cut, not retried with a larger budget or in pieces: one call.
    assert await provider_calls(sim) == 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (chat(("user", "hi"), segments=["hi"]), "segments"),
        (chat(("tool", "hi")), "messages[0].role"),
        (chat(("system", "be brief")), "messages"),
        (chat(("user", "   ")), "messages"),
        (chat(("user", "hi"), model=TRANSLATION_MODEL), "model"),
        (chat(("user", "hi"), model="nope"), "model"),
        (chat(("user", "hi"), task_id="a\nb"), "task_id"),
        (chat(("user", "hi"), target_language="klingon"), "target_language"),
        (chat(*[("user", "x")] * 300), "messages"),
        (chat(("user", "word " * 30_000)), "messages"),
    ],
)
async def test_a_passthrough_that_cannot_be_sent_is_invalid_argument_naming_the_field(
    stub: pb_grpc.TranslatorStub, sim: Sim, request_: pb.TranslateRequest, field: str
) -> None:
    for call in ("unary", "stream"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            if call == "unary":
                await stub.Translate(request_, timeout=5)
            else:
                async for _ in stub.TranslateStream(request_, timeout=5):
                    pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert (info.value.details() or "").startswith(f"{field}:"), info.value.details()
        assert len(info.value.details() or "") < 400
    assert await provider_calls(sim) == 0


class TestFallback:
    """A chat model whose fallback is a translation model: a passthrough never goes there."""

    @pytest.fixture
    def config(self, sim: Sim) -> Config:
        base = server_config(sim)
        chat_model = base.models[CHAT_MODEL]
        models = dict(base.models)
        models[CHAT_MODEL] = dataclasses.replace(chat_model, fallbacks=(TRANSLATION_MODEL,))
        return dataclasses.replace(base, models=models)

    async def test_the_translation_model_is_not_tried(self, stub: pb_grpc.TranslatorStub, sim: Sim) -> None:
        await sim.set(error_rate=1.0)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Translate(chat(("user", "hello")), timeout=10)
        stats = (await sim.stats())["models"]
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert stats[CHAT_MODEL]["admitted"] >= 1
        assert stats[TRANSLATION_MODEL]["admitted"] == 0
