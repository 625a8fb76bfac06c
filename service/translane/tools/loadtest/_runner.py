"""Running the steps: open or closed loop, one or two targets, progress, JSONL, early stop."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

from translane.tokens import count_tokens

from ._config import LoadConfig
from ._data import Prompt, prompts
from ._records import Record, Summary, summarize
from ._schedule import arrivals
from ._targets import Client, close_all, open_client

__all__ = ["plan_rate", "run"]

# Open loop by tokens: a translation's answer is about as long as its prompt.
OUTPUT_PER_INPUT = 1.0


def plan_rate(cfg: LoadConfig, step_value: float | None) -> float:
    """Requests per second for an open-loop step: the ladder's value in its unit (`steps_of`), else the rate
    given, else requests planned from `tpm` and the prompts' size."""
    tpm = cfg.tpm
    if step_value is not None:
        if cfg.steps_of == "rate":
            return step_value
        if cfg.steps_of == "rpm":
            return step_value / 60
        tpm = step_value
    elif cfg.rate_per_s:
        return cfg.rate_per_s
    sample = prompts(cfg.data, cfg.prompt_tokens, cfg.prompt_tokens_spread, cfg.seed)
    texts = [" ".join(row.values()) for row in itertools.islice(sample, 50)]
    per_request = sum(count_tokens(t) for t in texts) / len(texts) * (1 + OUTPUT_PER_INPUT)
    return tpm / 60 / max(1.0, per_request)


class _Step:
    """One step's requests against every target, and what it recorded."""

    def __init__(self, cfg: LoadConfig, clients: list[Client], step: int, run_id: str, feed: Iterator[Prompt]) -> None:
        self.cfg, self.clients, self.step, self.run_id, self.feed = cfg, clients, step, run_id, feed
        self.records: list[Record] = []
        self.tasks: set[asyncio.Task[None]] = set()
        # Request n's input, the same for every target (a comparison sends the same inputs): read from the feed
        # in order, held until each of `_takers` has taken it (a closed loop's targets go at their own pace).
        self._held: dict[int, Prompt] = {}
        self._left: dict[int, int] = {}
        self._read = 0
        self._takers = 1
        self.clock0 = time.perf_counter()
        self.on_done: Callable[[Record], None] = lambda r: None

    def prompt(self, n: int) -> Prompt:
        """Request n's input, the same whoever asks; dropped once every taker has had it."""
        while self._read <= n:
            self._held[self._read], self._left[self._read] = next(self.feed), self._takers
            self._read += 1
        prompt = self._held[n]
        self._left[n] -= 1
        if not self._left[n]:
            del self._held[n], self._left[n]
        return prompt

    def _launch(self, n: int, scheduled_s: float, prompt: Prompt, slots: list[asyncio.Semaphore] | None) -> None:
        # With two targets the same input goes to both at the same moment, each first in turn.
        order = list(range(len(self.clients)))
        if n % 2:
            order.reverse()
        for i in order:
            task_id = f"{self.cfg.task_id_prefix}-{self.run_id}-{self.step}-{n}"
            record = Record(self.cfg.targets[i].name, self.step, n, task_id, scheduled_s)
            self.records.append(record)
            slot = slots[i] if slots else None
            task = asyncio.get_running_loop().create_task(self._one(self.clients[i], record, prompt, slot))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, client: Client, record: Record, prompt: Prompt, slot: asyncio.Semaphore | None) -> None:
        try:
            await client.send(record, prompt, self.clock0)
        finally:
            if slot is not None:
                slot.release()
            self.on_done(record)

    def _ended(self, t: float, n: int) -> bool:
        cfg = self.cfg
        return (cfg.duration_s > 0 and t >= cfg.duration_s) or (cfg.requests > 0 and n >= cfg.requests)

    async def open_loop(self, rate: float) -> None:
        cap = self.cfg.max_in_flight
        slots = [asyncio.Semaphore(cap) for _ in self.clients] if cap else []
        for n, t in enumerate(arrivals(rate, self.cfg.arrival, self.cfg.burstiness, self.cfg.seed + self.step)):
            if self._ended(t, n):
                break
            delay = self.clock0 + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            prompt = self.prompt(n)
            # A capped open loop waits for a slot; the wait shows as lateness.
            for slot in slots:
                await slot.acquire()
            self._launch(n, t, prompt, slots)
        await self.drain()

    async def closed_loop(self, concurrency: int) -> None:
        async def worker(client: Client, name: str, counter: Iterator[int]) -> None:
            for n in counter:
                now = time.perf_counter() - self.clock0
                if self._ended(now, n):
                    return
                record = Record(name, self.step, n, f"{self.cfg.task_id_prefix}-{self.run_id}-{self.step}-{n}", now)
                self.records.append(record)
                await client.send(record, self.prompt(n), self.clock0)
                self.on_done(record)

        # Each target its own count: each is sent --requests, the same inputs in the same order, at its own pace.
        counters = [itertools.count() for _ in self.clients]
        self._takers = len(self.clients)
        workers = [
            worker(client, target.name, counter)
            for client, target, counter in zip(self.clients, self.cfg.targets, counters, strict=True)
            for _ in range(concurrency)
        ]
        await asyncio.gather(*workers)

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


