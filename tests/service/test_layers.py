"""Each layer of the engine's stack against a fake inner step, on a clock the test owns (no provider, no sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from translane.cache import SegmentCache
from translane.config import Config, parse_config
from translane.engine import STACK, Attempt, Engine, Job, Outcome, Parts, Stats, Work
from translane.engine._admission import MIN_CALL_S, Admission
from translane.engine._blank import Blank
from translane.engine._dedup import Dedup
from translane.engine._ladder import Ladder
from translane.engine._retry import Retry
from translane.engine._route import Route
from translane.engine._split import Split
from translane.errors import ModelUnavailable, OutputTruncated, Overloaded, ProviderRateLimited, ProviderServerError
from translane.governor import Governor
from translane.tokens import count_tokens
from translane.upstream import UpstreamClient

from ..helpers.clock import FakeClock, settle

MODELS = """
default_model = "m"
[providers.p]
base_url = "http://127.0.0.1:1/api/v3"
max_retries = 2
retry_base_s = 0.5
retry_max_s = 4.0
[lanes.l]
max_concurrency = 4
[models.m]
provider = "p"
api_style = "chat_completions"
lane = "l"
rpm = 6000
tpm = 1000000
max_concurrency = 80
max_input_tokens = 200
max_output_tokens = 100
context_tokens = 400
fallbacks = ["f"]
[models.f]
provider = "p"
api_style = "chat_completions"
lane = "l"
rpm = 6000
tpm = 1000000
max_concurrency = 80
max_input_tokens = 200
max_output_tokens = 100
context_tokens = 400
"""


def config() -> Config:
    return parse_config(tomllib.loads(MODELS), env={})


@dataclasses.dataclass
class Rig:
    clock: FakeClock
    parts: Parts
    engine: Engine

    def work(self, text: str = "Hello there.", deadline: float = 100.0, **job: object) -> Work:
        return Work(Job((text,), "zh", "m", deadline=deadline, **job), 0, text, Stats())  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    """The engine's parts on a frozen clock, with an in-memory cache; the provider is never reached."""
    cfg = config()
    clock = FakeClock()
    governor = Governor(cfg.models, cfg.governor, clock())
    engine = Engine(cfg, UpstreamClient(cfg), governor, clock=clock, call_at=clock.call_at, cache=SegmentCache(1000))
    yield Rig(clock, engine.parts, engine)
    engine.close()


class Fake:
    """An inner step that records what reached it and answers with `answer(work)`."""

    def __init__(self, answer: Callable[[Work], Outcome] | None = None) -> None:
        self.seen: list[Work] = []
        self.answer = answer or (lambda w: Outcome(f"[zh] {w.text}", "m"))
        self.gate: asyncio.Event | None = None

    async def __call__(self, work: Work) -> Outcome:
        self.seen.append(work)
        if self.gate is not None:
            await self.gate.wait()
        return self.answer(work)


def test_the_stack_is_one_list_and_the_architecture_doc_lists_it_in_order() -> None:
    names = [getattr(layer, "__name__", "") for layer in STACK]
    assert names == [
        "Blank",
        "Dedup",
        "Cached",
        "Split",
        "Ladder",
        "Route",
        "Retry",
        "Room",
        "Admission",
        "Settle",
        "Observe",
    ]
    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\d+\. \*\*(\w+)\*\*", doc, flags=re.MULTILINE)
    assert [n.lower() for n in listed] == [n.lower() for n in names] + ["upstream"]


async def test_blank_text_comes_back_as_it_was_without_reaching_the_layers_below(rig: Rig) -> None:
    inner = Fake()
    out = await Blank(inner, rig.parts)(rig.work("  \n "))
    assert (out.text, inner.seen) == ("  \n ", [])
    assert (await Blank(inner, rig.parts)(rig.work("x"))).text == "[zh] x"


