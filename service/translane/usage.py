"""The usage ledger: what every call the provider answered cost, per tenant, model, day and task, kept to bill by.

The engine's settle layer records each answered call (`Ledger.record`, no I/O): the charge is summed into a
bounded buffer in memory, and written in the background, one batch at a time (`flush_s` after the first
charge, or at once when `flush_entries` keys wait), so a reply never waits on a commit. The buffer is keyed
by (tenant, model, day, task, currency): a burst of calls of one task is one row to write, however many calls.
Behind it sits a store: a SQLite file beside the cache (the default), Redis when the governor is shared
there (one hash a day, HINCRBY'd by every replica), or memory. A store that fails keeps its batch in the
buffer for the next try; when the buffer is full, new keys are dropped and counted, never waited for.

The day is the budget's (the provider's date, `config.budget_timezone`). Queries (`UsageQuery`) read a range
of days, at most MAX_RANGE_DAYS, and sum the rows by any of model, day and task; rows never sum over tenants
or currencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import aiosqlite
import redis.asyncio as aioredis

from .config import Config
from .errors import InvalidRequest, UsageUnavailable, quote

__all__ = [
    "ALL_TENANTS",
    "GROUPS",
    "MAX_RANGE_DAYS",
    "Ledger",
    "MemoryLedger",
    "RedisLedger",
    "SqliteLedger",
    "Tally",
    "UsageKey",
    "UsageQuery",
    "UsageRow",
    "open_ledger",
]

log = logging.getLogger("translane.usage")

# What a query may group by, beside the tenant and the currency (always kept apart).
GROUPS = ("model", "day", "task")
# The widest range one query reads (a year, and a leap day).
MAX_RANGE_DAYS = 366
# A query's tenant that stands for every tenant (an admin's).
ALL_TENANTS = "*"
# How long Redis keeps a day's usage: past the widest range a query reads.
REDIS_KEEP_S = 400 * 86400
WallClock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class UsageKey:
    """What one row of usage is kept by. `tenant` "" is the default tenant."""

    tenant: str
    model: str
    day: str
    task_id: str
    currency: str


@dataclass(slots=True)
class Tally:
    """Calls answered, tokens the provider counted and what they cost."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cost += other.cost


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One row of a query's answer: the key's fields it is grouped by ("" for the others) and their sums."""

    key: UsageKey
    tally: Tally


def _date(field: str, raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{field}: {quote(raw)} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated question: whose usage (a tenant, or ALL_TENANTS), which days (inclusive), grouped by what."""

    tenant: str
    start: dt.date
    end: dt.date
    group_by: tuple[str, ...]

    @classmethod
    def parse(cls, tenant: str, start: str, end: str, group_by: Iterable[str], today: dt.date) -> UsageQuery:
        """From a request's fields: `end` defaults to `today`, `start` to the first day of `end`'s month;
        InvalidRequest naming the field when one is wrong."""
        last = _date("end_day", end) if end else today
        first = _date("start_day", start) if start else last.replace(day=1)
        if first > last:
            raise InvalidRequest(f"start_day: {first.isoformat()} is after end_day {last.isoformat()}")
        days = (last - first).days + 1
        if days > MAX_RANGE_DAYS:
            raise InvalidRequest(f"start_day: the range is {days} days, over the limit of {MAX_RANGE_DAYS}")
        groups: list[str] = []
        for g in group_by:
            name = g.strip().lower()
            if name not in GROUPS:
                raise InvalidRequest(f"group_by: unknown value {quote(g)}; accepted: {', '.join(GROUPS)}")
            if name not in groups:
                groups.append(name)
        return cls(tenant, first, last, tuple(groups))

    def days(self) -> list[str]:
        return [(self.start + dt.timedelta(days=i)).isoformat() for i in range((self.end - self.start).days + 1)]

    def covers(self, key: UsageKey) -> bool:
        return (self.tenant == ALL_TENANTS or key.tenant == self.tenant) and (
            self.start.isoformat() <= key.day <= self.end.isoformat()
        )

    def grouped(self, rows: Iterable[tuple[UsageKey, Tally]]) -> list[UsageRow]:
        """`rows` (already in range) summed by tenant, currency and the query's groups, sorted by key."""
        sums: dict[UsageKey, Tally] = {}
        by = self.group_by
        for key, tally in rows:
            if not self.covers(key):
                continue
            group = UsageKey(
                key.tenant,
                key.model if "model" in by else "",
                key.day if "day" in by else "",
                key.task_id if "task" in by else "",
                key.currency,
            )
            sums.setdefault(group, Tally()).add(tally)
        ordered = sorted(sums, key=lambda k: (k.tenant, k.day, k.model, k.task_id, k.currency))
        return [UsageRow(k, sums[k]) for k in ordered]


