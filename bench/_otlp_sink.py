"""A stand-in OpenTelemetry collector for the benchmarks: takes OTLP/HTTP traces, counts them, drops them.

    python bench/_otlp_sink.py --port 4318     # POST /v1/traces; GET /count -> {"requests": n, "spans": n}

A process of its own, as a collector would be, so decoding what arrives costs the load generator nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_REPLY = ExportTraceServiceResponse().SerializeToString()


async def serve(port: int) -> None:
    counts = {"requests": 0, "spans": 0}

    async def traces(request: web.Request) -> web.Response:
        req = ExportTraceServiceRequest.FromString(await request.read())
        counts["requests"] += 1
        counts["spans"] += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        return web.Response(body=_REPLY, content_type="application/x-protobuf")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(counts), content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    # Exporters keep their connections open: do not wait for them on the way out.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    try:
        uvloop.run(serve(p.parse_args().port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
