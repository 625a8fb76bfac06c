"""The governor shared by every replica through Redis, with a conservative local fallback.

Each reservation, settlement and 429 is one Lua script run atomically on the
Redis server, against the same token buckets the in-process governor keeps
(see governor.py for their shape). A token bucket rather than GCRA because a
call costs a variable number of tokens that is corrected after the call: a
bucket's level takes refunds and debts as plain additions, where GCRA's
theoretical arrival time would need the same arithmetic in disguise, and
keeping the arithmetic identical to the local governor means one analysis
covers both. Time comes from Redis (`TIME`), so pod clocks never matter, and
each model's state is one hash under a `{hash tag}` key, so Redis Cluster
keeps every script on one slot.

The lane scheduler asks synchronously; a Redis round trip is not. So the
first ask for a model starts one acquisition and says "wait"; when Redis
answers, the grant is parked for the next ask and the lanes are woken. One
acquisition per model is in flight at a time.

Redis unreachable: this governor falls back to its in-process buckets at a
`1/replicas` share of every limit (never the full limit), logs and counts the
switch, and probes Redis every second until it answers, then goes back.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config import GovernorConfig, ModelConfig
from .governor import Governor, ModelBudget, Reservation

__all__ = ["RedisGovernor", "connect"]

log = logging.getLogger("translane.governor")

# KEYS[1]: the model's bucket hash.
# ARGV: req_cap, req_rate, tok_cap, tok_rate, recover_per_s, ttl_ms, then per script below.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local req_cap, req_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_cap, tok_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local recover = tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'rl', 'tl', 'ts', 'f', 'fa', 'p')
local rl, tl, ts = tonumber(h[1]) or req_cap, tonumber(h[2]) or tok_cap, tonumber(h[3]) or now
local f0, fa, paused = tonumber(h[4]) or 1, tonumber(h[5]) or now, tonumber(h[6]) or 0
local f = math.min(1, f0 + math.max(0, now - fa) * recover)
local dt = math.max(0, now - ts)
rl = math.min(req_cap, rl + dt * req_rate * f)
tl = math.min(tok_cap, tl + dt * tok_rate * f)
"""
_SAVE = """
redis.call('HSET', KEYS[1], 'rl', rl, 'tl', tl, 'ts', now, 'f', f0, 'fa', fa, 'p', paused)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
"""

# ARGV[7]: tokens. Returns {granted (0/1), wait seconds as a string}.
RESERVE = (
    _PRELUDE
    + """
local tokens = tonumber(ARGV[7])
local wait = math.max(0, paused - now)
if rl < 1 - 1e-6 then wait = math.max(wait, (1 - rl) / (req_rate * f)) end
local need = math.min(tokens, tok_cap)
if tl < need - 1e-6 then wait = math.max(wait, (need - tl) / (tok_rate * f)) end
local granted = 0
if wait <= 0 then
  rl = rl - 1
  tl = tl - tokens
  granted = 1
end
"""
    + _SAVE
    + "return {granted, tostring(wait)}"
)

# ARGV[7]: token delta (+ charge, - refund), ARGV[8]: request delta (-1 refunds a request).
ADJUST = (
    _PRELUDE
    + """
local dtok, dreq = tonumber(ARGV[7]), tonumber(ARGV[8])
if dtok > 0 then tl = tl - dtok else tl = math.min(tok_cap, tl - dtok) end
if dreq < 0 then rl = math.min(req_cap, rl - dreq) end
"""
    + _SAVE
    + "return 1"
)

# ARGV[7]: pause seconds, ARGV[8]: 1 to cut the rate, ARGV[9]: backoff factor, ARGV[10]: min factor.
PENALIZE = (
    _PRELUDE
    + """
paused = math.max(paused, now + tonumber(ARGV[7]))
if tonumber(ARGV[8]) == 1 then
  f0 = math.max(tonumber(ARGV[10]), f * tonumber(ARGV[9]))
  fa = now
  rl = math.min(rl, 0)
  tl = math.min(tl, 0)
end
"""
    + _SAVE
    + "return 1"
)

