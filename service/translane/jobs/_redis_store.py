"""Jobs and their lines in Redis, shared by every replica: the job's fields, its requests and results in
hashes, and its lines as work in one Redis Stream read by one consumer group.

A job never has more than its `feed` of lines in the stream (waiting or claimed by a replica): it is
created with that many, and each line recorded adds the job's next one, in the same script. So a job's
lines in flight across all replicas stay at most `feed` (the job's max_concurrency_per_job). A line's
result is recorded by FINISH, which only a line of a running job not yet recorded passes, and which
counts it on the job, acknowledges and deletes its stream entry, and ends the job when it was the last
line, all in one step: a line is recorded once however many replicas raced for it. An ended job's
keys expire `keep_s` after it ended (its requests at once). Every key shares the `{prefix}` hash tag, so
the scripts run on a Redis Cluster too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ._redis_index import page_index, text
from ._store import JobRecord, LineResult, Progress

__all__ = ["GROUP", "Entry", "RedisJobStore"]

log = logging.getLogger("translane.jobs")

GROUP = "runners"
# A stream entry of line work: its id, its job and line index.
Entry = tuple[bytes, str, int]

_CREATE = """
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'seq', seq, 'state', 'running', 'spec', ARGV[2], 'window_s', ARGV[3],
  'total', ARGV[5], 'done', 0, 'failed', 0, 'prompt_tokens', 0, 'completion_tokens', 0, 'cost', 0,
  'currency', '', 'created', ARGV[4], 'updated', ARGV[4], 'ended', 0, 'next', ARGV[6])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
for i = 0, tonumber(ARGV[6]) - 1 do redis.call('XADD', KEYS[4], '*', 'job', ARGV[1], 'line', i) end
return seq
"""

# KEYS: job, results, requests, stream. ARGV: group, entry, job id, line, flag..result, prompt, completion,
# cost, currency, now, keep (ms). 0: not recorded (ended job, or already recorded); 1: recorded; 2: and the
# job ended with it.
_FINISH = """
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[4], ARGV[2])
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
if string.sub(ARGV[5], 1, 1) == '1' then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
end
redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[1], 'cost', ARGV[8])
if redis.call('HGET', KEYS[1], 'currency') == '' then redis.call('HSET', KEYS[1], 'currency', ARGV[9]) end
redis.call('HSET', KEYS[1], 'updated', ARGV[10])
local f = redis.call('HMGET', KEYS[1], 'total', 'next', 'done', 'failed')
local total, nxt = tonumber(f[1]), tonumber(f[2])
if nxt < total then
  redis.call('XADD', KEYS[4], '*', 'job', ARGV[3], 'line', nxt)
  redis.call('HSET', KEYS[1], 'next', nxt + 1)
end
if tonumber(f[3]) + tonumber(f[4]) >= total then
  redis.call('HSET', KEYS[1], 'state', 'succeeded', 'ended', ARGV[10])
  redis.call('DEL', KEYS[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[11])
  redis.call('PEXPIRE', KEYS[2], ARGV[11])
  return 2
end
return 1
"""

# KEYS: job, results, stream. ARGV: group, entry, job id, line. The entry goes; a line of a running job not
# yet recorded goes back in the stream as a new entry, for any replica to read at once.
_RELEASE = """
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
if redis.call('HGET', KEYS[1], 'state') == 'running' and redis.call('HEXISTS', KEYS[2], ARGV[4]) == 0 then
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[3], 'line', ARGV[4])
  return 1
end
return 0
"""

# KEYS: job, results, requests. ARGV: end state, now, keep (ms). The job's state before ('' when none).
_END = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return state or '' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated', ARGV[2], 'ended', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return state
"""