class LedgerStore(Protocol):
    """Where usage is kept beyond the buffer."""

    async def add_many(self, rows: list[tuple[UsageKey, Tally]]) -> None:
        """Add every row's sums to what is kept (one batch: all or nothing where the store can)."""
        ...

    async def rows(self, query: UsageQuery) -> list[tuple[UsageKey, Tally]]:
        """The rows the query's tenant and days cover (ungrouped)."""
        ...


class MemoryLedger:
    """Usage in this process only (no cache file, no shared governor): lost on restart."""

    def __init__(self) -> None:
        self.kept: dict[UsageKey, Tally] = {}

    async def add_many(self, rows: list[tuple[UsageKey, Tally]]) -> None:
        for key, tally in rows:
            self.kept.setdefault(key, Tally()).add(tally)

    async def rows(self, query: UsageQuery) -> list[tuple[UsageKey, Tally]]:
        return [(k, t) for k, t in self.kept.items() if query.covers(k)]


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS usage (tenant TEXT NOT NULL, model TEXT NOT NULL, day TEXT NOT NULL, "
    "task_id TEXT NOT NULL, currency TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, "
    "completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, cost REAL NOT NULL, "
    "PRIMARY KEY (tenant, day, model, task_id, currency)) WITHOUT ROWID"
)


