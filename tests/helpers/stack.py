"""The simulated provider, the service and the shim as child processes on loopback, as deployed, with what a
test reads from outside: their Prometheus metrics and each process's memory."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import resource
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from translane.config import default_models_text

from .eventually import eventually
from .processes import clean_env, free_port, translane

__all__ = ["Samples", "Stack", "arrived", "ensure_open_files", "rss_bytes", "running_stack"]


def rss_bytes(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def ensure_open_files(needed: int) -> None:
    """Raise this process's soft limit on open files to `needed` (children inherit it); skip when the hard
    limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Samples:
    """One scrape of a Prometheus endpoint."""

    def __init__(self, text: str) -> None:
        self._samples = [
            (s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def get(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
        return sum(
            value for n, have, value in self._samples if n == name and all(have.get(k) == v for k, v in labels.items())
        )


@dataclass(frozen=True, slots=True)
class Stack:
    sim: str  # http://127.0.0.1:PORT
    grpc_target: str  # 127.0.0.1:PORT
    service_metrics: str
    service_pid: int
    shim: str = ""  # http://127.0.0.1:PORT, when the stack has a shim
    shim_pid: int = 0

    async def _get(self, url: str) -> str:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200, await r.text()
            return await r.text()

    async def service(self) -> Samples:
        """The service's metrics now."""
        return Samples(await self._get(self.service_metrics))

    async def shim_metrics(self) -> Samples:
        """The shim's metrics now."""
        return Samples(await self._get(f"{self.shim}/metrics"))

    async def until(self, done: Callable[[Samples], bool], what: str, timeout_s: float = 20.0) -> Samples:
        """The service's metrics once `done` holds of them (`what` names it if it never does)."""

        async def reached() -> Samples | None:
            now = await self.service()
            return now if done(now) else None

        return await eventually(reached, timeout_s, what, interval_s=0.05)

    async def quiet(self, timeout_s: float = 20.0, poll_s: float = 0.2) -> Samples:
        """The service's metrics once it has no call in flight or queued and started none over `poll_s`."""
        last: Samples | None = None

        async def settled() -> Samples | None:
            nonlocal last
            before, last = last, await self.service()
            if before is None:
                return None
            granted = "translane_lane_granted_total"
            idle = last.get("translane_lane_in_flight") == 0 and last.get("translane_lane_queued") == 0
            return last if idle and last.get(granted) == before.get(granted) else None

        what = f"the service quiet: nothing in flight or queued, and no call started over {poll_s} s"
        return await eventually(settled, timeout_s, what, interval_s=poll_s)

    async def sim_set(self, **knobs: float) -> None:
        """Change the simulator's runtime knobs (latency, faults, answer length)."""
        async with aiohttp.ClientSession() as s, s.post(f"{self.sim}/_sim/config", json=knobs) as r:
            assert r.status == 200, await r.text()


def arrived(start: Samples, now: Samples, rpc: str = "TranslateStream") -> float:
    """How many `rpc` calls reached the service between the scrapes `start` and `now` (served or being served)."""
    served = now.get("translane_requests_total", rpc=rpc) - start.get("translane_requests_total", rpc=rpc)
    return served + now.get("translane_requests_in_flight", rpc=rpc)


@contextlib.contextmanager
def running_stack(
    tmp: Path,
    *,
    change: Callable[[dict[str, Any]], object] = lambda data: None,
    sim_args: tuple[str, ...] = (),
    shim: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """The shipped models file changed by `change`, the simulator (`sim_args`), the service with metrics, and
    the shim in front of it when asked; each logs to a file in `tmp`, and is stopped on exit."""
    data = tomllib.loads(default_models_text())
    change(data)
    models = tmp / "models.yaml"
    models.write_text(yaml.safe_dump(data), encoding="utf-8")
    sim_port, grpc_port, metrics_port, shim_port = free_port(), free_port(), free_port(), free_port()
    child_env = clean_env(TRANSLANE_LOG_LEVEL="WARNING", **(env or {}))
    # Echo mode: answers are the text as sent, which tests assert on.
    sim = ["--models-file", str(models), "sim", "--port", str(sim_port), "--echo", *sim_args]
    serve = ["--models-file", str(models), "serve", "--port", str(grpc_port), "--metrics-port", str(metrics_port)]
    serve += ["--upstream-url", f"http://127.0.0.1:{sim_port}/api/v3"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(translane(sim, sim_port, tmp / "sim.log", child_env))
        service = stack.enter_context(translane(serve, grpc_port, tmp / "service.log", child_env))
        running = Stack(
            sim=f"http://127.0.0.1:{sim_port}",
            grpc_target=f"127.0.0.1:{grpc_port}",
            service_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
            service_pid=service.pid,
        )
        if shim:
            args = ["shim", "--port", str(shim_port), "--grpc-target", running.grpc_target]
            proc = stack.enter_context(translane(args, shim_port, tmp / "shim.log", child_env))
            running = dataclasses.replace(running, shim=f"http://127.0.0.1:{shim_port}", shim_pid=proc.pid)
        yield running


def dropping_plan(streams: int, seed: int) -> tuple[list[str], list[int]]:
    """How each of `streams` callers leaves, shuffled with `seed`: 40% while queued ("queue"), 40% after 1-5
    chunks ("mid", with how many in the second list), 20% read to the end ("full")."""
    rng = random.Random(seed)
    queue, mid = streams * 2 // 5, streams * 2 // 5
    fates = ["queue"] * queue + ["mid"] * mid + ["full"] * (streams - queue - mid)
    rng.shuffle(fates)
    return fates, [rng.randint(1, 5) for _ in range(streams)]


async def leave_the_queue(stack: Stack, start: Samples, tasks: list[asyncio.Task[Any]], fates: list[str]) -> float:
    """Once every stream has reached the service (most wait in the lane's queue), the callers fated to leave
    in the queue leave: their tasks are cancelled, closing their calls before any answer. Returns how many
    waited in the slow lane's queue then."""
    now = await stack.until(lambda now: arrived(start, now) == len(tasks), f"all {len(tasks)} streams arrived")
    for task, fate in zip(tasks, fates, strict=True):
        if fate == "queue":
            task.cancel()
    return now.get("translane_lane_queued", lane="slow")