# KEYS: job, results, requests, index. ARGV: job id. The job's state before ('' when none); a running job stays.
_DELETE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' then return state end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return state or ''
"""


class RedisJobStore:
    """The jobs under `{prefix}:jobs:` on `client`; an ended job kept `keep_s`."""

    def __init__(self, client: aioredis.Redis, prefix: str, keep_s: float) -> None:
        # redis-py's replies are typed as unions of what every decoding could give; this client answers bytes.
        self.client: Any = client
        self.base = f"{{{prefix}}}:jobs:"
        self.stream = self.base + "stream"
        self.keep_ms = max(1, int(keep_s * 1000))
        self._create = client.register_script(_CREATE)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._end = client.register_script(_END)
        self._delete = client.register_script(_DELETE)

    def _keys(self, job_id: str) -> tuple[str, str, str]:
        """The job's fields, its results, its requests."""
        return self.base + "job:" + job_id, self.base + "res:" + job_id, self.base + "req:" + job_id

    async def ensure_group(self) -> None:
        """The consumer group on the stream (both made when missing)."""
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def create(
        self, job_id: str, spec: bytes, window_s: float, requests: Sequence[bytes], now: float, feed: int
    ) -> None:
        """Store a new job, its requests, and its first `feed` lines as work, in one transaction."""
        job, _, req = self._keys(job_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(req, mapping={str(i): r for i, r in enumerate(requests)})
            keys = [self.base + "seq", self.base + "index", job, self.stream]
            args: list[Any] = [job_id, spec, repr(window_s), repr(now), len(requests), min(feed, len(requests))]
            await self._create(keys, args, client=pipe)
            await pipe.execute()

    async def request(self, job_id: str, index: int) -> bytes | None:
        data: bytes | None = await self.client.hget(self._keys(job_id)[2], str(index))
        return data

    async def finish(self, entry: Entry, line: LineResult, now: float) -> int:
        """Record the line's result once (see _FINISH): 0 not recorded, 1 recorded, 2 recorded and the job ended."""
        entry_id, job_id, index = entry
        job, res, req = self._keys(job_id)
        flag = b"1" if line.ok else b"0"
        args: list[Any] = [GROUP, entry_id, job_id, index, flag + line.result, line.prompt_tokens]
        args += [line.completion_tokens]
        args += [repr(line.cost), line.currency, repr(now), self.keep_ms]
        return int(await self._finish([job, res, req, self.stream], args))

    async def release(self, entry: Entry) -> bool:
        """Let the entry go; its line, when still to run, back in the stream for any replica."""
        entry_id, job_id, index = entry
        job, res, _ = self._keys(job_id)
        return bool(await self._release([job, res, self.stream], [GROUP, entry_id, job_id, index]))

    async def end(self, job_id: str, state: str, now: float) -> str:
        """End a running job in `state` (its keys expire after the keep); the state it had ('' when none)."""
        return text(await self._end(list(self._keys(job_id)), [state, repr(now), self.keep_ms]))

    async def delete(self, job_id: str) -> str:
        """Forget an ended job; the state it had ('' when none; a running job stays)."""
        job, res, req = self._keys(job_id)
        return text(await self._delete([job, res, req, self.base + "index"], [job_id]))

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` new entries for `consumer`, waiting up to `block_ms` for one."""
        got = await self.client.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return [e for _, entries in got or [] for e in self._entries(entries)]

    async def take_over(self, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        """Up to `count` entries other consumers claimed and left idle `idle_ms` or longer, now `consumer`'s."""
        got = await self.client.xautoclaim(self.stream, GROUP, consumer, idle_ms, "0-0", count=count)
        return self._entries(got[1])

    async def touch(self, consumer: str, entry_ids: Sequence[bytes]) -> None:
        """Renew `consumer`'s claims (their idle time back to 0), so no one takes them over."""
        if entry_ids:
            await self.client.xclaim(self.stream, GROUP, consumer, 0, list(entry_ids), justid=True)

    async def leave(self, consumer: str) -> None:
        """Remove `consumer` from the group (it claims nothing any more)."""
        await self.client.xgroup_delconsumer(self.stream, GROUP, consumer)

    async def forget_idle(self, idle_ms: int) -> int:
        """Remove the consumers that claim nothing and have not read for `idle_ms` (replicas gone: their lines
        were taken over); how many. A live one removed by mistake is made again by its next read."""
        gone = 0
        for consumer in await self.client.xinfo_consumers(self.stream, GROUP):
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms:
                await self.client.xgroup_delconsumer(self.stream, GROUP, consumer["name"])
                gone += 1
        return gone

    def _entries(self, raw: Sequence[Any]) -> list[Entry]:
        out: list[Entry] = []
        for entry_id, fields in raw:
            if fields:
                out.append((entry_id, text(fields[b"job"]), int(fields[b"line"])))
        return out

    async def states(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The state of each of `job_ids` ('' for one that is gone)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self._keys(job_id)[0], "state")
            got = await pipe.execute()
        return {job_id: text(s) if s is not None else "" for job_id, s in zip(job_ids, got, strict=True)}

    @staticmethod
    def _record(raw: dict[bytes, bytes]) -> JobRecord | None:
        if not raw:
            return None
        f = {text(k): v for k, v in raw.items()}

        def num(name: str) -> float:
            return float(f[name])

        progress = Progress(
            int(f["total"]),
            int(f["done"]),
            int(f["failed"]),
            int(f["prompt_tokens"]),
            int(f["completion_tokens"]),
            num("cost"),
            text(f["currency"]),
        )
        return JobRecord(
            text(f["id"]),
            int(f["seq"]),
            text(f["state"]),
            bytes(f["spec"]),
            num("window_s"),
            num("created"),
            num("updated"),
            num("ended"),
            progress,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        return self._record(await self.client.hgetall(self._keys(job_id)[0]))

    async def page(self, after_seq: int, limit: int) -> list[JobRecord]:
        """Up to `limit` jobs created after the one numbered `after_seq`, oldest first (expired ones leave
        the index as they are met)."""
        return await page_index(
            self.client, self.base + "index", after_seq, limit, lambda ident: self._keys(ident)[0], self._record
        )

    async def results(self, job_id: str) -> list[tuple[int, bool, bytes]]:
        """The job's answered lines as (index, ok, result), in order."""
        raw: dict[bytes, bytes] = await self.client.hgetall(self._keys(job_id)[1])
        lines = sorted((int(k), v) for k, v in raw.items())
        return [(i, v[:1] == b"1", bytes(v[1:])) for i, v in lines]
