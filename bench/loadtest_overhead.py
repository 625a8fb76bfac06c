"""What `translane loadtest` itself costs: its figures against a minimal aiohttp client's, and its send lateness.

Starts the simulated provider (zero latency) as its own process; this process is the client.
In alternating slices at the same open-loop rate, with streaming on, it measures
  (a) a minimal aiohttp client (one pooled session, SSE read line by line), and
  (b) translane loadtest's own runner,
and prints TTFT and end-to-end p50/p99 for both, then the tester's send lateness
(actual minus scheduled send time) at a higher rate.

    python bench/loadtest_overhead.py [--rate 500] [--seconds 10] [--rounds 5] [--lateness-rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import UNTHROTTLED_MODELS, free_port, machine, percentile, process
from translane.tools.loadtest import LoadConfig, Target, run

BODY = {
    "model": "bench",
    "stream": True,
    "messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog."}],
}
MODELS = UNTHROTTLED_MODELS.replace('api_style = "responses"', 'api_style = "chat_completions"')


async def minimal(url: str, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """The least a client can do: send on schedule, time the first content line and the end."""
    ttft: list[float] = []
    e2e: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            first = None
            async with session.post(url, json=BODY) as r:
                async for line in r.content:
                    if first is None and line.startswith(b"data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            first = time.perf_counter()
            end = time.perf_counter()
            if first is not None:
                ttft.append((first - t0) * 1000)
                e2e.append((end - t0) * 1000)

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return ttft, e2e


async def tester(url: str, rate: float, seconds: float) -> tuple[list[float], list[float], list[float]]:
    cfg = LoadConfig(
        targets=(Target("sim", url=url),),
        model="bench",
        rate_per_s=rate,
        duration_s=seconds,
        stream=True,
        body={"model": "bench", "messages": BODY["messages"]},
    )
    records, _ = await run(cfg, progress=False)
    ok = [r for r in records if r.ok and r.ttft_ms is not None]
    return [r.ttft_ms for r in ok if r.ttft_ms is not None], [r.e2e_ms for r in ok], [r.lateness_ms for r in records]


def show(name: str, ttft: list[float], e2e: list[float]) -> None:
    print(
        f"  {name:22} n={len(e2e):6d}  TTFT p50 {percentile(ttft, 50):6.3f} ms p99 {percentile(ttft, 99):6.3f} ms"
        f"   e2e p50 {percentile(e2e, 50):6.3f} ms p99 {percentile(e2e, 99):6.3f} ms"
    )


async def main_async(args: argparse.Namespace, url: str) -> None:
    await minimal(url, 100, 1.0)  # warm up connections and the simulator
    slice_s = args.seconds / args.rounds
    a_ttft: list[float] = []
    a_e2e: list[float] = []
    b_ttft: list[float] = []
    b_e2e: list[float] = []
    for _ in range(args.rounds):
        t, e = await minimal(url, args.rate, slice_s)
        a_ttft += t
        a_e2e += e
        t, e, _ = await tester(url, args.rate, slice_s)
        b_ttft += t
        b_e2e += e
    print(f"{args.rate:g} req/s open loop, streaming, {args.seconds:g}s each in {args.rounds} alternating slices:")
    show("(a) minimal aiohttp", a_ttft, a_e2e)
    show("(b) translane loadtest", b_ttft, b_e2e)
    print(
        f"  tester minus minimal: TTFT p50 {percentile(b_ttft, 50) - percentile(a_ttft, 50):+.3f} ms, "
        f"e2e p50 {percentile(b_e2e, 50) - percentile(a_e2e, 50):+.3f} ms   (target within 1 ms)"
    )
    _, _, late = await tester(url, args.lateness_rate, args.seconds)
    print(
        f"{args.lateness_rate:g} req/s open loop for {args.seconds:g}s: "
        f"send lateness p50 {percentile(late, 50):.3f} ms, p99 {percentile(late, 99):.3f} ms, "
        f"max {max(late):.3f} ms   (target p99 < 5 ms)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--lateness-rate", type=float, default=1000.0)
    args = p.parse_args()
    print(f"bench/loadtest_overhead.py on {machine()}, {time.strftime('%Y-%m-%d')}")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(MODELS)
        sim = ["--models-file", str(models), "sim", "--port", str(port), "--ttft-s", "0", "--tokens-per-s", "0"]
        sim.append("--echo")  # the sim at its least cost per call, as the overhead figures were measured
        with process(sim, port):
            uvloop.run(main_async(args, f"http://127.0.0.1:{port}/v1/chat/completions"))


if __name__ == "__main__":
    main()
