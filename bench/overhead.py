"""What translane adds to a call on the configuration users run, against a bare relay measured in the same run.

Starts as separate processes on loopback: the simulated provider (zero latency), the bare relay
(../shared/tools/bare_relay.py: a grpc.aio server on uvloop whose one method makes one pooled aiohttp POST
to the provider), `translane serve` on the shipped default models file with its limits raised far above
the load (so the governor admits everything) and everything else as shipped, the segment cache included
(SQLite, in a temporary data directory), and `translane shim`. This process is the client. Paths:
  direct  POST /responses straight to the provider (aiohttp, pooled): the body translane sends
  relay   the same body through the bare relay: the floor for a Python gRPC hop on this machine
  grpc    gRPC Translate of a sentence never seen before (a cache miss: the provider is called)
  shim    POST /v1/chat/completions through the shim, as Immersive Translate sends it, a new sentence each
  cached  gRPC Translate of a sentence the cache holds (no provider call)
at two loads: 1 in flight (closed loop, one caller) and 300 req/s (open loop). The paths alternate in short
slices, so whatever else the machine does falls on all alike. Then the most requests/s one process sustains
with 64 concurrent callers, the relay and translane (new sentences, the cache on). It prints each issue-19
target as met or not, then the same measures with the cache off (TRANSLANE_CACHE=off) beside them.

    python bench/overhead.py [--seconds 6] [--rounds 3] [--caches sqlite off] [--relay PATH] [--tracing]
                             [--mtls] [--profile-server FILE] [--profile-shim FILE]

--mtls serves gRPC with mTLS (certificates made with trustme): this process and the shim present client
certificates. --tracing runs the server and shim with OTEL_TRACES_EXPORTER=otlp to a local receiver.
--profile-* runs that process under pyinstrument and writes its text report to FILE.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BENCH_TEXT,
    ROOT,
    closed_loop,
    free_port,
    machine,
    open_loop,
    otlp_sink,
    percentile,
    process,
)
from translane import tls
from translane.config import default_models_text
from translane.v1 import translate_pb2 as pb
from translane.v1 import translate_pb2_grpc as pb_grpc

SYSTEM = (
    "You are a professional Simplified Chinese native translator who needs to fluently translate text into "
    "Simplified Chinese.\n\n## Translation Rules\n"
    "1. Output only the translated content, without explanations or additional content\n"
    "2. The returned translation must maintain exactly the same number of paragraphs and format as the original\n"
    "3. If the text contains HTML tags, consider where the tags should be placed in the translation\n"
    "4. For content that should not be translated (such as proper nouns, code, etc.), keep the original text."
)
MODEL = "doubao-seed-translation-250915"
PATHS = ("direct", "relay", "grpc", "shim", "cached")
RELAY = ROOT.parent / "shared" / "tools" / "bare_relay.py"
Call = Callable[[], Awaitable[object]]


def default_models(factor: int = 10_000) -> str:
    """The shipped models file with every rpm and tpm multiplied by `factor`: as users run it, but the
    governor never the bottleneck of this measurement."""
    return re.sub(
        r"^(rpm|tpm) = (\d+)", lambda m: f"{m.group(1)} = {int(m.group(2)) * factor}", default_models_text(), flags=re.M
    )


def profiled(report: Path | None) -> list[str] | None:
    """The command that runs `translane` under pyinstrument, writing its text report to `report`."""
    if report is None:
        return None
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(report), "-m", "translane.cli"]


async def one_in_flight(seconds: float, call: Call) -> tuple[list[float], int]:
    """One caller, back to back: latency with nothing else in the way."""
    latencies: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        try:
            await call()
        except Exception:
            failures += 1
            continue
        latencies.append(time.perf_counter() - t0)
    return latencies, failures


def line(name: str, lat: list[float], failures: int) -> str:
    ms = [x * 1000 for x in lat]
    return (
        f"    {name:7} n={len(ms):6d} fail={failures:3d}  p50={percentile(ms, 50):7.3f} ms  "
        f"p90={percentile(ms, 90):7.3f} ms  p99={percentile(ms, 99):7.3f} ms"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


class Paths:
    """The five ways to the provider's answer, each call with a sentence of its own where it must miss."""

    def __init__(
        self, http: aiohttp.ClientSession, channel: grpc.aio.Channel, relay: grpc.aio.Channel, ports: dict[str, int]
    ):
        self.http = http
        self.stub = pb_grpc.TranslatorStub(channel)
        self.relay_call = relay.unary_unary("/relay.Relay/Call")
        self.direct_url = f"http://127.0.0.1:{ports['sim']}/api/v3/responses"
        self.shim_url = f"http://127.0.0.1:{ports['shim']}/v1/chat/completions"
        self.counter = itertools.count()
        self.run = f"{time.time_ns() % 10**9}"

    def sentence(self, path: str) -> str:
        return f"{BENCH_TEXT} ({path} {self.run}-{next(self.counter)})"

    def body(self, path: str) -> dict[str, Any]:
        return {
            "model": MODEL,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": self.sentence(path),
                            "translation_options": {"target_language": "zh"},
                        }
                    ],
                }
            ],
        }

    async def direct(self) -> None:
        async with self.http.post(self.direct_url, json=self.body("direct")) as r:
            assert r.status == 200, r.status
            await r.read()

    async def relay(self) -> None:
        await self.relay_call(json.dumps(self.body("relay")).encode(), timeout=10)

    async def grpc(self) -> None:
        text = self.sentence("grpc")
        resp = await self.stub.Translate(pb.TranslateRequest(segments=[text], target_language="zh"), timeout=10)
        assert resp.translations[0].text.endswith(text) and not resp.translations[0].cached

    async def shim(self) -> None:
        text = self.sentence("shim")
        body = {
            "model": MODEL,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Translate to Simplified Chinese (output translation only):\n\n{text}"},
            ],
        }
        async with self.http.post(self.shim_url, json=body) as r:
            assert r.status == 200, r.status
            reply = await r.json()
        assert reply["choices"][0]["message"]["content"].endswith(text)

    async def cached(self) -> None:
        resp = await self.stub.Translate(pb.TranslateRequest(segments=[BENCH_TEXT], target_language="zh"), timeout=10)
        assert resp.translations[0].cached


