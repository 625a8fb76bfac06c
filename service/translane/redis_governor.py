"""The governor shared by every replica through Redis, with a conservative local fallback.

Each reservation, settlement and 429 is one Lua script run atomically on the
Redis server (redis_scripts.py: the scripts, their keys and arguments), against
the same token buckets the in-process governor keeps.

The lane scheduler asks synchronously; a Redis round trip is not. So the
first ask for a model starts one acquisition and says "wait"; when Redis
answers, the grant is parked for the next ask and the lanes are woken. One
acquisition per model is in flight at a time.

Redis unreachable: this governor falls back to its in-process buckets at a
`1/replicas` share of every limit (never the full limit), logs and counts the
switch, and probes Redis every second until it answers, then goes back.

When Redis is down for every replica, N replicas at 1/N make one limit. When it
is out of reach for one replica only (a partition), the others still share the
full buckets, and that replica's local 1/N would come on top. So every replica
on the shared buckets writes a heartbeat (Redis time) for each model every
`heartbeat_s`, in a sorted set beside the model's bucket (same hash slot), and
the scripts refill the shared buckets at `1 - missing/N` of the rate, where
`missing` counts replicas whose heartbeat stopped (stale after `stale_after_s`,
forgotten after `forget_after_s`), but never more than the replicas short of N
that beat now: a crashed replica already replaced costs nothing, and one that
left cleanly took its heartbeat with it. A replica that loses Redis holds its
local buckets until the others must count it out (its last heartbeat that
could still land, plus `stale_after_s`), and its heartbeats resume only once it
spends from the shared buckets again. So at every moment the rates the
replicas refill at add up to at most the full rate `r`, and the window bound of
governor.py holds with the capacities added: with `k` replicas cut off, any
window of `W` sees at most `b + (1 - k/N)·r·W` from the shared buckets and
`L/N` less its jitter allowance from each cut-off replica's own, which is the
limit `L` less its jitter allowance plus `k·b/N` (inside the allowance with the
shipped settings). It holds for partitions shorter than `forget_after_s`. The
price is the hold: when Redis goes down for all, each replica waits up to
`stale_after_s` once (calls queue; none fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Coroutine, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config import GovernorConfig, ModelConfig
from .governor import Governor, ModelBudget, Reservation
from .redis_scripts import ADJUST, HEARTBEAT, PENALIZE, RESERVE, RESUME, bucket_args, model_keys, resume_key

__all__ = ["RedisGovernor", "connect"]

log = logging.getLogger("translane.governor")

# Replicas probe a lost Redis this often, and resume together this long after
# the first one finds it back (longer than a probe period, so all have seen it).
_PROBE_S = 1.0
_RESUME_AFTER_S = 1.5

# A parked grant older than this is handed back rather than used: Redis
# counted it when granted, the provider would see it much later.
_STALE_S = 0.5
# Until Redis answers, the lane is told to wait this long (it is woken sooner).
_ASK_AGAIN_S = 1.0
# A heartbeat Redis runs later than this after it was sent records nothing (see HEARTBEAT): far
# above a round trip; it lengthens the hold of a replica that loses Redis with a beat unanswered.
# A beat refused for being slow only has the others count this replica out early: less
# throughput, never more.
_LATE_S = 0.1
# This host's monotonic clock and Redis's TIME tick at rates parts per million apart.
_CLOCK_MARGIN_S = 0.02
# Connections a client of `connect` pools at most (redis-py's default).
_MAX_CONNECTIONS = 100


class RedisGovernor(Governor):
    """Governor whose buckets live in Redis; its own buckets (1/replicas share) are the fallback."""

    kind = "redis"

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        cfg: GovernorConfig,
        now: float,
        client: aioredis.Redis,
    ) -> None:
        super().__init__(models, cfg, now, share=1.0 / cfg.replicas)
        self.client = client
        self.shared = True
        self.fallbacks = 0
        # The shared buckets are sized at the full limits; this governor's own (the fallback) at 1/replicas.
        self._params = {name: bucket_args(ModelBudget(m, cfg, now), cfg) for name, m in models.items()}
        self._keys = {name: model_keys(cfg.redis_prefix, name) for name in models}
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._reserve = client.register_script(RESERVE)
        self._adjust = client.register_script(ADJUST)
        self._penalize = client.register_script(PENALIZE)
        self._resume = client.register_script(RESUME)
        self._beat = client.register_script(HEARTBEAT)
        # Share of the full rate the shared buckets refilled at, as the last reservation saw it.
        self._share = dict.fromkeys(models, 1.0)
        # The moment (this clock) by which every other replica counts this one out, were it to beat no
        # more: after its last recorded heartbeat, or after one sent and not yet answered, which may land.
        self._counted_until = 0.0
        self._beat_in_flight = 0.0
        # Local buckets spend nothing before this (see _go_local).
        self._held_until = 0.0
        self._resume_key = resume_key(cfg.redis_prefix)
        self._parked: dict[str, Reservation] = {}
        self._not_before: dict[str, float] = {}
        self._asking: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._heartbeat: asyncio.Task[None] | None = self._loop.create_task(self._heartbeats())
        self._closed = False

    # -- the Governor interface ----------------------------------------------------

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float:
        if not self.shared:
            if now < self._held_until and self.is_available(model, now):
                return self._held_until - now
            return super().try_reserve(model, tokens, now)
        if not self.is_available(model, now):
            return math.inf
        parked = self._parked.pop(model, None)
        if parked is not None:
            if now - parked.at <= _STALE_S:
                if parked.tokens != tokens:
                    self._spawn(self._run(self._adjust, model, tokens - parked.tokens, 0))
                    parked.tokens = tokens
                return parked
            self._spawn(self._run(self._adjust, model, -parked.tokens, -1))
        wait = max(self.budgets[model].paused_until, self._not_before.get(model, 0.0)) - now
        if wait > 0:
            return wait
        if model not in self._asking:
            self._asking.add(model)
            self._spawn(self._ask(model, tokens))
        return _ASK_AGAIN_S

    def time_to_serve(self, model: str, requests: int, tokens: int, now: float) -> float:
        served = super().time_to_serve(model, requests, tokens, now)
        return served if self.shared else max(served, self._held_until - now)

    def settle(self, r: Reservation, actual_tokens: int, now: float) -> None:
        if not r.shared:
            super().settle(r, actual_tokens, now)
        elif not r.settled:
            r.settled = True
            if actual_tokens != r.tokens:
                self._spawn(self._run(self._adjust, r.model, actual_tokens - r.tokens, 0))

    def refund(self, r: Reservation, now: float) -> None:
        if not r.shared:
            super().refund(r, now)
        elif not r.settled:
            r.settled = True
            self._spawn(self._run(self._adjust, r.model, -r.tokens, -1))

    def on_rate_limited(self, model: str, over_rate: bool, retry_after_s: float | None, now: float) -> None:
        # The local pause also holds this pod back; Redis tells the others.
        super().on_rate_limited(model, over_rate, retry_after_s, now)
        if self.shared:
            cut = 1 if over_rate else 0
            pause = max(0.0, self.budgets[model].paused_until - now)
            self._spawn(
                self._run(self._penalize, model, pause, cut, self.cfg.backoff_factor, self.cfg.min_rate_fraction)
            )

    def snapshot(self, now: float) -> dict[str, dict[str, float]]:
        snap = super().snapshot(now)
        for name, s in snap.items():
            s["shared"] = 1.0 if self.shared else 0.0
            s["fallbacks"] = float(self.fallbacks)
            s["shared_rate_share"] = self._share[name]
            s["held_s"] = 0.0 if self.shared else max(0.0, self._held_until - now)
        return snap

    async def aclose(self) -> None:
        """Stop the heartbeats, the probe and the pending Redis calls, leave the heartbeats, close the client."""
        tasks = [*self._tasks, *(t for t in (self._probe, self._heartbeat) if t is not None)]
        # The loops also stop on this flag: a cancel that lands inside a redis-py call can be lost
        # (seen once in sixteen runs on a busy machine), and then only the flag ends them.
        self._closed = True
        self._heartbeat = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.shared:
            # Gone, not cut off: the others need not leave a share for this replica.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                for _, alive in self._keys.values():
                    await self.client.zrem(alive, self.replica)
        await self.client.aclose()

    # -- Redis calls -----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, model: str, tokens: int) -> None:
        try:
            granted, wait, share = await self._reserve(keys=self._keys[model], args=[*self._params[model], tokens])
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)
        else:
            now = self._loop.time()
            self._share[model] = float(share)
            if int(granted):
                self._parked[model] = Reservation(model, tokens, now, shared=True)
            else:
                self._not_before[model] = now + float(wait)
        finally:
            self._asking.discard(model)
            self.wake()

    async def _run(self, script: Any, model: str, *args: float) -> None:
        try:
            await script(keys=self._keys[model], args=[*self._params[model], *args])
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)

    async def _heartbeats(self) -> None:
        """Every heartbeat_s, record in Redis that this replica spends from the shared buckets of each model."""
        loop = self._loop
        try:
            # A Redis time and when (this clock) the call that read it was sent and answered: Redis's
            # clock at this clock's `x` lies between at + (x - back) and at + (x - sent).
            sent = loop.time()
            seconds, micros = await self.client.time()
            at, back = seconds + micros / 1e6, loop.time()
            stale_s = self.cfg.stale_after_s
            while True:
                for _, alive in self._keys.values():
                    beat = loop.time()
                    deadline = at + (beat - sent) + _LATE_S
                    # Until answered, this beat may land as late as `deadline` by Redis's clock, and the
                    # others count this replica out stale_after_s after it lands: on this clock, by
                    self._beat_in_flight = beat + _LATE_S + stale_s + (back - sent)
                    recorded, redis_at = await self._beat(
                        keys=[alive], args=[self.replica, deadline, self.cfg.forget_after_s]
                    )
                    at, sent, back = float(redis_at), beat, loop.time()
                    self._beat_in_flight = 0.0
                    if int(recorded):  # at `at`, so counted out by
                        self._counted_until = max(self._counted_until, back + stale_s)
                await asyncio.sleep(self.cfg.heartbeat_s)
                if self._heartbeat is not asyncio.current_task():  # gone local, or closing
                    return
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)

    def _go_local(self, exc: BaseException) -> None:
        if not self.shared or self._closed:
            return
        self.shared = False
        self.fallbacks += 1
        self._parked.clear()
        self._not_before.clear()
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._heartbeat = None
        # The other replicas may still reach Redis and share the full buckets until they count this one
        # out: spending the local share before then would put it on top of theirs.
        now = self._loop.time()
        counted_until = max(self._counted_until, self._beat_in_flight)
        self._held_until = max(self._held_until, counted_until + _CLOCK_MARGIN_S)
        log.warning(
            "redis unreachable (%s): governing locally at 1/%d of each limit, after %.2fs, until it is back",
            type(exc).__name__,
            self.cfg.replicas,
            max(0.0, self._held_until - now),
            extra={"governor": "local-fallback"},
        )
        self._probe = self._loop.create_task(self._wait_for_redis())
        self.wake()

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_S)
            if self._closed:
                return
            try:
                # Every replica resumes at the same moment, the first one back
                # setting it: a replica back on the shared buckets while another
                # still spends its local share would take more than the limit.
                delay = float(await self._resume(keys=[self._resume_key], args=[_RESUME_AFTER_S]))
            except (RedisError, OSError, TimeoutError):
                continue
            await asyncio.sleep(delay)
            # Connections pooled before the outage are dead; start afresh.
            await self.client.connection_pool.disconnect()
            if self._closed:
                return
            self.shared = True
            # Only now, with the local buckets left, may the others count this replica back in.
            self._heartbeat = self._loop.create_task(self._heartbeats())
            log.warning("redis is back: shared governing resumed", extra={"governor": "redis"})
            self.wake()
            return


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast, so an outage turns into the local fallback within a fraction of a second."""
    # One immediate retry (a pooled connection may have died with an earlier
    # Redis), no backoff: redis-py's default retries with backoff would hold the
    # lanes for seconds before the fallback could take over. A burst of calls (a job's
    # thousands of lines reading the shared cache at once) waits as long for one of
    # the pooled connections: redis-py's default pool refuses the 101st at once,
    # which the cache took for a Redis down.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_MAX_CONNECTIONS,
        timeout=0.25,
        socket_timeout=0.25,
        socket_connect_timeout=0.25,
        retry=Retry(NoBackoff(), 1),
        retry_on_timeout=False,
        health_check_interval=0,
    )
    return aioredis.Redis.from_pool(pool)