# ARGV[1]: seconds from now. Returns the seconds left until the agreed resume time.
RESUME = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = tonumber(redis.call('GET', KEYS[1]))
if not at or at < now - 60 then
  at = now + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], tostring(at), 'PX', 120000)
end
return tostring(math.max(0, at - now))
"""

# Replicas probe a lost Redis this often, and resume together this long after
# the first one finds it back (longer than a probe period, so all have seen it).
_PROBE_S = 1.0
_RESUME_AFTER_S = 1.5

# A parked grant older than this is handed back rather than used: Redis
# counted it when granted, the provider would see it much later.
_STALE_S = 0.5
# Until Redis answers, the lane is told to wait this long (it is woken sooner).
_ASK_AGAIN_S = 1.0


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
        full = {name: ModelBudget(m, cfg, now) for name, m in models.items()}
        ttl_ms = int(cfg.window_s * 2000)
        self._params = {
            name: [b.requests.capacity, b.request_rate, b.tokens.capacity, b.token_rate, cfg.recover_per_s, ttl_ms]
            for name, b in full.items()
        }
        self._keys = {name: f"{{{cfg.redis_prefix}:{name}}}:bucket" for name in models}
        self._reserve = client.register_script(RESERVE)
        self._adjust = client.register_script(ADJUST)
        self._penalize = client.register_script(PENALIZE)
        self._resume = client.register_script(RESUME)
        self._resume_key = f"{{{cfg.redis_prefix}}}:resume"
        self._parked: dict[str, Reservation] = {}
        self._not_before: dict[str, float] = {}
        self._asking: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    # -- the Governor interface ----------------------------------------------------

    def try_reserve(self, model: str, tokens: int, now: float) -> Reservation | float:
        if not self.shared:
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
        for s in snap.values():
            s["shared"] = 1.0 if self.shared else 0.0
            s["fallbacks"] = float(self.fallbacks)
        return snap

    async def aclose(self) -> None:
        """Stop the probe and the pending Redis calls, then close the client."""
        for t in [*self._tasks, *([self._probe] if self._probe else [])]:
            t.cancel()
        await asyncio.gather(*self._tasks, *([self._probe] if self._probe else []), return_exceptions=True)
        await self.client.aclose()

    # -- Redis calls -----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, model: str, tokens: int) -> None:
        try:
            granted, wait = await self._reserve(keys=[self._keys[model]], args=[*self._params[model], tokens])
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)
        else:
            now = self._loop.time()
            if int(granted):
                self._parked[model] = Reservation(model, tokens, now, shared=True)
            else:
                self._not_before[model] = now + float(wait)
        finally:
            self._asking.discard(model)
            self.wake()

    async def _run(self, script: Any, model: str, *args: float) -> None:
        try:
            await script(keys=[self._keys[model]], args=[*self._params[model], *args])
        except (RedisError, OSError, TimeoutError) as exc:
            self._go_local(exc)

    def _go_local(self, exc: BaseException) -> None:
        if not self.shared:
            return
        self.shared = False
        self.fallbacks += 1
        self._parked.clear()
        self._not_before.clear()
        log.warning(
            "redis unreachable (%s): governing locally at 1/%d of each limit until it is back",
            type(exc).__name__,
            self.cfg.replicas,
            extra={"governor": "local-fallback"},
        )
        self._probe = self._loop.create_task(self._wait_for_redis())
        self.wake()

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_S)
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
            self.shared = True
            log.warning("redis is back: shared governing resumed", extra={"governor": "redis"})
            self.wake()
            return


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast, so an outage turns into the local fallback within a fraction of a second."""
    # One immediate retry (a pooled connection may have died with an earlier
    # Redis), no backoff: redis-py's default retries with backoff would hold the
    # lanes for seconds before the fallback could take over.
    return aioredis.Redis.from_url(
        url,
        socket_timeout=0.25,
        socket_connect_timeout=0.25,
        retry=Retry(NoBackoff(), 1),
        retry_on_timeout=False,
        health_check_interval=0,
    )