class _Ticker:
    """Advances a progress bar as requests end: done / total, errors, p50 so far."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task
        self.errors = 0
        self.p50 = 0.0
        self.latencies: list[float] = []

    def __call__(self, r: Record) -> None:
        self.errors += not r.ok
        if r.ok:
            self.latencies.append(r.e2e_ms)
        if len(self.latencies) % 100 == 1:  # the median now and then, not a sort per request
            self.p50 = sorted(self.latencies)[len(self.latencies) // 2]
        self.bar.update(self.task, advance=1, stats=f"errors {self.errors}  p50 {self.p50:.0f} ms")


def _progress(show: bool) -> AbstractContextManager[Any]:
    if not show:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        transient=False,
        console=Console(stderr=True),  # stdout holds the table
    )


async def run(
    cfg: LoadConfig, *, out: IO[str] | None = None, progress: bool | None = None
) -> tuple[list[Record], list[Summary]]:
    """Run every step against every target; write RUN.jsonl lines to `out`; return the records and summaries."""
    run_id = cfg.run_id or time.strftime("%Y%m%d%H%M%S")
    show = sys.stderr.isatty() if progress is None else progress
    clients = [open_client(cfg, t) for t in cfg.targets]
    feed = prompts(cfg.data, cfg.prompt_tokens, cfg.prompt_tokens_spread, cfg.seed, "" if cfg.cache else run_id)
    summaries: list[Summary] = []
    records: list[Record] = []
    values: list[float | None] = list(cfg.steps) or [None]
    try:
        for step, value in enumerate(values):
            st = _Step(cfg, clients, step, run_id, feed)
            target_rpm = 0.0
            concurrency = 0
            if cfg.closed_loop:
                concurrency = int(value or cfg.concurrency)
                shape = f"closed loop, {concurrency} in flight"
                planned = cfg.requests or 0
                job = st.closed_loop(concurrency)
            else:
                rate = plan_rate(cfg, value)
                target_rpm = rate * 60
                # Named as the run was asked for it: "600 RPM" for --rpm or --steps-of rpm, not "10 req/s".
                asked = {"rpm": f"{rate * 60:g} RPM", "tpm": f"{rate * 60:g} RPM (from the TPM asked)"}
                unit = cfg.steps_of if cfg.steps else ("tpm" if cfg.tpm else "rate")
                shape = f"open loop, {asked.get(unit, f'{rate:g} req/s')} {cfg.arrival}"
                planned = cfg.requests or int(rate * cfg.duration_s)
                job = st.open_loop(rate)
            planned *= len(clients)
            with _progress(show) as bar:
                if bar is not None:
                    task = bar.add_task(f"step {step}: {shape}", total=planned or None, stats="")
                    st.on_done = _Ticker(bar, task)
                await job
                if bar is not None:  # the plan was an estimate (random arrivals, a duration): the bar ends full
                    bar.update(task, total=len(st.records))
            step_summaries = [
                summarize(
                    [r for r in st.records if r.target == t.name],
                    t.name,
                    step,
                    shape,
                    target_rpm,
                    cfg.slo_ttft_ms,
                    cfg.slo_e2e_ms,
                    concurrency=concurrency,
                    stream=cfg.stream,
                )
                for t in cfg.targets
            ]
            stop = any(s.error_share > cfg.stop_error_share for s in step_summaries) and step < len(values) - 1
            for s in step_summaries:
                s.stopped_early = stop
            if out is not None:
                for r in sorted(st.records, key=lambda r: (r.n, r.target)):
                    out.write(json.dumps(r.json(), ensure_ascii=False) + "\n")
                for s in step_summaries:
                    out.write(json.dumps(s.json(), ensure_ascii=False) + "\n")
                out.flush()
            summaries.extend(step_summaries)
            records.extend(st.records)
            if stop:
                break
    finally:
        await close_all(clients)
    return records, summaries
