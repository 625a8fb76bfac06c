"""The batch routes' daily quota shared by every replica through Redis: one script reserves, one settles.

DailyQuota (batch_route.py) counts a route's tokens of the day in this process; with the governor shared in Redis
(`governor.kind = "redis"`) N replicas would spend N times `batch_tpd`. Here each model's day is one counter in
Redis, `{prefix:batch:MODEL}:DAY`, expiring two days after its last change: a reservation is a script that adds
the call's estimate only when it still fits (atomically: two replicas never both get the last tokens), and a
settlement adds the difference to the real usage (a refund, the whole estimate back). The lane asks synchronously
and Redis answers later, so, as the shared governor does, the first ask for a model starts one reservation and
says "wait"; Redis's grant is parked for the next ask and the lanes are woken. What Redis last said a model has
used is kept here, so the route layer can tell at once when the day's quota is spent. Redis unreachable: this
replica counts locally at 1/replicas of each quota, logs it, and tries Redis again after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .batch_route import DailyQuota
from .budget import Budgets
from .config import Config, ModelConfig
from .governor import Reservation

__all__ = ["ADJUST", "RESERVE", "SharedDailyQuota", "open_batch_quota", "quota_key"]

log = logging.getLogger("translane.batch")

_TTL_S = 2 * 86400
# Until Redis answers, the lane is told to wait this long (it is woken sooner).
_ASK_AGAIN_S = 1.0
# A quota Redis said is spent is asked again this often: other replicas' refunds may have made room.
_RECHECK_S = 5.0
_RETRY_REDIS_S = 1.0

# KEYS[1]: the model's counter for the day. ARGV: tpd, tokens, ttl seconds. Returns {granted (0/1), used after}.
RESERVE = """
local tpd, tokens = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + math.min(tokens, tpd) > tpd then return {0, used} end
used = redis.call('INCRBY', KEYS[1], tokens)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, used}
"""

# KEYS[1]: the model's counter for the day. ARGV: token delta (+ charge, - refund), ttl seconds. Returns used after.
ADJUST = """
local used = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if used < 0 then
  used = 0
  redis.call('SET', KEYS[1], 0)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return used
