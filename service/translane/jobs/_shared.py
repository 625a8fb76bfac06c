"""Running jobs shared in Redis: every replica a consumer of the one stream of line work, so any replica runs
any job's lines, and the lines of a replica that died are taken over by another.

Each replica (a consumer named for its host, process and a random part) reads new entries with XREADGROUP,
at most `max_lines_per_replica` lines in flight, and every `claim_idle_s / 3` renews its own claims
(XCLAIM JUSTID) and stops the lines of jobs cancelled elsewhere. Entries claimed longer than `claim_idle_s`
without renewal (their replica was killed, or cut off) are taken over with XAUTOCLAIM. A line's result is
recorded once, and its entry acknowledged in the same step (RedisJobStore.finish). A clean stop puts its
lines in flight back in the stream for the others. What a crash costs: the lines in flight on the dead
replica run again elsewhere: those it had an answer for and cached are answered by the shared segment
cache, those whose calls were still at the provider (a batch route's for minutes) are paid again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis

from ..config import JobsConfig
from ._reachable import reachable
from ._redis_store import Entry, RedisJobStore
from ._runner import LineRunner, RouteRoom, WallClock, no_route_room
from ._store import CANCELLED, RUNNING, JobRecord

__all__ = ["SharedJobs", "open_shared_jobs"]

log = logging.getLogger("translane.jobs")

# A read waits this long for new work before looking again (for taken-over work, or for room).
_BLOCK_MS = 1000
# After Redis fails, a loop tries again after this long.
_RETRY_S = 1.0
# Wait polls the job this often (any replica may end it).
_WAIT_POLL_S = 0.2
# The renewal loop runs at least this often, so a cancel on another replica stops the lines here soon.
_WATCH_MAX_S = 0.5
# Connections to Redis this replica's jobs use at most (the lines in flight wait their turn for one)...
_MAX_CONNECTIONS = 64
# ...and how long one waits before its step fails (as a Redis that does not answer fails it).
_CONNECTION_WAIT_S = 10.0
# Consumers that claim nothing and have not read for this many claim_idle_s are replicas gone: forgotten.
_FORGET_AFTER_IDLE = 10
_FORGET_EVERY_S = 60.0


def consumer_name() -> str:
    """This process's name among the consumers: unique per process, readable in XINFO."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class SharedJobs:
    """The jobs in `store`, this process one of the replicas running their lines with `run_line`."""

    def __init__(
        self,
        store: RedisJobStore,
        run_line: LineRunner,
        config: JobsConfig,
        consumer: str,
        wall: WallClock = time.time,
        route_room: RouteRoom = no_route_room,
    ) -> None:
        self.store = store
        self.run_line = run_line
        self.config = config
        self.route_room = route_room
        self.consumer = consumer
        self.wall = wall
        self._lines: dict[bytes, tuple[str, asyncio.Task[None]]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._loops: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._reading(), name="jobs: read"),
            loop.create_task(self._watching(), name="jobs: renew"),
        ]

    # --- the face (JobControl) --------------------------------------------------------------------------

    @reachable
    async def submit(self, spec: bytes, window_s: float, requests: Sequence[bytes]) -> JobRecord:
        """Store a new job; its first lines go to the stream at once, for whichever replica reads first."""
        if self._closed:
            raise RuntimeError("the job runner is closed")
        job_id = uuid.uuid4().hex
        feed = self.config.max_concurrency_per_job + self.route_room(window_s)
        await self.store.create(job_id, spec, window_s, requests, self.wall(), feed)
        record = await self.store.get(job_id)
        assert record is not None
        return record

    @reachable
    async def get(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    @reachable
    async def page(self, after_seq: int, limit: int) -> list[JobRecord]:
        return await self.store.page(after_seq, limit)

    @reachable
    async def results(self, job_id: str) -> list[tuple[int, bool, bytes]]:
        return await self.store.results(job_id)

    @reachable
    async def cancel(self, job_id: str) -> JobRecord | None:
        """End the job CANCELLED (no line of it is recorded from now on); its lines here stop now, those on
        other replicas at their next renewal. A job already ended is left as it is."""
        await self.store.end(job_id, CANCELLED, self.wall())
        await self._stop([task for job, task in self._lines.values() if job == job_id])
        return await self.store.get(job_id)

    @reachable
    async def delete(self, job_id: str) -> JobRecord | None:
        """Forget an ended job and its results; a running job is left (the record says so), None when unknown."""
        record = await self.store.get(job_id)
        if record is None or record.state == RUNNING:
            return record
        await self.store.delete(job_id)
        return record

    @reachable
    async def wait(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """The job once it has ended (on any replica), or as it is when `timeout_s` passes first."""
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout_s)
        while True:
            record = await self.store.get(job_id)
            left = until - loop.time()
            if record is None or record.state != RUNNING or left <= 0:
                return record
            await asyncio.sleep(min(_WAIT_POLL_S, left))

    # --- running lines ----------------------------------------------------------------------------------

    async def _reading(self) -> None:
        """Take work while there is room: entries others left idle past claim_idle_s, else new ones."""
        loop = asyncio.get_running_loop()
        # Room for the batch routes' lines too (any job's window: the longest takes every route).
        bound = self.config.max_lines_per_replica + self.route_room(math.inf)
        idle_ms = int(self.config.claim_idle_s * 1000)
        grouped = False
        next_takeover = next_forget = 0.0
        while True:
            while len(self._lines) >= bound:
                self._room.clear()
                await self._room.wait()
            room = bound - len(self._lines)
            try:
                if not grouped:
                    await self.store.ensure_group()
                    grouped = True
                entries: list[Entry] = []
                if loop.time() >= next_takeover:
                    next_takeover = loop.time() + self._watch_every_s()
                    entries = await self.store.take_over(self.consumer, idle_ms, room)
                    if entries:
                        log.warning("took over %d line(s) another replica left idle", len(entries))
                if loop.time() >= next_forget:
                    next_forget = loop.time() + _FORGET_EVERY_S
                    await self.store.forget_idle(idle_ms * _FORGET_AFTER_IDLE)
                if not entries:
                    entries = await self.store.read(self.consumer, room, _BLOCK_MS)
            except Exception as exc:
                # The group is made again first (a Redis that restarted empty has none).
                grouped = False
                log.warning("reading job lines from Redis failed (%s); trying again in %.0fs", exc, _RETRY_S)
                await asyncio.sleep(_RETRY_S)
                continue
            for entry in entries:
                if entry[0] not in self._lines:
                    task = loop.create_task(self._line(entry), name=f"job {entry[1]} line {entry[2]}")
                    self._lines[entry[0]] = (entry[1], task)

    async def _line(self, entry: Entry) -> None:
        _, job_id, index = entry
        try:
            record = await self.store.get(job_id)
            request = await self.store.request(job_id, index) if record and record.state == RUNNING else None
            if record is None or request is None:
                # The job ended, was deleted or expired: the entry only goes.
                await self.store.release(entry)
                return
            line = await self.run_line(record, index, request)
            await asyncio.shield(self.store.finish(entry, line, self.wall()))
        except asyncio.CancelledError:
            # Stopped (a cancel, a clean stop): the line, if still to run, goes back for any replica.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(entry))
            raise
        except Exception:
            log.exception("job %s line %d could not be answered; it goes back to the stream", job_id, index)
            with contextlib.suppress(Exception):
                await self.store.release(entry)
        finally:
            self._lines.pop(entry[0], None)
            self._room.set()

    def _watch_every_s(self) -> float:
        return min(_WATCH_MAX_S, self.config.claim_idle_s / 3)

    async def _watching(self) -> None:
        """Renew this replica's claims, and stop its lines of jobs that ended elsewhere (cancelled)."""
        while True:
            await asyncio.sleep(self._watch_every_s())
            lines = dict(self._lines)
            if not lines:
                continue
            try:
                await self.store.touch(self.consumer, list(lines))
                states = await self.store.states(sorted({job for job, _ in lines.values()}))
            except Exception as exc:
                log.warning("renewing job line claims in Redis failed: %s", exc)
                continue
            await self._stop([task for job, task in lines.values() if states.get(job) != RUNNING])

    @staticmethod
    async def _stop(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def aclose(self) -> None:
        """Stop reading; this replica's lines in flight go back to the stream for the others."""
        self._closed = True
        await self._stop(self._loops)
        await self._stop([task for _, task in self._lines.values()])
        with contextlib.suppress(Exception):
            await self.store.leave(self.consumer)


@contextlib.asynccontextmanager
async def open_shared_jobs(
    redis_url: str, prefix: str, run_line: LineRunner, config: JobsConfig, route_room: RouteRoom = no_route_room
) -> AsyncIterator[SharedJobs]:
    """The jobs shared in the Redis at `redis_url` under `prefix`, this process running lines as one replica;
    on exit its lines in flight go back to the stream and it leaves the group."""
    # Reads block for up to _BLOCK_MS: the socket waits longer than that. Thousands of lines share a bounded
    # pool, each waiting its turn for a connection (redis-py's default pool refuses the 101st at once).
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=_MAX_CONNECTIONS,
        timeout=_CONNECTION_WAIT_S,
        socket_timeout=_BLOCK_MS / 1000 + 5,
        socket_connect_timeout=2,
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        store = RedisJobStore(client, prefix, config.keep_s)
        jobs = SharedJobs(store, run_line, config, consumer_name(), route_room=route_room)
        jobs.start()
        try:
            yield jobs
        finally:
            await jobs.aclose()
    finally:
        await client.aclose()
