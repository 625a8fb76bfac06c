"""The engine's settle / refund / retry paths, on an owned clock, against the simulated provider on loopback.

The clock stands still unless a test moves it, so the governor's buckets never
refill behind a test's back: every level below is exact arithmetic on what the
engine reserved, settled and refunded.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from translane.config import Config, parse_config
from translane.engine import Engine, Job, Stats
from translane.errors import Overloaded, ProviderRateLimited, ProviderServerError
from translane.governor import Governor, ModelBudget
from translane.sim import SimConfig
from translane.upstream import SegmentCall, UpstreamClient, prompt_tokens

from ..conftest import Sim, start_sim
from ..helpers.clock import FakeClock, settle
from ..helpers.eventually import eventually

MODEL = "m"
MODELS = """
default_model = "m"
[providers.p]
base_url = "http://127.0.0.1:1/api/v3"
max_retries = {retries}
retry_base_s = 0.001
retry_max_s = 0.001
[lanes.l]
max_concurrency = {concurrency}
[models.m]
provider = "p"
api_style = "responses"
lane = "l"
rpm = 6000
tpm = 1000000
max_concurrency = 80
max_input_tokens = 1000
max_output_tokens = 3000
context_tokens = 4000
"""
TEXT = "The governor reserves before the call and settles after it."


def config(retries: int = 0, concurrency: int = 10, rpm: int = 6000) -> Config:
    text = MODELS.format(retries=retries, concurrency=concurrency).replace("rpm = 6000", f"rpm = {rpm}")
    return parse_config(tomllib.loads(text), env={})


@dataclass
class Rig:
    engine: Engine
    clock: FakeClock
    sim: Sim

    @property
    def budget(self) -> ModelBudget:
        return self.engine.governor.budgets[MODEL]

    def job(self, text: str = TEXT, deadline: float = 100.0) -> Job:
        return Job((text,), "zh", MODEL, deadline=deadline)

    def reserved(self, text: str = TEXT) -> int:
        """What the engine reserves for `text` before the call."""
        model = self.engine.config.models[MODEL]
        counted = prompt_tokens(model, SegmentCall(text, "zh"))
        return self.engine.estimators[MODEL].estimate(counted)

    async def provider_calls(self) -> int:
        return int((await self.sim.stats())["models"][MODEL]["admitted"])


@pytest_asyncio.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """An engine on a frozen clock; `@pytest.mark.parametrize("rig", [{...}], indirect=True)` changes it."""
    options = getattr(request, "param", {})
    sim_options = {"pseudo_translate": 0.0, **options.get("sim", {})}  # echo: answers asserted as sent
    cfg = config(options.get("retries", 0), options.get("concurrency", 10))
    runner, sim = await start_sim(SimConfig.from_config(config(rpm=options.get("sim_rpm", 6000)), **sim_options))
    cfg = cfg.with_upstream_url(sim.url)
    clock = FakeClock()
    try:
        async with UpstreamClient(cfg) as upstream:
            governor = Governor(cfg.models, cfg.governor, clock())
            engine = Engine(cfg, upstream, governor, clock=clock, call_at=clock.call_at)
            yield Rig(engine, clock, sim)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("rig", [{"sim": {"ttft_s": 0.0, "tokens_per_s": 0.0}}], indirect=True)
async def test_a_call_settles_with_the_providers_real_usage(rig: Rig) -> None:
    tokens_before, requests_before = rig.budget.tokens.level, rig.budget.requests.level
    stats = Stats()
    result = await rig.engine.translate(rig.job(), stats)
    assert result.texts[0].endswith(TEXT)
    used = stats.prompt_tokens + stats.completion_tokens
    assert used > 0 and used != rig.reserved()
    assert rig.budget.tokens.level == pytest.approx(tokens_before - used)
    assert rig.budget.requests.level == pytest.approx(requests_before - 1)
    assert rig.engine.lanes["l"].in_flight == 0


@pytest.mark.parametrize("rig", [{"sim": {"error_rate": 1.0}}], indirect=True)
async def test_a_failed_call_that_reached_the_provider_keeps_its_reservation(rig: Rig) -> None:
    tokens_before = rig.budget.tokens.level
    reserved = rig.reserved()
    with pytest.raises(ProviderServerError):
        await rig.engine.translate(rig.job())
    assert rig.budget.tokens.level == pytest.approx(tokens_before - reserved)
    assert rig.engine.lanes["l"].in_flight == 0


@pytest.mark.parametrize("rig", [{"retries": 2, "sim": {"error_rate": 1.0}}], indirect=True)
async def test_each_retry_is_a_call_of_its_own_with_its_own_reservation(rig: Rig) -> None:
    budget = rig.budget
    tokens_before, requests_before = budget.tokens.level, budget.requests.level
    started = rig.clock.now
    reserved = rig.reserved()
    stats = Stats()
    call = asyncio.create_task(rig.engine.translate(rig.job(), stats))
    # Retries wait out their backoff (at most retry_max_s, 1 ms) on the engine's clock: move it until the
    # call is done, in steps no longer than a backoff.
    while not call.done() and rig.clock.now < 1.0:
        await rig.clock.advance(0.0001)
    with pytest.raises(ProviderServerError):
        await call
    assert stats.retries == 2
    assert await rig.provider_calls() == 3
    # Three reservations, less what the buckets refilled while the retries waited: at most the full rate
    # over that time, less than one call's worth, so the bounds hold for three reservations and no other count.
    for bucket, before, each, rate in (
        (budget.requests, requests_before, 1, budget.request_rate),
        (budget.tokens, tokens_before, reserved, budget.token_rate),
    ):
        refilled = (bucket.updated - started) * rate
        assert refilled < each
        assert before - 3 * each - 1e-6 <= bucket.level <= before - 3 * each + refilled + 1e-6


@pytest.mark.parametrize("rig", [{"sim_rpm": 1}], indirect=True)
async def test_a_provider_429_uses_no_tokens_pauses_the_model_and_cuts_its_rate(rig: Rig) -> None:
    await rig.engine.translate(rig.job("first"))  # the provider's one request this minute
    tokens_before, requests_before = rig.budget.tokens.level, rig.budget.requests.level
    with pytest.raises(ProviderRateLimited) as info:
        await rig.engine.translate(rig.job("second"))
    assert info.value.over_rate and info.value.retry_after_s is not None
    # The request counts, its tokens do not.
    assert rig.budget.requests.level <= min(0.0, requests_before - 1)
    assert rig.budget.tokens.level <= tokens_before
    assert rig.engine.governor.is_paused(MODEL, rig.clock.now)
    assert not rig.engine.governor.is_paused(MODEL, rig.clock.now + info.value.retry_after_s)
    assert rig.budget.rate_factor(rig.clock.now) < 1.0


@pytest.mark.parametrize("rig", [{"concurrency": 1, "sim": {"ttft_s": 0.3}}], indirect=True)
async def test_cancelled_while_queued_is_refunded_and_never_sent(rig: Rig) -> None:
    tokens_before, requests_before = rig.budget.tokens.level, rig.budget.requests.level
    first = asyncio.create_task(rig.engine.translate(rig.job("first")))
    await settle()
    second = asyncio.create_task(rig.engine.translate(rig.job("second")))
    await settle()
    lane = rig.engine.lanes["l"]
    assert lane.in_flight == 1 and lane.queued == 1
    second.cancel()
    await settle()
    assert lane.queued == 0
    stats = (await first).stats
    assert await rig.provider_calls() == 1
    assert rig.budget.requests.level == pytest.approx(requests_before - 1)
    assert rig.budget.tokens.level == pytest.approx(tokens_before - stats.prompt_tokens - stats.completion_tokens)
    assert lane.in_flight == 0


@pytest.mark.parametrize("rig", [{"sim": {"ttft_s": 1.0}}], indirect=True)
async def test_cancelled_mid_call_keeps_the_reservation_and_counts_an_orphan(rig: Rig) -> None:
    tokens_before = rig.budget.tokens.level
    reserved = rig.reserved()
    call = asyncio.create_task(rig.engine.translate(rig.job()))

    async def arrived() -> bool:
        return await rig.provider_calls() == 1

    await eventually(arrived, 1.0, "the call at the provider, before its answer is due")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The provider counted the call when it arrived: the reservation stands.
    assert rig.budget.tokens.level == pytest.approx(tokens_before - reserved)
    assert rig.engine.metrics.orphans.values[(MODEL,)] == 1
    assert rig.engine.lanes["l"].in_flight == 0


async def test_no_time_left_after_the_grant_is_refunded_and_never_sent(rig: Rig) -> None:
    tokens_before, requests_before = rig.budget.tokens.level, rig.budget.requests.level
    with pytest.raises(Overloaded, match="no time left"):
        await rig.engine.translate(rig.job(deadline=rig.clock.now + 0.01))
    assert await rig.provider_calls() == 0
    assert rig.budget.tokens.level == pytest.approx(tokens_before)
    assert rig.budget.requests.level == pytest.approx(requests_before)