async def test_dedup_runs_identical_work_once_and_marks_the_twin_cached(rig: Rig) -> None:
    inner = Fake()
    inner.gate = asyncio.Event()
    dedup = Dedup(inner, rig.parts)
    first, twin = rig.work(), rig.work()
    runs = [asyncio.create_task(dedup(w)) for w in (first, twin)]
    await settle()
    inner.gate.set()
    a, b = await asyncio.gather(*runs)
    assert len(inner.seen) == 1
    assert (a.text, a.cached, b.text, b.cached) == ("[zh] Hello there.", False, "[zh] Hello there.", True)
    assert (first.stats.cached_segments, twin.stats.cached_segments) == (0, 1)
    # Without the cache (no_cache), each runs for itself.
    inner.gate = None
    await asyncio.gather(*(dedup(rig.work(use_cache=False)) for _ in range(2)))
    assert len(inner.seen) == 3


async def test_split_sends_pieces_under_the_input_limit_and_joins_them_in_order(rig: Rig) -> None:
    sentences = [f"Sentence number {i} says something different." for i in range(40)]
    text = " ".join(sentences)
    inner = Fake(lambda w: Outcome(w.text.upper(), "m", prompt_tokens=1))
    split = Split(inner, rig.parts)
    out = await split(rig.work(text))
    assert len(inner.seen) > 1
    assert all(count_tokens(w.text) <= split.limit(rig.work(text)) for w in inner.seen)
    assert out.text == text.upper()
    assert out.prompt_tokens == len(inner.seen)


async def test_ladder_retries_a_cut_answer_with_the_whole_budget(rig: Rig) -> None:
    def answer(w: Work) -> Outcome:
        cut = w.max_output_tokens < 100
        return Outcome("cut" if cut else "whole", "m", truncated=cut)

    inner = Fake(answer)
    work = rig.work(max_output_tokens=10)
    out = await Ladder(inner, rig.parts)(work)
    assert [w.max_output_tokens for w in inner.seen] == [10, 100]
    assert (out.text, out.truncated, work.stats.retries) == ("whole", False, 1)


async def test_ladder_halves_what_stays_cut_then_fails_or_marks_it(rig: Rig) -> None:
    text = " ".join(f"Sentence {i} of the paragraph goes on for a while." for i in range(8))
    inner = Fake(lambda w: Outcome(w.text, "m", truncated=True))
    with pytest.raises(OutputTruncated, match="even in smaller pieces"):
        await Ladder(inner, rig.parts)(rig.work(text))
    assert max(w.depth for w in inner.seen) == 2
    inner.seen.clear()
    out = await Ladder(inner, rig.parts)(rig.work(text, allow_truncated=True))
    assert (out.truncated, len(inner.seen)) == (True, 1)


def failing(rig: Rig, failures: list[Exception]) -> Callable[[Work], Outcome]:
    """An inner step standing for admission and below: picks model m, fails with each of `failures` in turn."""

    def answer(w: Work) -> Outcome:
        w.call.model = rig.parts.config.models["m"]
        if failures:
            raise failures.pop(0)
        return Outcome("done", "m")

    return answer


async def test_retry_waits_its_backoff_on_the_engines_clock(rig: Rig) -> None:
    inner = Fake(failing(rig, [ProviderRateLimited("slow down", retry_after_s=2.0)]))
    work = rig.work()
    call = asyncio.create_task(Retry(inner, rig.parts)(work))
    await settle()
    assert len(inner.seen) == 1 and not call.done()
    await rig.clock.advance(1.9)
    assert len(inner.seen) == 1 and not call.done()
    await rig.clock.advance(0.1)
    assert (await call).text == "done"
    assert [w.call.number for w in inner.seen] == [0, 1]
    assert work.stats.retries == 1


async def test_retry_gives_up_past_the_providers_count_or_the_deadline(rig: Rig) -> None:
    inner = Fake(failing(rig, [ProviderServerError("boom") for _ in range(5)]))
    call = asyncio.create_task(Retry(inner, rig.parts)(rig.work()))
    while not call.done() and rig.clock.now < 60:
        await rig.clock.advance(0.5)
    with pytest.raises(ProviderServerError):
        await call
    assert len(inner.seen) == 3  # the call and max_retries = 2 retries
    inner = Fake(failing(rig, [ProviderRateLimited("slow down", retry_after_s=3.0)]))
    with pytest.raises(ProviderRateLimited):
        await Retry(inner, rig.parts)(rig.work(deadline=rig.clock.now + 1.0))
    assert len(inner.seen) == 1


