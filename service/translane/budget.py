"""Daily budgets: per model, the tokens (and/or cost) it may spend in the provider's day.

The day turns at midnight in the provider's time zone (Asia/Shanghai for Ark). A model
whose budget is spent leaves rotation until the next day; its work falls back along its
`fallbacks`, or is refused with a message naming the budget. What was spent today is kept
in a SQLite file (the cache's data directory), or in Redis summed over every replica when
the governor is shared there, so neither a restart nor N replicas hand out the day's budget
again. Time comes from a wall clock passed in, so tests own the day.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import aiosqlite
import redis.asyncio as aioredis

from .config import Config, ModelConfig
from .errors import BudgetSpent, Overloaded, TranslaneError

__all__ = ["Budgets", "RedisSpending", "SqliteSpending", "open_budgets"]

log = logging.getLogger("translane.budget")

WallClock = Callable[[], float]


class Spending(Protocol):
    """Where a day's spending is kept beyond this process."""

    async def add(self, model: str, day: str, tokens: int, cost: float) -> tuple[int, float] | None:
        """Add a charge; the shared totals after it when the store knows them."""
        ...

    async def today(self, day: str) -> dict[str, tuple[int, float]]: ...


class SqliteSpending:
    """The day's spending in a file: a restart does not hand the budget out again."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def add(self, model: str, day: str, tokens: int, cost: float) -> tuple[int, float] | None:
        await self.db.execute(
            "INSERT INTO spent (model, day, tokens, cost) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(model, day) DO UPDATE SET tokens = tokens + excluded.tokens, cost = cost + excluded.cost",
            (model, day, tokens, cost),
        )
        await self.db.commit()
        return None

    async def today(self, day: str) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        async with self.db.execute("SELECT model, tokens, cost FROM spent WHERE day = ?", (day,)) as cur:
            async for model, tokens, cost in cur:
                out[str(model)] = (int(tokens), float(cost))
        return out


class RedisSpending:
    """The day's spending in Redis, summed over every replica; each charge reads the shared total back."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, day: str) -> str:
        return f"{self.prefix}:{day}"

    async def add(self, model: str, day: str, tokens: int, cost: float) -> tuple[int, float] | None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(self._key(day), f"{model}:tokens", tokens)
        pipe.hincrbyfloat(self._key(day), f"{model}:cost", cost)
        pipe.expire(self._key(day), 3 * 86400)
        total_tokens, total_cost, _ = await pipe.execute()
        return int(total_tokens), float(total_cost)

    async def today(self, day: str) -> dict[str, tuple[int, float]]:
        raw = await self.client.hgetall(self._key(day))
        out: dict[str, tuple[int, float]] = {}
        for field, value in raw.items():
            name, _, kind = (field.decode() if isinstance(field, bytes) else str(field)).rpartition(":")
            tokens, cost = out.get(name, (0, 0.0))
            out[name] = (int(float(value)), cost) if kind == "tokens" else (tokens, float(value))
        return out


def _nothing() -> None:
    return None