"""


def quota_key(prefix: str, model: str, day: str) -> str:
    """The Redis counter of `model`'s batch route tokens on `day` (the provider's date)."""
    return f"{{{prefix}:batch:{model}}}:{day}"


class SharedDailyQuota(DailyQuota):
    """DailyQuota whose count lives in Redis, summed over every replica; `used` mirrors what Redis last said."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        budgets: Budgets,
        client: aioredis.Redis,
        prefix: str,
        replicas: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(models, budgets)
        self.client = client
        self._prefix = prefix
        self._clock = clock
        # While Redis is out of reach: this replica's own count, at its share.
        self.fallback = DailyQuota(models, budgets, share=1.0 / replicas)
        self.fallback.subscribe(self._wake)
        self._reserve_script = client.register_script(RESERVE)
        self._adjust_script = client.register_script(ADJUST)
        self._parked: dict[str, Reservation] = {}
        self._asking: set[str] = set()
        # When (this clock) Redis last told each model's count, and until when a refusal from it holds.
        self._checked: dict[str, float] = {}
        self._refused_until: dict[str, float] = {}
        self._local_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def _local(self, now: float) -> bool:
        return now < self._local_until

    def wait_time(self, model: str, tokens: int, now: float) -> float:
        if self._local(now) and now >= self.closed_until.get(model, 0.0):
            return self.fallback.wait_time(model, tokens, now)
        return super().wait_time(model, tokens, now)

    def left(self, model: str) -> int | None:
        if self._local(self._clock()):
            return self.fallback.left(model)
        return super().left(model)

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float:
        closed = self.closed_until.get(model, 0.0)
        if now < closed:
            return closed - now
        tpd = self.tpd[model]
        if not tpd or self._local(now):
            return self.fallback.try_reserve(model, tokens, now)
        parked = self._parked.pop(model, None)
        if parked is not None:
            if tokens <= parked.tokens:
                if tokens < parked.tokens:
                    self._spawn(self._add(model, tokens - parked.tokens))
                    parked.tokens = tokens
                return parked
            self._spawn(self._add(model, -parked.tokens))
        wait = super().wait_time(model, tokens, now)
        since = now - self._checked.get(model, -_RECHECK_S)
        if wait > 0 and since < _RECHECK_S:
            return min(wait, _RECHECK_S - since)
        if model not in self._asking:
            self._asking.add(model)
            self._spawn(self._ask(model, tokens))
        return _ASK_AGAIN_S

    def down_for(self, model: str, now: float) -> float:
        # Redis just refused a reservation: the calls waiting in the lane that may go online (batch_when_spent)
        # are told now, rather than when their start-by passes.
        return max(0.0, self._refused_until.get(model, 0.0) - now)

    def settle(self, r: Reservation, actual_tokens: int, now: float) -> None:
        if not r.shared:
            self.fallback.settle(r, actual_tokens, now)
        elif not r.settled:
            r.settled = True
            if actual_tokens != r.tokens:
                self._spawn(self._add(r.model, actual_tokens - r.tokens))

    def refund(self, r: Reservation, now: float) -> None:
        if not r.shared:
            self.fallback.refund(r, now)
        elif not r.settled:
            r.settled = True
            self._spawn(self._add(r.model, -r.tokens))

    # -- Redis calls ----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mirror(self, model: str, day: str, used: int) -> None:
        self._roll()
        if day == self._day:
            self.used[model] = used
            self._checked[model] = self._clock()

    async def _ask(self, model: str, tokens: int) -> None:
        day = self._budgets.day()
        try:
            granted, used = await self._reserve_script(
                keys=[quota_key(self._prefix, model, day)], args=[self.tpd[model], tokens, _TTL_S]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)
        else:
            self._mirror(model, day, int(used))
            now = self._clock()
            if int(granted):
                self._parked[model] = Reservation(model, tokens, now, shared=True)
                self._refused_until.pop(model, None)
            else:
                self._refused_until[model] = now + min(_RECHECK_S, self._budgets.seconds_to_next_day())
        finally:
            self._asking.discard(model)
            self._wake()

    async def _add(self, model: str, delta: int) -> None:
        day = self._budgets.day()
        try:
            used = await self._adjust_script(keys=[quota_key(self._prefix, model, day)], args=[delta, _TTL_S])
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)
            return
        self._mirror(model, day, int(used))
        if delta < 0:
            self._wake()  # what was given back may let a waiter go

    def _go_local(self, exc: BaseException) -> None:
        now = self._clock()
        if not self._local(now):
            log.warning(
                "redis unreachable (%s): batch routes' daily quotas counted locally at their 1/replicas share "
                "for %.0fs",
                type(exc).__name__,
                _RETRY_REDIS_S,
            )
        self._local_until = now + _RETRY_REDIS_S
        self._parked.clear()
        self._wake()

    async def aclose(self) -> None:
        """Give back the grants no call took, finish the writes, close the client."""
        for parked in self._parked.values():
            self._spawn(self._add(parked.model, -parked.tokens))
        self._parked.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()


@contextlib.asynccontextmanager
async def open_batch_quota(
    config: Config, budgets: Budgets, clock: Callable[[], float]
) -> AsyncIterator[DailyQuota | None]:
    """The batch routes' daily quota in Redis when the governor is shared there and a route has one; else None
    (each engine then counts its own)."""
    routed = {name: m for name, m in config.models.items() if m.batch_api}
    if config.governor.kind != "redis" or not any(m.batch_tpd for m in routed.values()):
        yield None
        return
    from .redis_governor import connect

    gov = config.governor
    quota = SharedDailyQuota(routed, budgets, connect(gov.redis_url), gov.redis_prefix, gov.replicas, clock)
    try:
        yield quota
    finally:
        await quota.aclose()