async def measure(args: argparse.Namespace, ports: dict[str, int], cache: str) -> dict[str, Any]:
    """Every path at every load, then the sustained rates; the figures printed, and returned for the targets."""
    out: dict[str, Any] = {}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        tls.channel(f"127.0.0.1:{ports['grpc']}", tls=args.client_tls) as channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['relay']}") as relay,
    ):
        paths = Paths(http, channel, relay, ports)
        calls: dict[str, Call] = {p: getattr(paths, p) for p in PATHS if cache != "off" or p != "cached"}
        # Warm every path: connections, the tokenizer, the shim's prompt cache; the cached sentence stored.
        await paths.stub.Translate(pb.TranslateRequest(segments=[BENCH_TEXT], target_language="zh"), timeout=10)
        for name, call in calls.items():
            if name == "cached":
                await closed_loop(1, 0.3, call)
            await closed_loop(8, 1.0, call)
        slice_s = args.seconds / args.rounds
        loads: list[tuple[str, Callable[[Call], Awaitable[tuple[list[float], int]]]]] = [
            ("1 in flight", lambda c: one_in_flight(slice_s, c)),
            *((f"{rate:g} req/s", lambda c, r=rate: open_loop(r, slice_s, c)) for rate in args.rates),
        ]
        print(f"  {args.seconds:g}s per path and load, in {args.rounds} alternating slices:")
        for label, run in loads:
            lat: dict[str, list[float]] = {p: [] for p in calls}
            fail = dict.fromkeys(calls, 0)
            for _ in range(args.rounds):
                for p, call in calls.items():
                    got, failed = await run(call)
                    lat[p] += got
                    fail[p] += failed
            print(f"  {label}:")
            for p in calls:
                print(line(p, lat[p], fail[p]))
            added = {
                p: (
                    (percentile(lat[p], 50) - percentile(lat["direct"], 50)) * 1000,
                    (percentile(lat[p], 99) - percentile(lat["direct"], 99)) * 1000,
                )
                for p in ("relay", "grpc", "shim")
            }
            for p, (a50, a99) in added.items():
                print(f"    added by {p:5}: p50 {a50:+.3f} ms, p99 {a99:+.3f} ms")
            out[label] = {"added": added, "p50": {p: percentile(lat[p], 50) * 1000 for p in calls}}

        print(f"  open throttle, {args.workers} concurrent callers for {args.seconds:g}s each:")
        rates: dict[str, float] = {}
        for name, call in (("relay", paths.relay), ("grpc", paths.grpc)):
            t0 = time.perf_counter()
            done, failed = await closed_loop(args.workers, args.seconds, call)
            rates[name] = done / (time.perf_counter() - t0)
            print(f"    {name:5} {rates[name]:8.0f} req/s ({failed} failed)")
        out["sustained"] = rates
    return out


