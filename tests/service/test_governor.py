"""Token buckets with the clock passed in: a minute of traffic is checked in milliseconds."""

from __future__ import annotations

import bisect
import dataclasses
import math

import pytest
from translane.config import GovernorConfig, ModelConfig, load_config
from translane.errors import ProviderRateLimited, provider_error
from translane.estimate import TokenEstimator
from translane.governor import Governor, Reservation

CFG = GovernorConfig()
SLOW = load_config(env={}).models["doubao-seed-translation-250915"]


def over_rate(code: str) -> bool:
    """Whether a provider 429 with this code says we went past the rate, as the error mapping classifies it."""
    exc = provider_error(429, code, "slow down")
    assert isinstance(exc, ProviderRateLimited)
    return exc.over_rate


def governor(model: ModelConfig = SLOW, cfg: GovernorConfig = CFG, now: float = 0.0) -> Governor:
    return Governor({model.name: model}, cfg, now)


def max_in_window(times: list[float], amounts: list[float], window: float) -> float:
    """Largest sum of `amounts` whose `times` fall in any half-open window of `window` seconds."""
    prefix = [0.0]
    for a in amounts:
        prefix.append(prefix[-1] + a)
    best = 0.0
    for i, t in enumerate(times):
        j = bisect.bisect_left(times, t + window)
        best = max(best, prefix[j] - prefix[i])
    return best


def drive(g: Governor, model: str, cost: int, until: float, actual: int | None = None) -> tuple[list[float], list[int]]:
    """Reserve back to back as fast as the governor allows, settling each call at once."""
    now, times, amounts = 0.0, [], []
    while now < until:
        got = g.try_reserve(model, cost, now)
        if isinstance(got, Reservation):
            g.settle(got, cost if actual is None else actual, now)
            times.append(now)
            amounts.append(cost if actual is None else actual)
        else:
            now += got
    return times, amounts


def test_request_bucket_never_lets_a_window_exceed_rpm_and_runs_at_99_percent() -> None:
    g = governor()
    times, _ = drive(g, SLOW.name, cost=1, until=600.0)
    assert max_in_window(times, [1] * len(times), 60.0) <= SLOW.rpm
    achieved = len(times) / (600.0 / 60.0)
    assert achieved >= 0.99 * SLOW.rpm
    # The first minute is the dangerous one: a bucket that starts full would admit ~2x.
    first_minute = sum(1 for t in times if t < 60.0)
    assert first_minute <= SLOW.rpm


def test_token_bucket_never_lets_a_window_exceed_tpm_and_runs_at_99_percent() -> None:
    g = governor()
    times, amounts = drive(g, SLOW.name, cost=1800, until=600.0)
    assert max_in_window(times, amounts, 60.0) <= SLOW.tpm
    assert sum(amounts) / 10.0 >= 0.99 * SLOW.tpm


def test_buckets_start_at_their_burst_not_full() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    assert b.requests.level == b.requests.capacity == math.floor(SLOW.rpm * CFG.burst_fraction)
    full_size_call = TokenEstimator(SLOW.output_ratio, SLOW.max_output_tokens).estimate(SLOW.max_input_tokens)
    assert b.tokens.capacity >= full_size_call
    assert b.tokens.capacity < SLOW.tpm * 0.006  # the capacity is what the window bound costs
    assert b.requests.capacity < SLOW.rpm / 100  # far from "full at the limit"


def test_refill_rate_leaves_room_for_burst_and_jitter() -> None:
    b = governor().budgets[SLOW.name]
    per_window = b.requests.capacity + b.request_rate * CFG.window_s
    assert per_window <= SLOW.rpm - SLOW.rpm * CFG.jitter_allowance_s / CFG.window_s + 1e-6
    assert per_window >= SLOW.rpm * 0.99


def test_reserve_waits_exactly_as_long_as_the_refill_needs() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    for _ in range(int(b.requests.capacity)):
        assert isinstance(g.try_reserve(SLOW.name, 10, 0.0), Reservation)
    wait = g.try_reserve(SLOW.name, 10, 0.0)
    assert isinstance(wait, float)
    assert wait == pytest.approx(1 / b.request_rate)
    assert isinstance(g.try_reserve(SLOW.name, 10, wait), Reservation)


def test_settle_refunds_an_overestimate_and_charges_an_underestimate() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    start = b.tokens.level
    r = g.try_reserve(SLOW.name, 2000, 0.0)
    assert isinstance(r, Reservation)
    assert b.tokens.level == start - 2000
    g.settle(r, 500, 0.0)
    assert b.tokens.level == start - 500
    g.settle(r, 9999, 0.0)  # settling twice changes nothing
    assert b.tokens.level == start - 500
    r2 = g.try_reserve(SLOW.name, 100, 0.0)
    assert isinstance(r2, Reservation)
    g.settle(r2, 100 + b.tokens.capacity, 0.0)  # far more than reserved: debt
    assert b.tokens.level < 0
    wait = g.wait_time(SLOW.name, 100, 0.0)
    assert wait == pytest.approx((100 - b.tokens.level) / b.token_rate)


