"""The Lua scripts the shared governor runs atomically on Redis, and the keys and arguments they read.

Each reservation, settlement and 429 is one script, against the same token
buckets the in-process governor keeps (see governor.py for their shape). A
token bucket rather than GCRA because a call costs a variable number of tokens
that is corrected after the call: a bucket's level takes refunds and debts as
plain additions, where GCRA's theoretical arrival time would need the same
arithmetic in disguise, and keeping the arithmetic identical to the local
governor means one analysis covers both. Time comes from Redis (`TIME`), so pod
clocks never matter, and each model's state is one hash under a `{hash tag}`
key, beside its heartbeats under the same tag, so Redis Cluster keeps every
script on one slot. Why the scripts refill at a share of the rate, and when the
heartbeats are sent: redis_governor.py.
"""

from __future__ import annotations

from .config import GovernorConfig
from .governor import ModelBudget

__all__ = ["ADJUST", "HEARTBEAT", "PENALIZE", "RESERVE", "RESUME", "bucket_args", "model_keys", "resume_key"]


def model_keys(prefix: str, model: str) -> list[str]:
    """KEYS of the bucket scripts for `model`: its bucket hash and its heartbeats, under one hash tag."""
    return [f"{{{prefix}:{model}}}:bucket", f"{{{prefix}:{model}}}:alive"]


def resume_key(prefix: str) -> str:
    """The key of RESUME: the moment every replica goes back to the shared buckets."""
    return f"{{{prefix}}}:resume"


def bucket_args(full: ModelBudget, cfg: GovernorConfig) -> list[float]:
    """ARGV[1..9] of the bucket scripts for one model, from its budget at the full limits."""
    ttl_ms = int(cfg.window_s * 2000)
    return [
        *(full.requests.capacity, full.request_rate, full.tokens.capacity, full.token_rate),
        *(cfg.recover_per_s, ttl_ms, cfg.replicas, cfg.stale_after_s, cfg.forget_after_s),
    ]


# KEYS[1]: the model's bucket hash, KEYS[2]: its heartbeats (replica -> Redis time), same hash slot.
# ARGV: req_cap, req_rate, tok_cap, tok_rate, recover_per_s, ttl_ms, replicas, stale_after_s,
# forget_after_s, then per script below.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local req_cap, req_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_cap, tok_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local recover = tonumber(ARGV[5])
local n, fresh_from = tonumber(ARGV[7]), now - tonumber(ARGV[8])
local fresh = redis.call('ZCOUNT', KEYS[2], fresh_from, '+inf')
local stale = redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[9]), '(' .. fresh_from)
-- Replicas whose heartbeat stopped may be spending their 1/n locally: leave it to them. Not more
-- of them than the replicas short of n beating now (the caller counts: it reaches Redis).
local missing = math.max(0, math.min(stale, n - math.max(fresh, 1)))
local share = 1 - missing / n
local h = redis.call('HMGET', KEYS[1], 'rl', 'tl', 'ts', 'f', 'fa', 'p', 's')
local rl, tl, ts = tonumber(h[1]) or req_cap, tonumber(h[2]) or tok_cap, tonumber(h[3]) or now
local f0, fa, paused = tonumber(h[4]) or 1, tonumber(h[5]) or now, tonumber(h[6]) or 0
local f = math.min(1, f0 + math.max(0, now - fa) * recover)
local dt = math.max(0, now - ts)
-- The time since the last script refills at the lower of the shares then and now: a replica
-- counted back in may have spent locally until a moment ago, so its share is not back-dated.
local fs = f * math.min(tonumber(h[7]) or share, share)
rl = math.min(req_cap, rl + dt * req_rate * fs)
tl = math.min(tok_cap, tl + dt * tok_rate * fs)
"""
_SAVE = """
redis.call('HSET', KEYS[1], 'rl', rl, 'tl', tl, 'ts', now, 'f', f0, 'fa', fa, 'p', paused, 's', share)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
"""

# ARGV[10]: tokens. Returns {granted (0/1), wait seconds, share of the rate refilled now} (strings but the first).
RESERVE = (
    _PRELUDE
    + """
local tokens = tonumber(ARGV[10])
local wait = math.max(0, paused - now)
if rl < 1 - 1e-6 then wait = math.max(wait, (1 - rl) / (req_rate * f * share)) end
local need = math.min(tokens, tok_cap)
if tl < need - 1e-6 then wait = math.max(wait, (need - tl) / (tok_rate * f * share)) end
local granted = 0
if wait <= 0 then
  rl = rl - 1
  tl = tl - tokens
  granted = 1
end
"""
    + _SAVE
    + "return {granted, tostring(wait), tostring(share)}"
)

# ARGV[10]: token delta (+ charge, - refund), ARGV[11]: request delta (-1 refunds a request).
ADJUST = (
    _PRELUDE
    + """
local dtok, dreq = tonumber(ARGV[10]), tonumber(ARGV[11])
if dtok > 0 then tl = tl - dtok else tl = math.min(tok_cap, tl - dtok) end
if dreq < 0 then rl = math.min(req_cap, rl - dreq) end
"""
    + _SAVE
    + "return 1"
)

# ARGV[10]: pause seconds, ARGV[11]: 1 to cut the rate, ARGV[12]: backoff factor, ARGV[13]: min factor.
PENALIZE = (
    _PRELUDE
    + """
paused = math.max(paused, now + tonumber(ARGV[10]))
if tonumber(ARGV[11]) == 1 then
  f0 = math.max(tonumber(ARGV[13]), f * tonumber(ARGV[12]))
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

# KEYS[1]: a model's heartbeats. ARGV[1]: this replica, ARGV[2]: the latest Redis time this beat
# may run at, ARGV[3]: forget_after_s. Returns {recorded (0/1), Redis time}.
# A beat held up in the network (a partition that heals with it still in a socket buffer) must
# not count back in a replica that has since gone local: past its deadline it records nothing.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = string.format('%.6f', now)
if now > tonumber(ARGV[2]) then return {0, at} end
local forget = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - forget))
redis.call('PEXPIRE', KEYS[1], math.ceil(forget * 1000))
return {1, at}
"""