class SqliteLedger:
    """Usage in a SQLite file: a restart keeps every day's rows."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def add_many(self, rows: list[tuple[UsageKey, Tally]]) -> None:
        try:
            await self.db.executemany(
                "INSERT INTO usage (tenant, model, day, task_id, currency, requests, prompt_tokens, "
                "completion_tokens, cached_tokens, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(tenant, day, model, task_id, currency) DO UPDATE SET "
                "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cached_tokens = cached_tokens + excluded.cached_tokens, cost = cost + excluded.cost",
                [(k.tenant, k.model, k.day, k.task_id, k.currency, *_numbers(t)) for k, t in rows],
            )
            await self.db.commit()
        except BaseException:
            # Nothing of a failed batch stays half-written for the next batch's commit to carry along.
            with contextlib.suppress(Exception):
                await self.db.rollback()
            raise

    async def rows(self, query: UsageQuery) -> list[tuple[UsageKey, Tally]]:
        sql = (
            "SELECT tenant, model, day, task_id, currency, requests, prompt_tokens, completion_tokens, "
            "cached_tokens, cost FROM usage WHERE day >= ? AND day <= ?"
        )
        args: tuple[str, ...] = (query.start.isoformat(), query.end.isoformat())
        if query.tenant != ALL_TENANTS:
            sql += " AND tenant = ?"
            args = (*args, query.tenant)
        out: list[tuple[UsageKey, Tally]] = []
        async with self.db.execute(sql, args) as cur:
            async for row in cur:
                key = UsageKey(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]))
                out.append((key, Tally(int(row[5]), int(row[6]), int(row[7]), int(row[8]), float(row[9]))))
        return out


def _numbers(t: Tally) -> tuple[int, int, int, int, float]:
    return t.requests, t.prompt_tokens, t.completion_tokens, t.cached_tokens, t.cost


_INT_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens")


class RedisLedger:
    """Usage in Redis, one hash a day for every replica: field `[tenant, model, task, currency]|measure`."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, day: str) -> str:
        return f"{self.prefix}:{day}"

    async def add_many(self, rows: list[tuple[UsageKey, Tally]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        days = set()
        for key, tally in rows:
            name = self._key(key.day)
            days.add(name)
            head = json.dumps([key.tenant, key.model, key.task_id, key.currency], ensure_ascii=False)
            for measure in _INT_FIELDS:
                amount = getattr(tally, measure)
                if amount:
                    pipe.hincrby(name, f"{head}|{measure}", amount)
            if tally.cost:
                pipe.hincrbyfloat(name, f"{head}|cost", tally.cost)
        for name in days:
            pipe.expire(name, REDIS_KEEP_S)
        await pipe.execute()

    async def rows(self, query: UsageQuery) -> list[tuple[UsageKey, Tally]]:
        days = query.days()
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self._key(day))
        out: dict[UsageKey, Tally] = {}
        for day, fields in zip(days, await pipe.execute(), strict=True):
            for raw_field, raw_value in fields.items():
                text = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
                head, _, measure = text.rpartition("|")
                tenant, model, task_id, currency = json.loads(head)
                key = UsageKey(tenant, model, day, task_id, currency)
                if not query.covers(key):
                    continue
                tally = out.setdefault(key, Tally())
                value = raw_value.decode() if isinstance(raw_value, bytes) else str(raw_value)
                if measure == "cost":
                    tally.cost = float(value)
                elif measure in _INT_FIELDS:
                    setattr(tally, measure, int(value))
        return list(out.items())


# After a failed write, how long the buffer waits before trying the store again.
RETRY_AFTER_S = 1.0


class Ledger:
    """Usage recorded without I/O, written behind the replies in batches; read back grouped (`usage`)."""

    def __init__(
        self,
        zone: str,
        store: LedgerStore | None = None,
        *,
        wall: WallClock = time.time,
        flush_s: float = 0.25,
        flush_entries: int = 512,
        max_pending: int = 100_000,
    ) -> None:
        self.zone = ZoneInfo(zone)
        self.store: LedgerStore = store if store is not None else MemoryLedger()
        self.wall = wall
        self.flush_s = flush_s
        self.flush_entries = flush_entries
        self.max_pending = max_pending
        # Recorded, not yet handed to the store; by UsageKey's fields as a plain tuple (hashed and compared in C:
        # this is on every call), made UsageKeys when they leave the buffer.
        self._pending: dict[tuple[str, str, str, str, str], Tally] = {}
        # Charges not kept because the buffer was full (the store down for long): logged, and counted here.
        self.dropped = 0
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._failing = False
        # The day of the last wall second a call was recorded in: a zone's dates change only on whole seconds
        # (midnights and offset changes fall on them), so every call within that second has the same day.
        self._second = -1
        self._day = ""

    def today(self) -> dt.date:
        """The budget's date now."""
        return dt.datetime.fromtimestamp(self.wall(), self.zone).date()

    def _day_of(self, now: float) -> str:
        """The date at wall time `now`, ISO: worked out once a second, not once a call."""
        second = math.floor(now)
        if second != self._second:
            self._day = dt.datetime.fromtimestamp(second, self.zone).date().isoformat()
            self._second = second
        return self._day

    def record(
        self,
        tenant: str,
        model: str,
        task_id: str,
        currency: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        cost: float,
    ) -> None:
        """One answered call: summed into the buffer now, written with the next batch (never waited for)."""
        key = (tenant, model, self._day_of(self.wall()), task_id, currency)
        tally = self._pending.get(key)
        if tally is None:
            if len(self._pending) >= self.max_pending:
                if not self.dropped:
                    log.error("usage buffer full (%d rows unwritten): usage is being lost", self.max_pending)
                self.dropped += 1
                return
            tally = self._pending[key] = Tally()
        tally.requests += 1
        tally.prompt_tokens += prompt_tokens
        tally.completion_tokens += completion_tokens
        tally.cached_tokens += cached_tokens
        tally.cost += cost
        if len(self._pending) >= self.flush_entries and not self._failing:
            self._flush_soon()
        elif self._timer is None and self._writing is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush_soon)

    @property
    def pending(self) -> int:
        """Rows recorded and not yet written."""
        return len(self._pending)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is None and self._pending:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending:
                batch = list(self._pending.items())
                self._pending = {}
                try:
                    await self.store.add_many([(UsageKey(*key), tally) for key, tally in batch])
                except Exception as exc:
                    # Kept for the next try, summed with what came meanwhile.
                    for key, tally in batch:
                        self._pending.setdefault(key, Tally()).add(tally)
                    if not self._failing:
                        log.warning("usage write failed (%s): kept in memory, tried again", exc)
                    self._failing = True
                    return
                if self._failing:
                    log.info("usage written again after a failure")
                self._failing = False
                if len(self._pending) < self.flush_entries:
                    break  # the rest waits for the timer
        finally:
            self._writing = None
            if self._pending and self._timer is None:
                delay = RETRY_AFTER_S if self._failing else self.flush_s
                self._timer = asyncio.get_running_loop().call_later(delay, self._flush_soon)

    async def flush(self) -> None:
        """Write every pending row now (and wait for a batch already being written); a failing store leaves
        them pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._writing is not None or self._pending:
            if self._writing is None:
                self._writing = asyncio.get_running_loop().create_task(self._write())
            await asyncio.shield(self._writing)
            if self._failing:
                break
        if self._timer is not None and not self._failing:
            self._timer.cancel()
            self._timer = None

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """The query's rows, from the store and the buffer not yet written to it; UsageUnavailable when the store
        cannot be read (a part of the answer is no answer to bill by)."""
        await self.flush()
        try:
            rows = await self.store.rows(query)
        except Exception as exc:
            raise UsageUnavailable(f"usage cannot be read now: {type(exc).__name__}: {exc}") from exc
        unwritten = [(UsageKey(*k), t) for k, t in self._pending.items()]
        unwritten = [(k, t) for k, t in unwritten if query.covers(k)]
        return query.grouped([*rows, *unwritten])

    async def aclose(self) -> None:
        """Write what is left; what cannot be written is logged as lost."""
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            log.error("usage of %d rows could not be written and is lost", len(self._pending))


@contextlib.asynccontextmanager
async def open_ledger(config: Config, wall: WallClock = time.time) -> AsyncIterator[Ledger]:
    """The ledger: in Redis when the governor is shared there, else in `<data dir>/usage.sqlite3` when the cache
    is on disk, else in memory. Written out on exit."""
    zone = config.budget_timezone
    flush_s, flush_entries = config.cache.flush_s, config.cache.flush_entries
    if config.governor.kind == "redis":
        client = aioredis.Redis.from_url(config.governor.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        store = RedisLedger(client, f"{{{config.governor.redis_prefix}}}:usage")
        ledger = Ledger(zone, store, wall=wall, flush_s=flush_s, flush_entries=flush_entries)
        try:
            yield ledger
        finally:
            try:
                await ledger.aclose()
            finally:
                await client.aclose()
        return
    db: aiosqlite.Connection | None = None
    sqlite: SqliteLedger | None = None
    if config.cache.kind == "sqlite":
        path = Path(config.cache.path).with_name("usage.sqlite3")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(str(path))
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute(_SQLITE_SCHEMA)
            await db.commit()
            sqlite = SqliteLedger(db)
        except (OSError, aiosqlite.Error) as exc:
            log.warning("usage file %s cannot be opened (%s): usage is kept in memory only", path, exc)
            if db is not None:
                await db.close()
                db = None
    ledger = Ledger(zone, sqlite, wall=wall, flush_s=flush_s, flush_entries=flush_entries)
    try:
        yield ledger
    finally:
        try:
            await ledger.aclose()
        finally:
            if db is not None:
                await db.close()