def test_refund_on_cancel_returns_the_request_and_the_tokens() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    req, tok = b.requests.level, b.tokens.level
    r = g.try_reserve(SLOW.name, 1500, 0.0)
    assert isinstance(r, Reservation)
    g.refund(r, 0.0)
    assert (b.requests.level, b.tokens.level) == (req, tok)


def test_rate_limit_pauses_for_retry_after_and_halves_the_rate() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    g.on_rate_limited(SLOW.name, over_rate("RateLimitExceeded.EndpointRPMExceeded"), 2.0, 10.0)
    assert g.is_paused(SLOW.name, 11.9) and not g.is_paused(SLOW.name, 12.0)
    assert g.wait_time(SLOW.name, 1, 10.0) >= 2.0
    assert b.rate_factor(10.0) == pytest.approx(0.5)
    # A second cut compounds, down to the floor.
    for _ in range(10):
        g.on_rate_limited(SLOW.name, over_rate("RateLimitExceeded.EndpointTPMExceeded"), None, 10.0)
    assert b.rate_factor(10.0) == pytest.approx(CFG.min_rate_fraction)


def test_rate_recovers_step_by_step_after_a_backoff() -> None:
    g = governor()
    b = g.budgets[SLOW.name]
    g.on_rate_limited(SLOW.name, over_rate("RateLimitExceeded.EndpointRPMExceeded"), 0.0, 0.0)
    assert b.rate_factor(0.0) == pytest.approx(0.5)
    assert b.rate_factor(10.0) == pytest.approx(0.5 + 10 * CFG.recover_per_s)
    assert b.rate_factor(10.0 + 0.5 / CFG.recover_per_s) == 1.0
    times, _ = drive(g, SLOW.name, 1, until=120.0)
    # Slower than the full rate while recovering, full speed afterwards.
    early = sum(1 for t in times if t < 10.0)
    late = sum(1 for t in times if 100.0 <= t < 110.0)
    assert early < late * 0.8
    assert late == pytest.approx(b.request_rate * 10, rel=0.02)


def test_overload_429_without_retry_after_does_not_cut_the_rate() -> None:
    g = governor()
    g.on_rate_limited(SLOW.name, over_rate("ServerOverloaded"), None, 0.0)
    assert g.budgets[SLOW.name].rate_factor(0.0) == 1.0
    assert not g.is_paused(SLOW.name, 0.0)


def test_disabled_model_waits_forever_until_enabled() -> None:
    g = governor(cfg=dataclasses.replace(CFG, disable_s=300.0))
    g.disable(SLOW.name, 0.0)
    assert g.wait_time(SLOW.name, 1, 1.0) == math.inf
    assert not g.is_available(SLOW.name, 299.0) and g.is_available(SLOW.name, 300.0)
    g.enable_all()
    assert g.is_available(SLOW.name, 1.0)


def test_share_scales_the_limits_for_a_replica() -> None:
    full = governor().budgets[SLOW.name]
    third = Governor({SLOW.name: SLOW}, CFG, 0.0, share=1 / 3).budgets[SLOW.name]
    assert third.request_rate == pytest.approx(full.request_rate / 3, rel=0.01)


def test_a_run_of_provider_failures_pauses_the_model_longer_each_time_until_a_success() -> None:
    cfg = dataclasses.replace(
        CFG, provider_down_after_failures=3, provider_down_pause_s=1.0, provider_down_max_pause_s=4.0
    )
    g = governor(cfg=cfg)
    name = SLOW.name
    g.on_failure(name, 0.0)
    g.on_failure(name, 0.1)
    assert not g.is_paused(name, 0.2)  # two failures are bad luck, not an outage
    g.on_failure(name, 0.2)
    assert g.is_paused(name, 0.2) and g.is_paused(name, 1.19) and not g.is_paused(name, 1.2)
    # Calls sent before the pause that fail during it change nothing.
    for t in (0.3, 0.4, 0.5, 0.6):
        g.on_failure(name, t)
    assert not g.is_paused(name, 1.2)
    # The first call after the pause fails too: paused again, twice as long, then capped.
    g.on_failure(name, 1.2)
    assert g.is_paused(name, 3.19) and not g.is_paused(name, 3.2)
    g.on_failure(name, 3.2)
    assert g.is_paused(name, 7.19) and not g.is_paused(name, 7.2)
    g.on_failure(name, 7.2)
    assert g.is_paused(name, 11.19) and not g.is_paused(name, 11.2)  # 4 s, the cap
    assert g.snapshot(11.2)[name]["provider_outages"] == 1
    # Back: a success ends the outage; the next run of failures starts from the beginning.
    g.on_success(name)
    g.on_failure(name, 12.0)
    g.on_failure(name, 12.1)
    assert not g.is_paused(name, 12.2)
    g.on_failure(name, 12.2)
    assert g.is_paused(name, 13.19) and not g.is_paused(name, 13.2)
    assert g.snapshot(13.2)[name]["provider_outages"] == 2