class Budgets:
    """Spent tokens and cost per model for the current day, against each model's daily budget."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        zone: str,
        wall: WallClock = time.time,
        store: Spending | None = None,
    ) -> None:
        self.models = models
        self.zone = ZoneInfo(zone)
        self.wall = wall
        self._store = store
        self._day = ""
        self.tokens: dict[str, int] = {}
        self.cost: dict[str, float] = {}
        # Tokens reserved by calls sent and not yet charged, by model.
        self._in_flight: dict[str, int] = {}
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def any(self) -> bool:
        return any(m.daily_token_budget or m.daily_cost_budget for m in self.models.values())

    def day(self, now: float | None = None) -> str:
        """The provider's date at `now` (wall seconds)."""
        return dt.datetime.fromtimestamp(self.wall() if now is None else now, self.zone).date().isoformat()

    def seconds_to_next_day(self) -> float:
        now = dt.datetime.fromtimestamp(self.wall(), self.zone)
        tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), self.zone)
        return max(1.0, (tomorrow - now).total_seconds())

    def _roll(self) -> None:
        today = self.day()
        if today != self._day:
            self._day = today
            self.tokens.clear()
            self.cost.clear()

    def spent(self, model: str) -> tuple[int, float]:
        self._roll()
        return self.tokens.get(model, 0), self.cost.get(model, 0.0)

    def exhausted(self, model: ModelConfig, with_in_flight: bool = False) -> str:
        """Why `model` may not spend more today ("" when it may).

        `with_in_flight` (when a call is granted): the calls already sent count too, at their reservations
        (priced as output: a budget errs on the side of spent), so work that queued while others spent the
        budget is not sent past it.
        """
        if not (model.daily_token_budget or model.daily_cost_budget):
            return ""
        tokens, cost = self.spent(model.name)
        ahead = self._in_flight.get(model.name, 0) if with_in_flight else 0
        held = f", {ahead} more in flight" if ahead else ""
        if model.daily_token_budget and tokens + ahead >= model.daily_token_budget:
            state = "committed" if ahead else "spent"
            budget = model.daily_token_budget
            return f"daily budget of {budget} tokens for {model.name} is {state} ({tokens} used{held})"
        if model.daily_cost_budget and cost + model.cost(0, ahead) >= model.daily_cost_budget:
            return (
                f"daily budget of {model.daily_cost_budget:g} {model.currency} for {model.name} is "
                f"{'committed' if ahead else 'spent'} ({cost:.4f} used{held})"
            )
        return ""

    def refusal(self, model: ModelConfig, with_in_flight: bool = False) -> TranslaneError | None:
        """Why a call of `model` may not go by the day's budget (None: it may): spent, until the next day; or,
        `with_in_flight` (at the grant), committed by calls in flight, briefly (their reservations are
        estimates, settled when they end)."""
        spent = self.exhausted(model)
        if spent:
            return BudgetSpent(f"model: {spent}", retry_after_s=self.seconds_to_next_day())
        committed = self.exhausted(model, with_in_flight=True) if with_in_flight else ""
        if committed:
            return Overloaded(f"model: {committed}; wait for them to settle", retry_after_s=1.0)
        return None

    def in_flight(self, model: ModelConfig, tokens: int) -> Callable[[], None]:
        """Count a sent call's reserved `tokens` as about to be spent; the returned function stops counting them."""
        if not (model.daily_token_budget or model.daily_cost_budget):
            return _nothing
        self._in_flight[model.name] = self._in_flight.get(model.name, 0) + tokens

        def done() -> None:
            left = self._in_flight[model.name] - tokens
            if left:
                self._in_flight[model.name] = left
            else:
                del self._in_flight[model.name]

        return done

    def charge(self, model: ModelConfig, tokens: int, cost: float) -> None:
        """Count a call the provider was paid for (only models with a budget are counted)."""
        if not (model.daily_token_budget or model.daily_cost_budget):
            return  # every call passes here: keep the common case free
        self._roll()
        self.tokens[model.name] = self.tokens.get(model.name, 0) + tokens
        self.cost[model.name] = self.cost.get(model.name, 0.0) + cost
        if self._store is not None:
            task = asyncio.get_running_loop().create_task(self._save(model.name, self._day, tokens, cost))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _save(self, model: str, day: str, tokens: int, cost: float) -> None:
        assert self._store is not None
        try:
            shared = await self._store.add(model, day, tokens, cost)
        except Exception as exc:  # a store that fails never fails a translation; memory still counts
            log.warning("budget write failed: %s", exc)
            return
        if shared is not None and day == self._day:
            # What every replica spent: the switch happens wherever the total passes the budget.
            self.tokens[model] = max(self.tokens.get(model, 0), shared[0])
            self.cost[model] = max(self.cost.get(model, 0.0), shared[1])

    async def load(self) -> None:
        """Today's spending as a previous run (or the other replicas) left it."""
        if self._store is None:
            return
        self._roll()
        try:
            for model, (tokens, cost) in (await self._store.today(self._day)).items():
                self.tokens[model], self.cost[model] = tokens, cost
        except Exception as exc:
            log.warning("budget read failed: %s", exc)

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


@contextlib.asynccontextmanager
async def open_budgets(config: Config, wall: WallClock = time.time) -> AsyncIterator[Budgets]:
    """The budgets: kept in Redis when the governor is shared there, else in `<data dir>/budget.sqlite3`
    when the cache is on disk, else in memory."""
    db: aiosqlite.Connection | None = None
    probe = Budgets(config.models, config.budget_timezone, wall)
    if probe.any and config.governor.kind == "redis":
        client = aioredis.Redis.from_url(config.governor.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
        shared = Budgets(
            config.models,
            config.budget_timezone,
            wall,
            RedisSpending(client, f"{{{config.governor.redis_prefix}}}:budget"),
        )
        try:
            await shared.load()
            yield shared
        finally:
            await shared.aclose()
            await client.aclose()
        return
    if probe.any and config.cache.kind == "sqlite":
        path = Path(config.cache.path).with_name("budget.sqlite3")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(str(path))
            await db.execute(
                "CREATE TABLE IF NOT EXISTS spent (model TEXT NOT NULL, day TEXT NOT NULL, tokens INTEGER NOT NULL, "
                "cost REAL NOT NULL, PRIMARY KEY (model, day))"
            )
            await db.commit()
        except (OSError, aiosqlite.Error) as exc:
            log.warning("budget file %s cannot be opened (%s): today's spending is kept in memory only", path, exc)
            db = None
    budgets = Budgets(config.models, config.budget_timezone, wall, SqliteSpending(db) if db is not None else None)
    try:
        await budgets.load()
        yield budgets
    finally:
        await budgets.aclose()
        if db is not None:
            await db.close()