def check(what: str, value: float, bound: float, relay: float, margin: float) -> None:
    print(f"    {what} +{value:.2f} ms <= relay +{relay:.2f} + {margin:g} ms: {verdict(value <= bound)}")


def targets(figures: dict[str, Any]) -> None:
    """Issue 19's targets, each against the relay measured in the same run."""
    print("  targets (against the bare relay in this run):")
    for label in ("1 in flight", "300 req/s"):
        if label not in figures:
            continue
        added = figures[label]["added"]
        relay50, relay99 = added["relay"]
        for path, margin50, margin99 in (("gRPC", 0.3, 1.5), ("shim", 1.3, 3.0)):
            a50, a99 = added[path.lower()]
            check(f"{label}, {path} p50", a50, relay50 + margin50, relay50, margin50)
            if label != "1 in flight":
                check(f"{label}, {path} p99", a99, relay99 + margin99, relay99, margin99)
    one = figures["1 in flight"]["p50"]
    if "cached" in one:
        print(
            f"    cached p50 {one['cached']:.3f} ms < direct p50 {one['direct']:.3f} ms: "
            f"{verdict(one['cached'] < one['direct'])}"
        )
    rates = figures["sustained"]
    share = rates["grpc"] / rates["relay"]
    print(
        f"    sustained {rates['grpc']:.0f} req/s = {share:.0%} of the relay's {rates['relay']:.0f} (>= 85%): "
        f"{verdict(share >= 0.85)}"
    )


def certificates(tmp: Path) -> tuple[dict[str, str], dict[str, str], tls.ClientTLS]:
    """A CA, the service's certificate for 127.0.0.1 and a client's: the service's TLS environment, the
    shim's, and this process's client side."""
    import trustme

    ca = trustme.CA()
    files = {name: tmp / name for name in ("ca.pem", "server.crt", "server.key", "client.crt", "client.key")}
    ca.cert_pem.write_to_path(str(files["ca.pem"]))
    for who, cert in (("server", ca.issue_cert("127.0.0.1")), ("client", ca.issue_cert("bench-client"))):
        cert.cert_chain_pems[0].write_to_path(str(files[f"{who}.crt"]))
        cert.private_key_pem.write_to_path(str(files[f"{who}.key"]))
    server = {
        "TRANSLANE_TLS_CERT_FILE": str(files["server.crt"]),
        "TRANSLANE_TLS_KEY_FILE": str(files["server.key"]),
        "TRANSLANE_TLS_CLIENT_CA_FILE": str(files["ca.pem"]),
    }
    client = tls.ClientTLS(str(files["ca.pem"]), str(files["client.crt"]), str(files["client.key"]))
    shim = {
        "TRANSLANE_CLIENT_TLS_CA_FILE": client.ca_file,
        "TRANSLANE_CLIENT_TLS_CERT_FILE": client.cert_file,
        "TRANSLANE_CLIENT_TLS_KEY_FILE": client.key_file,
    }
    return server, shim, client