async def test_retry_reports_the_providers_failure_not_the_queue_after_it(rig: Rig) -> None:
    failures: list[Exception] = [ProviderServerError("boom"), Overloaded("queue full", retry_after_s=1.0)]
    inner = Fake(failing(rig, failures))
    call = asyncio.create_task(Retry(inner, rig.parts)(rig.work()))
    while not call.done() and rig.clock.now < 10:
        await rig.clock.advance(0.5)
    with pytest.raises(ProviderServerError):
        await call


async def test_admission_sheds_a_grant_with_no_time_left_and_gives_the_slot_back(rig: Rig) -> None:
    inner = Fake()
    work = dataclasses.replace(rig.work(deadline=rig.clock.now + MIN_CALL_S / 2), attempt=Attempt(0))
    with pytest.raises(Overloaded, match="no time left"):
        await Admission(inner, rig.parts)(work)
    assert inner.seen == []
    assert rig.engine.lanes["l"].in_flight == 0


async def test_admission_falls_back_past_a_model_out_of_rotation(rig: Rig) -> None:
    rig.parts.governor.disable("m", rig.clock.now)
    inner = Fake(lambda w: Outcome("ok", w.call.model.name if w.call.model else ""))
    work = dataclasses.replace(rig.work(), attempt=Attempt(0))
    out = await Admission(inner, rig.parts)(work)
    assert (out.model, work.stats.fallbacks) == ("f", 1)
    assert work.call.ticket is not None and work.call.counted > 0
    assert rig.engine.lanes["l"].in_flight == 0  # the ticket closed with the layer
    rig.parts.governor.disable("f", rig.clock.now)
    with pytest.raises(ModelUnavailable, match="out of rotation"):
        await Admission(inner, rig.parts)(dataclasses.replace(rig.work(), attempt=Attempt(0)))


def test_rotation_builds_each_chain_once_and_decides_readiness(rig: Rig) -> None:
    rotation = rig.parts.rotation
    assert rotation.chain("m") is rotation.chain("m")
    assert [m.name for m in rotation.chain("m")] == ["m", "f"]
    m = rig.parts.config.models["m"]
    assert not rotation.fallback_ready("m", m)
    rig.parts.governor.disable("m", rig.clock.now)
    assert rotation.fallback_ready("m", m)
    assert not rotation.usable(m, rig.clock.now) and rotation.usable_after(rotation.chain("m"), 0, rig.clock.now)


def steps(step: object) -> list[str]:
    """The layers a built stack goes through, outer to inner."""
    names = []
    while step is not None:
        names.append(type(step).__name__)
        step = getattr(step, "inner", None)
    return names


async def test_each_stack_is_built_of_the_layers_that_apply_to_it(rig: Rig) -> None:
    unary, stream = steps(rig.engine._unary), steps(rig.engine._stream)
    assert unary == ["Blank", "Dedup", "Cached", "Split", "Ladder", "Retry", "Admission", "Settle", "Upstream"]
    assert stream == ["Blank", "Cached", "Split", "Ladder", "Retry", "Room", "Admission", "Settle", "Upstream"]
    without_cache = Engine(rig.parts.config, UpstreamClient(rig.parts.config), rig.parts.governor)
    assert "Dedup" not in steps(without_cache._unary) and "Cached" not in steps(without_cache._unary)
    without_cache.close()


