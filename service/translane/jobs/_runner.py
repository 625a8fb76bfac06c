"""Running jobs: each job's lines, a bounded number at a time, claimed from the store and recorded there once.

What a line is and how it is answered is the caller's (`LineRunner`: the gRPC face runs it through the
engine); this module owns the order of things: claim (committed), run, record (committed), and what
happens on cancel (no new line starts, the lines in flight are stopped and go back to pending, the job
ends CANCELLED), on a clean stop (the same, the job stays running for the next start) and on a start
(every unfinished job runs on, the lines a killed process left running first among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ._store import CANCELLED, RUNNING, SUCCEEDED, JobRecord, JobStore, LineResult, open_store

__all__ = ["Jobs", "LineRunner", "RouteRoom", "no_route_room", "open_jobs"]

log = logging.getLogger("translane.jobs")

# Answers one line: the job (its spec and window), the line's index and its encoded request. It returns the
# line's result, a failure included; it raises only when the line could not be answered at all.
LineRunner = Callable[[JobRecord, int, bytes], Awaitable[LineResult]]
WallClock = Callable[[], float]
# The lines a job with a completion window of so many seconds may have in flight on the provider's batch routes,
# on top of its online bound (a batch answer takes minutes: only many lines at once keep such a route busy).
RouteRoom = Callable[[float], int]


def no_route_room(window_s: float) -> int:
    return 0


@dataclass(slots=True)
class _Live:
    """A job this process is running."""

    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cancelling: bool = False


class Jobs:
    """The jobs of this process: submitted, resumed, cancelled, waited for; lines answered by `run_line`,
    at most `concurrency` of a job's at once, plus its `route_room` for its window."""

    def __init__(
        self,
        store: JobStore,
        run_line: LineRunner,
        concurrency: int,
        wall: WallClock = time.time,
        route_room: RouteRoom = no_route_room,
    ) -> None:
        self.store = store
        self.run_line = run_line
        self.concurrency = concurrency
        self.route_room = route_room
        self.wall = wall
        self._live: dict[str, _Live] = {}
        self._closed = False

    async def resume(self) -> int:
        """Start every unfinished job the store holds; how many."""
        ids = await self.store.recover()
        for job_id in ids:
            record = await self.store.get(job_id)
            if record is not None:
                self._start(record)
        if ids:
            log.info("resumed %d unfinished job(s)", len(ids))
        return len(ids)

    async def submit(self, spec: bytes, window_s: float, requests: Sequence[bytes]) -> JobRecord:
        """Store a new job (every line pending) and start it."""
        if self._closed:
            raise RuntimeError("the job runner is closed")
        job_id = uuid.uuid4().hex
        await self.store.create(job_id, spec, window_s, requests, self.wall())
        record = await self.store.get(job_id)
        assert record is not None
        self._start(record)
        return record

    def running(self, job_id: str) -> bool:
        return job_id in self._live

    def _start(self, record: JobRecord) -> None:
        live = self._live[record.id] = _Live()
        live.task = asyncio.get_running_loop().create_task(self._run(record, live), name=f"job {record.id}")

    async def _run(self, record: JobRecord, live: _Live) -> None:
        job_id = record.id
        pending: deque[int] = deque()

        async def lines() -> None:
            while pending:
                index = pending.popleft()
                request = await self.store.claim(job_id, index)
                if request is None:
                    continue
                line = await self.run_line(record, index, request)
                await self.store.finish(job_id, index, line, self.wall())

        try:
            pending.extend(await self.store.pending(job_id))
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency + self.route_room(record.window_s), len(pending))):
                    group.create_task(lines())
        except asyncio.CancelledError:
            # Its lines in flight go back to pending; cancelled, the job ends, else it runs on at the next start.
            await asyncio.shield(self._stopped(job_id, live.cancelling))
            raise
        except Exception:
            log.exception("job %s stopped: its unfinished lines run at the next start", job_id)
        else:
            await self.store.end(job_id, SUCCEEDED, self.wall())
        finally:
            self._live.pop(job_id, None)
            live.ended.set()

    async def _stopped(self, job_id: str, cancelled: bool) -> None:
        await self.store.release(job_id)
        if cancelled:
            await self.store.end(job_id, CANCELLED, self.wall())

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    async def page(self, after_seq: int, limit: int) -> list[JobRecord]:
        return await self.store.page(after_seq, limit)

    async def results(self, job_id: str) -> list[tuple[int, bool, bytes]]:
        return await self.store.results(job_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Stop the job: no new line starts, those in flight are stopped; it ends CANCELLED. A job already ended
        is left as it is."""
        live = self._live.get(job_id)
        if live is not None and live.task is not None:
            live.cancelling = True
            live.task.cancel()
            await asyncio.wait([live.task])
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> JobRecord | None:
        """Forget an ended job and its results; a running job is left (the record says so), None when unknown."""
        record = await self.store.get(job_id)
        if record is None or record.state == RUNNING:
            return record
        await self.store.delete(job_id)
        return record

    async def wait(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """The job once it has ended, or as it is when `timeout_s` passes first."""
        live = self._live.get(job_id)
        if live is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(live.ended.wait()), max(0.0, timeout_s))
        return await self.store.get(job_id)

    async def aclose(self) -> None:
        """Stop every job's lines (back to pending; the jobs run on at the next start)."""
        self._closed = True
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


# Ended jobs past their keep are swept at least this often (and at start).
_SWEEP_MAX_S = 3600.0


async def _sweeping(store: JobStore, every_s: float) -> None:
    while True:
        try:
            if swept := await store.sweep():
                log.info("forgot %d job(s) ended more than %.0fs ago", swept, store.keep_s)
        except Exception:
            log.exception("sweeping ended jobs failed; trying again in %.0fs", every_s)
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def open_jobs(
    path: str,
    run_line: LineRunner,
    concurrency: int,
    keep_s: float = math.inf,
    route_room: RouteRoom = no_route_room,
) -> AsyncIterator[Jobs]:
    """The jobs kept at `path` (":memory:" for none beyond the process), every unfinished one resumed, an ended
    one forgotten `keep_s` after it ended; on exit the lines in flight stop and the jobs wait in the store for
    the next start."""
    async with open_store(path, keep_s) as store:
        jobs = Jobs(store, run_line, concurrency, route_room=route_room)
        sweeper = None
        if math.isfinite(keep_s):
            sweeper = asyncio.get_running_loop().create_task(_sweeping(store, min(keep_s, _SWEEP_MAX_S)))
        try:
            await jobs.resume()
            yield jobs
        finally:
            if sweeper is not None:
                sweeper.cancel()
                await asyncio.wait([sweeper])
            await jobs.aclose()
