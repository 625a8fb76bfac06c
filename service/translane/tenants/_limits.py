"""A tenant's own limits, in this process: requests and tokens a minute, requests in flight, daily budgets.

Reserve, then settle, as the model governor does (governor.py): a request reserves 1 request, its estimated
tokens and a slot before it enters a lane; when it ends it settles what it really used, so the surplus of an
over-estimate is refunded (the tenant is not locked out at 80% of its TPM) and an under-estimate is charged as
debt (the long-run rate is the real one). Requests and tokens are token buckets holding a minute's worth and
refilled continuously; the daily budgets count what was settled in the provider's day. A tenant past a limit
is refused at once (TenantLimited, naming the limit, with the wait until it would fit), never queued: its
wait would otherwise hold a lane's place other tenants could use.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import TenantLimited
from ..governor import TokenBucket
from ._file import Tenant

__all__ = ["Hold", "LocalLimits", "TenantLimits", "refusal"]

_WINDOW_S = 60.0
# A request refused for its concurrency waits about this long before trying again (no timer tells when a slot frees).
CONCURRENCY_RETRY_S = 1.0


@dataclass(slots=True)
class Hold:
    """A request admitted for a tenant: 1 request, `tokens` estimated tokens and a slot, held until settled."""

    tenant: str
    tokens: int
    shared: bool = False
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    settled: bool = False


def refusal(tenant: Tenant, limit: str, wait_s: float, tokens: int = 0) -> TenantLimited:
    """The error a tenant past `limit` gets: the limit named, with its value, and when to try again."""
    value = getattr(tenant, limit)
    said = {"daily_token_budget": "spent", "daily_cost_budget": "spent"}.get(limit, "reached")
    extra = f" (this request needs about {tokens} tokens)" if limit == "tpm" else ""
    return TenantLimited(f"tenant {tenant.name}: {limit} {value:g} {said}{extra}", retry_after_s=max(0.001, wait_s))


class TenantLimits:
    """Where a tenant's limits are kept: this process (LocalLimits) or Redis, shared by every replica."""

    async def admit(self, tenant: Tenant, tokens: int, hold_s: float) -> Hold:
        """Reserve a request of about `tokens` tokens held at most `hold_s`; TenantLimited when past a limit."""
        raise NotImplementedError

    def settle(self, hold: Hold, tenant: Tenant, tokens: int, cost: float, sent: bool) -> None:
        """Replace the estimate with what the request used; `sent`: False gives the request back too."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Finish what is still being written."""


class _State:
    __slots__ = ("day", "day_cost", "day_tokens", "in_flight", "limits", "requests", "tokens")

    def __init__(self, tenant: Tenant, share: float, now: float) -> None:
        rpm, tpm = tenant.rpm * share, tenant.tpm * share
        self.limits = (tenant.rpm, tenant.tpm)
        self.requests = TokenBucket(rpm, rpm / _WINDOW_S, now)
        self.tokens = TokenBucket(tpm, tpm / _WINDOW_S, now)
        self.in_flight = 0
        self.day = ""
        self.day_tokens = 0
        self.day_cost = 0.0


class LocalLimits(TenantLimits):
    """Every tenant's limits in this process, on `clock`; `share` of rpm and tpm (the fallback of a shared
    store takes 1/replicas). `day` and `to_next_day` say the provider's day (Budgets: tests own it)."""

    def __init__(
        self,
        clock: Callable[[], float],
        day: Callable[[], str],
        to_next_day: Callable[[], float],
        share: float = 1.0,
    ) -> None:
        self._clock = clock
        self._day = day
        self._to_next_day = to_next_day
        self._share = share
        self._states: dict[str, _State] = {}

    def _state(self, tenant: Tenant, now: float) -> _State:
        st = self._states.get(tenant.name)
        if st is None or st.limits != (tenant.rpm, tenant.tpm):
            # New, or its limits changed with the file: buckets at the new size, spending of the day kept.
            fresh = _State(tenant, self._share, now)
            if st is not None:
                fresh.requests.level = min(fresh.requests.capacity, st.requests.level)
                fresh.tokens.level = min(fresh.tokens.capacity, st.tokens.level)
                fresh.in_flight, fresh.day, fresh.day_tokens, fresh.day_cost = (
                    st.in_flight, st.day, st.day_tokens, st.day_cost,
                )  # fmt: skip
            st = self._states[tenant.name] = fresh
        today = self._day()
        if st.day != today:
            st.day, st.day_tokens, st.day_cost = today, 0, 0.0
        return st

    def check(self, tenant: Tenant, tokens: int) -> Hold:
        """`admit` without waiting (this store never does)."""
        now = self._clock()
        st = self._state(tenant, now)
        rpm_rate, tpm_rate = st.requests.rate, st.tokens.rate
        if tenant.max_concurrency and st.in_flight >= tenant.max_concurrency:
            raise refusal(tenant, "max_concurrency", CONCURRENCY_RETRY_S)
        if tenant.daily_token_budget and st.day_tokens >= tenant.daily_token_budget:
            raise refusal(tenant, "daily_token_budget", self._to_next_day())
        if tenant.daily_cost_budget and st.day_cost >= tenant.daily_cost_budget:
            raise refusal(tenant, "daily_cost_budget", self._to_next_day())
        if tenant.rpm:
            wait = st.requests.wait_time(1, now, rpm_rate)
            if wait > 0:
                raise refusal(tenant, "rpm", wait)
        if tenant.tpm:
            wait = st.tokens.wait_time(tokens, now, tpm_rate)
            if wait > 0:
                raise refusal(tenant, "tpm", wait, tokens)
        if tenant.rpm:
            st.requests.take(1, now, rpm_rate)
        if tenant.tpm:
            st.tokens.take(tokens, now, tpm_rate)
        st.in_flight += 1
        return Hold(tenant.name, tokens)

    async def admit(self, tenant: Tenant, tokens: int, hold_s: float) -> Hold:
        return self.check(tenant, tokens)

    def settle(self, hold: Hold, tenant: Tenant, tokens: int, cost: float, sent: bool) -> None:
        if hold.settled:
            return
        hold.settled = True
        now = self._clock()
        st = self._state(tenant, now)
        st.in_flight = max(0, st.in_flight - 1)
        if tenant.tpm:
            delta = tokens - hold.tokens
            if delta > 0:
                st.tokens.take(delta, now, st.tokens.rate)
            elif delta < 0:
                st.tokens.give(-delta, now, st.tokens.rate)
        if tenant.rpm and not sent:
            st.requests.give(1, now, st.requests.rate)
        st.day_tokens += tokens
        st.day_cost += cost