async def test_ladder_reports_the_cut_when_a_later_rung_cannot_be_sent(rig: Rig) -> None:
    """A rung refused by its queue (or a paused model, or a spent budget) does not replace the news."""
    calls: list[Work] = []

    def answer(w: Work) -> Outcome:
        calls.append(w)
        if len(calls) == 1:
            return Outcome("cut", "m", truncated=True)
        raise Overloaded("model m could not start in time", retry_after_s=1.0)

    text = " ".join(f"Sentence {i} of the paragraph goes on for a while." for i in range(8))
    with pytest.raises(OutputTruncated, match=r"^segments\[0\]: the translation was cut .*could not start in time"):
        await Ladder(Fake(answer), rig.parts)(rig.work(text))
    assert len(calls) >= 2


async def test_a_cached_answer_longer_than_the_callers_cap_is_not_served_whole(rig: Rig) -> None:
    from translane.engine._cached import Cached

    inner = Fake(lambda w: Outcome(f"[zh] {w.text}", "m", completion_tokens=40))
    cached = Cached(inner, rig.parts)
    await cached(rig.work("Hello there."))  # stored: 40 completion tokens
    hit = await cached(rig.work("Hello there."))
    assert hit.cached and len(inner.seen) == 1
    under = await cached(rig.work("Hello there.", max_output_tokens=40))
    assert under.cached and len(inner.seen) == 1  # the answer fits the cap: served from the cache
    capped = await cached(rig.work("Hello there.", max_output_tokens=5))
    assert not capped.cached and len(inner.seen) == 2  # longer than the cap: to the provider, as a fresh call


async def test_admission_queues_a_call_in_its_tenants_share_of_the_lane(rig: Rig) -> None:
    """Job.tenant reaches the lane: a light tenant's call goes before a busy tenant's backlog."""
    gates: dict[str, asyncio.Event] = {}
    started: list[str] = []

    async def inner(work: Work) -> Outcome:
        started.append(work.text)
        await gates.setdefault(work.text, asyncio.Event()).wait()
        return Outcome("ok", "m")

    def call(text: str, tenant: str) -> asyncio.Task[Outcome]:
        work = dataclasses.replace(rig.work(text, tenant=tenant), attempt=Attempt(0))
        return asyncio.create_task(Admission(inner, rig.parts)(work))

    calls = [call(f"held {i}.", "busy") for i in range(4)]  # the lane's 4 slots
    await settle()
    calls += [call(f"busy {i}.", "busy") for i in range(3)]
    await settle()
    calls.append(call("light.", "light"))
    await settle()
    assert rig.engine.lanes["l"].queued == 4
    for i in range(2):
        gates[f"held {i}."].set()
    await settle()
    assert started[4:] == ["busy 0.", "light."]
    for text in ["held 2.", "held 3.", "busy 0.", "light.", "busy 1.", "busy 2."]:
        gates.setdefault(text, asyncio.Event()).set()
    await asyncio.gather(*calls)
    assert rig.engine.lanes["l"].in_flight == 0


async def test_route_marks_a_job_line_whose_window_allows_a_batch_route_and_gives_it_the_window() -> None:
    cfg = config()
    batched = dataclasses.replace(cfg.models["m"], batch_api="ark-batch-chat", batch_min_window_s=3600.0)
    cfg = dataclasses.replace(cfg, models={**cfg.models, "m": batched})
    clock = FakeClock()
    engine = Engine(
        cfg, UpstreamClient(cfg), Governor(cfg.models, cfg.governor, clock()), clock=clock, call_at=clock.call_at
    )
    try:
        inner = Fake()
        route = Route(inner, engine.parts)
        job = {"completion_window_s": 3600.0, "window_end": 5000.0}
        text = "Hello there."
        await route(Work(Job((text,), "zh", "m", deadline=100.0, **job), 0, text, Stats()))  # type: ignore[arg-type]
        short = {"completion_window_s": 1800.0, "window_end": 5000.0}
        await route(Work(Job((text,), "zh", "m", deadline=100.0, **short), 0, text, Stats()))  # type: ignore[arg-type]
        await route(Work(Job((text,), "zh", "m", deadline=100.0), 0, text, Stats()))
        assert [(w.batch, w.job.deadline) for w in inner.seen] == [(True, 5000.0), (False, 100.0), (False, 100.0)]
    finally:
        engine.close()
