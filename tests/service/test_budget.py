"""Daily budgets on an owned wall clock: a model leaves rotation when its day's budget is spent, and comes back."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from translane.budget import Budgets, open_budgets
from translane.config import CacheConfig, Config, parse_config
from translane.engine import Engine, Job
from translane.errors import BudgetSpent, Overloaded
from translane.governor import Governor
from translane.server import running_server
from translane.sim import SimConfig
from translane.upstream import UpstreamClient
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

from ..conftest import Sim

# Four models alike but for prices, budgets and fallbacks.
_MODEL = """
provider = "p"
api_style = "chat_completions"
lane = "l"
rpm = 6000
tpm = 1000000
max_concurrency = 10
max_input_tokens = 1000
max_output_tokens = 1000
context_tokens = 4000
"""
_PRICED = """
input_price_per_mtok = 1.0
output_price_per_mtok = 2.0
"""
MODELS = f"""
default_model = "m"
[providers.p]
base_url = "http://127.0.0.1:1/api/v3"
max_retries = 0
[lanes.l]
max_concurrency = 10
[models.m]{_MODEL}{_PRICED}daily_token_budget = 150
fallbacks = ["f"]
[models.f]{_MODEL}
[models.alone]{_MODEL}{_PRICED}daily_cost_budget = 0.00001
[models.solo]{_MODEL}daily_token_budget = 400
"""
BEIJING = ZoneInfo("Asia/Shanghai")


def beijing(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=BEIJING).timestamp()


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig.from_config(parse_config(tomllib.loads(MODELS), env={}))


@pytest.fixture
def config(sim: Sim) -> Config:
    cfg = parse_config(tomllib.loads(MODELS), env={}).with_upstream_url(sim.url)
    return dataclasses.replace(cfg, cache=CacheConfig(kind="off"))


def job(loop_now: float, model: str = "m") -> Job:
    return Job(("A sentence to translate, long enough to cost some tokens.",), "zh", model, deadline=loop_now + 30)


async def test_a_spent_budget_hands_work_to_the_fallback_until_the_next_day(config: Config) -> None:
    wall = Wall(beijing(1, 23, 50))
    budgets = Budgets(config.models, "Asia/Shanghai", wall)
    async with UpstreamClient(config) as upstream:
        engine = Engine(config, upstream, Governor(config.models, config.governor, 0.0), budgets=budgets)
        served = []
        for _ in range(6):
            result = await engine.translate(job(engine._clock()))
            served.append(result.models[0])
        first_fallback = served.index("f")
        assert served[:first_fallback] == ["m"] * first_fallback and set(served[first_fallback:]) == {"f"}
        tokens, _ = budgets.spent("m")
        assert tokens >= 150 and budgets.exhausted(config.models["m"])
        assert budgets.seconds_to_next_day() == pytest.approx(600, abs=1)
        wall.now = beijing(2, 0, 0, 1)  # midnight in Beijing: a new day
        assert (await engine.translate(job(engine._clock()))).models == ["m"]
        assert budgets.spent("m")[0] < 150


async def test_work_granted_together_does_not_pass_the_budget_by_more_than_one_call(config: Config) -> None:
    """Twenty calls queue at once while nothing is spent yet: each is checked again when its slot is granted,
    counting the calls already in flight, so the model stops at its budget and the rest go to the fallback."""
    budgets = Budgets(config.models, "Asia/Shanghai", Wall(beijing(1, 12)))
    async with UpstreamClient(config) as upstream:
        engine = Engine(config, upstream, Governor(config.models, config.governor, 0.0), budgets=budgets)
        one = await engine.translate(job(engine._clock(), "f"))  # what one call costs, on the model with no budget
        per_call = one.stats.prompt_tokens + one.stats.completion_tokens
        results = await asyncio.gather(*(engine.translate(job(engine._clock())) for _ in range(20)))
    on_m = sum(r.models[0] == "m" for r in results)
    tokens, _ = budgets.spent("m")
    assert on_m >= 1 and sum(r.models[0] == "f" for r in results) == 20 - on_m
    assert tokens < 150 + per_call  # past the budget by less than one call (without the check: 20 calls)


async def test_a_budget_only_committed_by_calls_in_flight_is_a_short_wait_not_the_next_day(config: Config) -> None:
    """Reservations are estimates: when only the calls in flight cross the budget, a call is told to wait for
    them to settle (a second), not that the day is over; once they settle, what is left is served."""
    budgets = Budgets(config.models, "Asia/Shanghai", Wall(beijing(1, 12)))
    async with UpstreamClient(config) as upstream:
        engine = Engine(config, upstream, Governor(config.models, config.governor, 0.0), budgets=budgets)
        results = await asyncio.gather(
            *(engine.translate(job(engine._clock(), "solo")) for _ in range(6)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, BaseException)]
        assert refused, "the reservations of six calls cross 400 tokens"
        for r in refused:
            assert isinstance(r, Overloaded) and not isinstance(r, BudgetSpent), r
            assert r.retry_after_s is not None and r.retry_after_s <= 1.0 and "committed" in r.message
        tokens, _ = budgets.spent("solo")
        if tokens < 400:
            assert (await engine.translate(job(engine._clock(), "solo"))).models == ["solo"]


async def test_with_no_fallback_the_refusal_names_the_budget_and_the_wait(config: Config) -> None:
    wall = Wall(beijing(1, 12))
    budgets = Budgets(config.models, "Asia/Shanghai", wall)
    async with UpstreamClient(config) as upstream:
        engine = Engine(config, upstream, Governor(config.models, config.governor, 0.0), budgets=budgets)
        await engine.translate(job(engine._clock(), "alone"))  # one call spends the tiny cost budget
        with pytest.raises(BudgetSpent) as info:
            await engine.translate(job(engine._clock(), "alone"))
    assert "daily budget" in info.value.message and "alone" in info.value.message
    assert info.value.retry_after_s == pytest.approx(12 * 3600, abs=2)


async def test_the_days_spending_survives_a_restart_and_shows_in_list_models(config: Config, tmp_path: Path) -> None:
    on_disk = dataclasses.replace(config, cache=CacheConfig(kind="sqlite", path=str(tmp_path / "cache.sqlite3")))
    for _ in range(2):
        async with (
            running_server(dataclasses.replace(on_disk, server=dataclasses.replace(on_disk.server, port=0))) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch,
        ):
            stub = pb_grpc.TranslatorStub(ch)
            await stub.Translate(pb.TranslateRequest(segments=["Spend a little."], target_language="zh"), timeout=10)
            listed = {m.name: m for m in (await stub.ListModels(pb.ListModelsRequest(), timeout=5)).models}
    # Two runs, each one call: the second run started from what the first had spent.
    first_call = listed["m"].daily_tokens_spent / 2
    assert listed["m"].daily_token_budget == 150 and listed["m"].daily_tokens_spent == 2 * first_call > 0
    async with open_budgets(on_disk) as reopened:
        assert reopened.spent("m")[0] == listed["m"].daily_tokens_spent


def test_an_unknown_time_zone_is_a_config_error() -> None:
    from translane.config import ConfigError

    with pytest.raises(ConfigError, match="budget_timezone"):
        parse_config({**tomllib.loads(MODELS), "budget_timezone": "Mars/Olympus"}, env={})
