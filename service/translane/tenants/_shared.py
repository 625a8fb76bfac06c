"""A tenant's own limits shared by every replica through Redis: one Lua script to reserve, one to settle.

The same buckets and counts as LocalLimits (_limits.py), kept in one hash per tenant beside a sorted set of
its requests in flight (each scored by the moment it is forgotten, so a replica that dies holding slots does
not hold them for ever), both under one `{hash tag}` so Redis Cluster keeps a script on one slot. Time comes
from Redis (`TIME`). Redis unreachable: this replica falls back to its own buckets at 1/replicas of each
tenant's rpm and tpm (as the governor does), logs it, and tries Redis again after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..config import GovernorConfig
from ._file import Tenant
from ._limits import CONCURRENCY_RETRY_S, Hold, LocalLimits, TenantLimits, refusal

__all__ = ["RESERVE", "SETTLE", "SharedLimits", "open_limits", "tenant_keys"]

log = logging.getLogger("translane.tenants")

_RETRY_REDIS_S = 1.0
# The hash outlives a day of silence (the day's spending), then goes.
_TTL_MS = 2 * 86400 * 1000


def tenant_keys(prefix: str, tenant: str) -> list[str]:
    """KEYS of the scripts: the tenant's buckets and day, and its requests in flight, under one hash tag."""
    return [f"{{{prefix}:tenant:{tenant}}}:limits", f"{{{prefix}:tenant:{tenant}}}:holds"]


# ARGV[1..2]: rpm, tpm (0: none). Refills both buckets (a minute's worth, refilled over a minute) to now.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'rl', 'tl', 'ts', 'day', 'dt', 'dc')
local dt = math.max(0, now - (tonumber(h[3]) or now))
local rl = math.min(rpm, (tonumber(h[1]) or rpm) + dt * rpm / 60)
local tl = math.min(tpm, (tonumber(h[2]) or tpm) + dt * tpm / 60)
local day, dtok, dcost = h[4] or '', tonumber(h[5]) or 0, tonumber(h[6]) or 0
"""
_SAVE = f"""
redis.call('HSET', KEYS[1], 'rl', rl, 'tl', tl, 'ts', now, 'day', day, 'dt', dtok, 'dc', dcost)
redis.call('PEXPIRE', KEYS[1], {_TTL_MS})
"""

# ARGV[3..9]: max_concurrency, daily_token_budget, daily_cost_budget, tokens, today, hold id, hold seconds.
# Returns {limit refused at ('' = granted), seconds to wait (-1: the next day)}.
RESERVE = (
    _PRELUDE
    + """
local conc, dtb, dcb, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if day ~= ARGV[7] then day, dtok, dcost = ARGV[7], 0, 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local limit, wait = '', 0
if conc > 0 and redis.call('ZCARD', KEYS[2]) >= conc then
  limit, wait = 'max_concurrency', 0
elseif dtb > 0 and dtok >= dtb then
  limit, wait = 'daily_token_budget', -1
elseif dcb > 0 and dcost >= dcb then
  limit, wait = 'daily_cost_budget', -1
elseif rpm > 0 and rl < 1 - 1e-6 then
  limit, wait = 'rpm', (1 - rl) / (rpm / 60)
elseif tpm > 0 and tl < math.min(tokens, tpm) - 1e-6 then
  limit, wait = 'tpm', (math.min(tokens, tpm) - tl) / (tpm / 60)
end
if limit == '' then
  if rpm > 0 then rl = rl - 1 end
  if tpm > 0 then tl = tl - tokens end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[8])
  redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[9]) * 1000) + 1000)
end
"""
    + _SAVE
    + "return {limit, tostring(wait)}"
)

# ARGV[3..8]: token delta (+ charge, - refund), 1 to give the request back, today, tokens used, cost, hold id.
SETTLE = (
    _PRELUDE
    + """
