"""The gRPC service and the shim against a real OpenAI-compatible server: unary, stream, usage, truncation."""

from __future__ import annotations

import grpc
import openai
import pytest
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from gateway_shim import RunningShim

from .conftest import MODEL, TINY

pytestmark = pytest.mark.upstream

PARAGRAPH = (
    "The library opens at nine in the morning. Visitors may borrow up to five books at a time, "
    "and every book must be returned within three weeks."
)


async def test_unary_carries_the_providers_own_usage(stub: pb_grpc.TranslatorStub) -> None:
    # A 270M model may ramble past its budget: accept a marked cut, so what is checked is the protocol.
    req = pb.TranslateRequest(segments=["Good morning.", PARAGRAPH], target_language="fr", allow_truncated=True)
    resp = await stub.Translate(req)
    assert len(resp.translations) == 2 and all(t.text.strip() for t in resp.translations)
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0 and not resp.usage.estimated
    assert resp.model == MODEL and resp.requested_model == MODEL


async def test_stream_deltas_join_to_the_translation_with_final_usage(stub: pb_grpc.TranslatorStub) -> None:
    req = pb.TranslateRequest(segments=[PARAGRAPH], target_language="de", allow_truncated=True)
    chunks = [c async for c in stub.TranslateStream(req)]
    assert chunks[-1].final and not chunks[-1].usage.estimated and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.delta for c in chunks).strip()


async def test_a_cut_answer_is_never_passed_off_as_complete(stub: pb_grpc.TranslatorStub) -> None:
    req = pb.TranslateRequest(segments=[PARAGRAPH], target_language="fr", model=TINY)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Translate(req)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    req.allow_truncated = True
    resp = await stub.Translate(req)
    assert resp.translations[0].truncated


async def test_the_shim_reports_length_and_usage_from_a_real_server(shim: RunningShim) -> None:
    async with openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key="none", max_retries=0) as client:
        messages = [{"role": "user", "content": f"Translate to French:\n\n{PARAGRAPH}"}]
        # Capped at the model's whole budget, a rambling answer may still be cut: then it says so.
        full = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=256)  # type: ignore[arg-type]
        assert full.choices[0].finish_reason in ("stop", "length") and full.choices[0].message.content
        assert full.usage is not None and full.usage.completion_tokens > 0
        cut = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5)  # type: ignore[arg-type]
        assert cut.choices[0].finish_reason == "length"
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=5,
            stream=True,  # type: ignore[arg-type]
        )
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
        assert finishes[-1] == "length"


async def test_an_uncapped_paragraph_that_overflows_is_a_400_naming_the_cut_not_a_429(shim: RunningShim) -> None:
    """The ladder cannot finish a paragraph whose answer overflows the model's output limit even in pieces: the
    caller hears that (400, the cut named), never a 429 from a later piece's queue wait, which the SDK would retry
    twice, paying the whole ladder three times."""
    async with openai.AsyncOpenAI(base_url=f"{shim.url}/v1", api_key="none") as client:  # the SDK's own retries
        messages = [{"role": "user", "content": f"Translate to French:\n\n{PARAGRAPH}"}]
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model=TINY, messages=messages)  # type: ignore[arg-type]
    assert info.value.status_code == 400
    assert "output limit" in str(info.value) and "segments[0]" in str(info.value)