@contextlib.contextmanager
def tracing(on: bool) -> Iterator[tuple[dict[str, str], Callable[[], dict[str, int]] | None]]:
    if not on:
        yield {}, None
        return
    with otlp_sink() as sink:
        yield sink


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="per path and load")
    p.add_argument("--rounds", type=int, default=3, help="slices each path's time is cut into, alternating")
    p.add_argument("--rates", type=float, nargs="*", default=[300.0])
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--caches", nargs="*", choices=("sqlite", "memory", "off"), default=["sqlite", "off"])
    p.add_argument("--relay", type=Path, default=RELAY, help="the bare relay script (shared/tools/bare_relay.py)")
    p.add_argument("--tracing", action="store_true", help="trace every request, OTLP to a local receiver")
    p.add_argument("--profile-server", type=Path, default=None)
    p.add_argument("--profile-shim", type=Path, default=None)
    p.add_argument("--mtls", action="store_true", help="gRPC with mTLS between client/shim and service")
    args = p.parse_args()
    print(
        f"bench/overhead.py on {machine()}, {time.strftime('%Y-%m-%d')}; the default models file (limits x10,000); "
        f"tracing {'on (OTLP/HTTP to a local receiver)' if args.tracing else 'off'}; "
        f"gRPC {'mTLS' if args.mtls else 'plaintext'}"
    )
    for cache in args.caches:
        ports = {name: free_port() for name in ("sim", "relay", "grpc", "shim")}
        print(f"cache {cache} (TRANSLANE_CACHE={cache}):")
        with tempfile.TemporaryDirectory() as tmp, tracing(args.tracing) as (otel_env, spans):
            models = Path(tmp) / "models.toml"
            models.write_text(default_models())
            common = ["--models-file", str(models)]
            # Echo: the answers end with the sentence sent (asserted below), at the sim's least cost per call.
            sim_args = [*common, "sim", "--port", str(ports["sim"]), "--ttft-s", "0", "--tokens-per-s", "0", "--echo"]
            upstream = f"http://127.0.0.1:{ports['sim']}/api/v3"
            serve_args = [*common, "serve", "--port", str(ports["grpc"]), "--upstream-url", upstream]
            shim_args = [
                "shim",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["shim"]),
                "--grpc-target",
                f"127.0.0.1:{ports['grpc']}",
            ]
            relay_args = [
                str(args.relay),
                "--provider",
                f"{upstream}/responses",
                "--serve",
                "--port",
                str(ports["relay"]),
            ]
            shim_env = {**otel_env, "TRANSLANE_API_KEYS": ""}
            serve_env = {**otel_env, "TRANSLANE_CACHE": cache, "TRANSLANE_DATA_DIR": tmp}
            args.client_tls = None
            if args.mtls:
                server_tls, client_env, args.client_tls = certificates(Path(tmp))
                serve_env |= server_tls
                shim_env |= client_env
            with (
                process(sim_args, ports["sim"]),
                process(relay_args, ports["relay"], command=[sys.executable], quiet=True),
                process(serve_args, ports["grpc"], env=serve_env, command=profiled(args.profile_server)),
                process(shim_args, ports["shim"], env=shim_env, command=profiled(args.profile_shim)),
            ):
                figures = uvloop.run(measure(args, ports, cache))
            targets(figures)
            if spans is not None:
                got = spans()  # the processes have stopped, so their last batches are flushed
                print(f"  spans received by the OTLP receiver: {got['spans']} in {got['requests']} exports")
        for name, report in (("server", args.profile_server), ("shim", args.profile_shim)):
            if report is not None:
                print(f"{name} profile written to {report}")


if __name__ == "__main__":
    main()