local delta = tonumber(ARGV[3])
if tpm > 0 then
  if delta > 0 then tl = tl - delta else tl = math.min(tpm, tl - delta) end
end
if rpm > 0 and tonumber(ARGV[4]) == 1 then rl = math.min(rpm, rl + 1) end
if day ~= ARGV[5] then day, dtok, dcost = ARGV[5], 0, 0 end
dtok = dtok + tonumber(ARGV[6])
dcost = dcost + tonumber(ARGV[7])
redis.call('ZREM', KEYS[2], ARGV[8])
"""
    + _SAVE
    + "return 1"
)


class SharedLimits(TenantLimits):
    """Tenants' limits in Redis, summed over every replica; LocalLimits at 1/replicas while Redis is away."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        replicas: int,
        clock: Callable[[], float],
        day: Callable[[], str],
        to_next_day: Callable[[], float],
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock
        self._day = day
        self._to_next_day = to_next_day
        self.fallback = LocalLimits(clock, day, to_next_day, share=1.0 / replicas)
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._local_until = 0.0
        self._writes: set[asyncio.Task[Any]] = set()

    async def admit(self, tenant: Tenant, tokens: int, hold_s: float) -> Hold:
        if self._clock() < self._local_until:
            return self.fallback.check(tenant, tokens)
        hold = Hold(tenant.name, tokens, shared=True)
        args: list[str | int | float] = [
            *(tenant.rpm, tenant.tpm, tenant.max_concurrency, tenant.daily_token_budget, tenant.daily_cost_budget),
            *(tokens, self._day(), hold.id, max(1.0, hold_s)),
        ]
        try:
            limit, wait = await self._reserve(keys=tenant_keys(self.prefix, tenant.name), args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)
            return self.fallback.check(tenant, tokens)
        limit = limit.decode() if isinstance(limit, bytes) else str(limit)
        if limit:
            seconds = float(wait)
            if seconds < 0:
                seconds = self._to_next_day()
            elif limit == "max_concurrency":
                seconds = CONCURRENCY_RETRY_S
            raise refusal(tenant, limit, seconds, tokens)
        return hold

    def settle(self, hold: Hold, tenant: Tenant, tokens: int, cost: float, sent: bool) -> None:
        if not hold.shared:
            self.fallback.settle(hold, tenant, tokens, cost, sent)
            return
        if hold.settled:
            return
        hold.settled = True
        args: list[str | int | float] = [
            tenant.rpm,
            tenant.tpm,
            tokens - hold.tokens,
            0 if sent else 1,
            self._day(),
            tokens,
            cost,
            hold.id,
        ]
        # A task of its own: the request that settles may be cancelled (its caller gone) as it does.
        task = asyncio.get_running_loop().create_task(self._write(tenant.name, args))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, tenant: str, args: list[str | int | float]) -> None:
        try:
            await self._settle(keys=tenant_keys(self.prefix, tenant), args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)

    def _go_local(self, exc: BaseException) -> None:
        if self._clock() >= self._local_until:
            log.warning(
                "redis unreachable (%s): tenants' limits kept locally at their 1/replicas share for %.0fs",
                type(exc).__name__,
                _RETRY_REDIS_S,
            )
        self._local_until = self._clock() + _RETRY_REDIS_S

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.client.aclose()


@contextlib.asynccontextmanager
async def open_limits(
    governor: GovernorConfig,
    clock: Callable[[], float],
    day: Callable[[], str],
    to_next_day: Callable[[], float],
) -> AsyncIterator[TenantLimits]:
    """Tenants' limits where the model governor keeps its buckets: Redis when shared there, else this process."""
    if governor.kind != "redis":
        yield LocalLimits(clock, day, to_next_day)
        return
    from ..redis_governor import connect

    shared = SharedLimits(
        connect(governor.redis_url), governor.redis_prefix, governor.replicas, clock, day, to_next_day
    )
    try:
        yield shared
    finally:
        await shared.aclose()
