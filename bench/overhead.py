"""What translane adds to a call, over a direct call to the provider: gRPC and the HTTP shim, at three loads.

Starts the simulated provider (zero latency), `translane serve` and `translane shim`
as separate processes on loopback; this process is the client. Three paths:
  direct  POST /responses straight to the provider (aiohttp, pooled)
  grpc    the same translation as gRPC Translate
  shim    the same translation as POST /v1/chat/completions through the shim, sent the way
          Immersive Translate sends it (its system prompt and instruction line)
at three loads: 1 in flight (closed loop, one caller), 50 req/s and 300 req/s (open loop:
requests leave on schedule whatever the replies do). The paths alternate in short slices,
so whatever else the machine does falls on all three alike. It prints p50/p90/p99 per path
and what gRPC and the shim add over the direct call, then the most requests/s one server
sustains (closed loop, gRPC). The model's limits sit far above the load, so the governor
admits everything and the differences are translane's own cost.

    python bench/overhead.py [--seconds 10] [--rounds 5] [--workers 64] [--tracing] [--mtls]
                             [--profile-server FILE] [--profile-shim FILE]

--mtls serves gRPC with mTLS (certificates made with trustme, as the k8s overlays run it): this
process and the shim present client certificates.

--tracing runs the server and shim with OTEL_TRACES_EXPORTER=otlp (OTLP/HTTP, default
batching) to a local receiver of its own. --profile-* runs that process under pyinstrument
and writes its text report to FILE.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BENCH_TEXT,
    UNTHROTTLED_MODELS,
    closed_loop,
    free_port,
    machine,
    open_loop,
    otlp_sink,
    percentile,
    process,
    sim_and_serve_args,
)
from translane import tls
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
EXPECTED = f"[sim auto->zh] {BENCH_TEXT}"
PATHS = ("direct", "grpc", "shim")
Call = Callable[[], Awaitable[object]]


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


async def run(args: argparse.Namespace, sim_port: int, grpc_port: int, shim_port: int) -> None:
    responses_body: dict[str, Any] = {
        "model": "bench",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": BENCH_TEXT, "translation_options": {"target_language": "zh"}}
                ],
            }
        ],
    }
    chat_body = {
        "model": "bench",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Translate to Simplified Chinese (output translation only):\n\n{BENCH_TEXT}"},
        ],
    }
    direct_url = f"http://127.0.0.1:{sim_port}/api/v3/responses"
    shim_url = f"http://127.0.0.1:{shim_port}/v1/chat/completions"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        tls.channel(f"127.0.0.1:{grpc_port}", tls=args.client_tls) as channel,
    ):
        stub = pb_grpc.TranslatorStub(channel)
        req = pb.TranslateRequest(segments=[BENCH_TEXT], target_language="zh", model="bench")

        async def direct() -> None:
            async with http.post(direct_url, json=responses_body) as r:
                assert r.status == 200, r.status
                await r.read()

        async def via_grpc() -> None:
            resp = await stub.Translate(req, timeout=10)
            assert resp.translations[0].text == EXPECTED

        async def via_shim() -> None:
            async with http.post(shim_url, json=chat_body) as r:
                assert r.status == 200, r.status
                reply = await r.json()
            assert reply["choices"][0]["message"]["content"] == EXPECTED

        calls: dict[str, Call] = {"direct": direct, "grpc": via_grpc, "shim": via_shim}
        # Warm every path: connections, the tokenizer, the shim's prompt cache.
        for call in calls.values():
            await closed_loop(8, 1.0, call)
        slice_s = args.seconds / args.rounds
        loads: list[tuple[str, Callable[[Call], Awaitable[tuple[list[float], int]]]]] = [
            ("1 in flight", lambda c: one_in_flight(slice_s, c)),
            *((f"{rate:g} req/s", lambda c, r=rate: open_loop(r, slice_s, c)) for rate in args.rates),
        ]
        print(f"{args.seconds:g}s per path and load, in {args.rounds} alternating slices:")
        for label, measure in loads:
            lat: dict[str, list[float]] = {p: [] for p in PATHS}
            fail = dict.fromkeys(PATHS, 0)
            for _ in range(args.rounds):
                for p in PATHS:
                    got, failed = await measure(calls[p])
                    lat[p] += got
                    fail[p] += failed
            print(f"  {label}:")
            for p in PATHS:
                print(line(p, lat[p], fail[p]))
            for p, target in (("grpc", "p50 <= 1 ms, p99 <= 3 ms"), ("shim", "p50 <= 2 ms, p99 <= 5 ms")):
                a50 = (percentile(lat[p], 50) - percentile(lat["direct"], 50)) * 1000
                a99 = (percentile(lat[p], 99) - percentile(lat["direct"], 99)) * 1000
                print(f"    added by {p:4}: p50 {a50:+.3f} ms, p99 {a99:+.3f} ms   (target {target})")

        print(f"open throttle, {args.workers} concurrent gRPC callers for {args.seconds:g}s:")
        t0 = time.perf_counter()
        done, failed = await closed_loop(args.workers, args.seconds, via_grpc)
        elapsed = time.perf_counter() - t0
        print(f"  sustained {done / elapsed:8.0f} req/s through one server ({failed} failed)   (target >= 1,000)")


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
    p.add_argument("--seconds", type=float, default=10.0, help="per path and load")
    p.add_argument("--rounds", type=int, default=5, help="slices each path's time is cut into, alternating")
    p.add_argument("--rates", type=float, nargs="*", default=[50.0, 300.0])
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--tracing", action="store_true", help="trace every request, OTLP to a local receiver")
    p.add_argument("--profile-server", type=Path, default=None)
    p.add_argument("--profile-shim", type=Path, default=None)
    p.add_argument("--mtls", action="store_true", help="gRPC with mTLS between client/shim and service")
    args = p.parse_args()
    sim_port, grpc_port, shim_port = free_port(), free_port(), free_port()
    print(
        f"bench/overhead.py on {machine()}, {time.strftime('%Y-%m-%d')}; "
        f"tracing {'on (OTLP/HTTP to a local receiver)' if args.tracing else 'off'}; "
        f"gRPC {'mTLS' if args.mtls else 'plaintext'}"
    )
    with tempfile.TemporaryDirectory() as tmp, tracing(args.tracing) as (otel_env, spans):
        models = Path(tmp) / "models.toml"
        models.write_text(UNTHROTTLED_MODELS)
        sim_args, serve_args = sim_and_serve_args(models, sim_port, grpc_port)
        shim_args = ["shim", "--host", "127.0.0.1", "--port", str(shim_port), "--grpc-target", f"127.0.0.1:{grpc_port}"]
        shim_env = {**otel_env, "TRANSLANE_API_KEYS": ""}
        serve_env = dict(otel_env)
        args.client_tls = None
        if args.mtls:
            server_tls, client_env, args.client_tls = certificates(Path(tmp))
            serve_env |= server_tls
            shim_env |= client_env
        with (
            process(sim_args, sim_port),
            process(serve_args, grpc_port, env=serve_env, command=profiled(args.profile_server)),
            process(shim_args, shim_port, env=shim_env, command=profiled(args.profile_shim)),
        ):
            uvloop.run(run(args, sim_port, grpc_port, shim_port))
        if spans is not None:
            got = spans()  # the processes have stopped, so their last batches are flushed
            print(f"  spans received by the OTLP receiver: {got['spans']} in {got['requests']} exports")
        for name, report in (("server", args.profile_server), ("shim", args.profile_shim)):
            if report is not None:
                print(f"{name} profile written to {report}")


if __name__ == "__main__":
    main()
