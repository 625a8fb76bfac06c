"""The gRPC server's lifecycle: the Translator servicer (translane.rpc), health and reflection on one port,
metrics, TLS, and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .batch_route import BatchRoutes
from .config import Config
from .contract import MAX_TASK_ID_CHARS
from .engine import Engine
from .jobs import FileControl, JobControl, open_file_store, open_jobs, open_redis_file_store, open_shared_jobs
from .prometheus import serve_metrics
from .rpc.files import FilesService
from .rpc.operations import OPERATIONS_SERVICE, BatchLines, OperationsService, add_operations
from .rpc.servicer import SERVICE_NAME, TranslatorService, add_translator
from .rpc.status import NO_RETRY, grpc_status_of
from .tenants import Identify
from .tls import ServerCertificates
from .tracing import grpc_server_interceptors

__all__ = [
    "MAX_TASK_ID_CHARS",
    "NO_RETRY",
    "SERVICE_NAME",
    "RunningServer",
    "TranslatorService",
    "grpc_status_of",
    "running_server",
    "serve",
]

log = logging.getLogger("translane.server")


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Listen on `address`; OSError saying so when it cannot (in use, say), where grpc raises RuntimeError."""
    try:
        if credentials is not None:
            port: int = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address} (in use, or not an address of this machine): {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


class RunningServer:
    """A started server: its bound port, health servicer, engine, metrics and health ports (0 when not served)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        engine: Engine,
        metrics_port: int = 0,
        certificates: ServerCertificates | None = None,
        health_port: int = 0,
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.engine = engine
        self.metrics_port = metrics_port
        self.certificates = certificates
        self.health_port = health_port

    def on_sighup(self) -> None:
        """SIGHUP: put disabled models back in rotation, read the TLS certificates and the tenants file again."""
        self.engine.enable_all()
        if self.certificates is not None:
            self.certificates.reload()
        self.engine.tenants.reload()


@contextlib.asynccontextmanager
async def running_server(config: Config, *, grace_s: float | None = None) -> AsyncIterator[RunningServer]:
    """Start the gRPC server on config.server.host:port (and /metrics on metrics_port unless 0);
    on exit go NOT_SERVING and stop gracefully, then stop serving metrics."""
    # Plaintext off loopback, or unreadable certificates, fail here, naming the setting, before anything starts.
    config.server.check_listen()
    certificates = ServerCertificates(config.server) if config.server.tls else None
    async with Engine.open(config) as engine, contextlib.AsyncExitStack() as stack:
        metrics_port = 0
        if config.server.metrics_port:
            metrics = serve_metrics(engine.metrics.registry, config.server.host, config.server.metrics_port)
            metrics_port = await stack.enter_async_context(metrics)
        # Every RPC but health and reflection names its caller when a tenants file is in force (tenants/_identity).
        # Without a file there are never tenants: no interceptor, which grpc.aio would run on every call.
        tenants = engine.tenants
        identify = [Identify(lambda: tenants.current)] if tenants.path else []
        if tenants.path:
            watcher = asyncio.get_running_loop().create_task(tenants.watch(), name="tenants file")
            stack.callback(watcher.cancel)
        server = grpc.aio.server(
            interceptors=[*grpc_server_interceptors(), *identify] or None,
            options=[
                ("grpc.max_receive_message_length", 32 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        # Jobs (BatchTranslate) in Redis when the governor is shared there (every replica runs their lines),
        # else beside the segment cache's file, or in memory when the cache keeps none; every unfinished one
        # runs on from here. Closed before the engine, after the server stops taking calls.
        # The files jobs may be submitted from (UploadFile) are kept where the jobs are. A job whose window takes
        # the batch routes may have their lines in flight on top of its own bound.
        jobs: JobControl
        files: FileControl
        route_room = functools.partial(BatchRoutes.room, config.models)
        if config.governor.kind == "redis":
            g = config.governor
            jobs = await stack.enter_async_context(
                open_shared_jobs(g.redis_url, g.redis_prefix, BatchLines(engine), config.jobs, route_room)
            )
            files = await stack.enter_async_context(
                open_redis_file_store(g.redis_url, g.redis_prefix, config.jobs.keep_s)
            )
        else:
            on_disk = config.cache.kind == "sqlite"
            jobs_path = str(Path(config.cache.path).with_name("jobs.sqlite3")) if on_disk else ":memory:"
            files_path = str(Path(config.cache.path).with_name("files.sqlite3")) if on_disk else ":memory:"
            per_job, keep_s = config.jobs.max_concurrency_per_job, config.jobs.keep_s
            jobs = await stack.enter_async_context(
                open_jobs(jobs_path, BatchLines(engine), per_job, keep_s, route_room)
            )
            files = await stack.enter_async_context(open_file_store(files_path, config.jobs.keep_s))
        operations = OperationsService(jobs, config, FilesService(files, config))
        add_translator(TranslatorService(engine, operations), server)
        add_operations(operations, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, OPERATIONS_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{config.server.host}:{config.server.port}"
        credentials = certificates.credentials() if certificates is not None else None
        port = _bind(server, address, credentials)
        health_server, health_port = None, 0
        if config.server.health_port:
            # Health alone, in plaintext, for probes without TLS: a server of its own, so nothing
            # else is reachable on that port.
            health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
            health_port = _bind(health_server, f"{config.server.host}:{config.server.health_port}", None)
            await health_server.start()
        await server.start()
        for name in ("", SERVICE_NAME, OPERATIONS_SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        try:
            yield RunningServer(server, port, health_servicer, engine, metrics_port, certificates, health_port)
        finally:
            # Stop taking new work first, so load balancers drain us, then finish in-flight calls.
            await health_servicer.enter_graceful_shutdown()
            await server.stop(config.server.grace_s if grace_s is None else grace_s)
            if health_server is not None:
                await health_server.stop(0)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run the server until SIGTERM or SIGINT; SIGHUP puts disabled models back in rotation, reloads TLS and the
    tenants file."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_server(config) as running:
        loop.add_signal_handler(signal.SIGHUP, running.on_sighup)
        log.info(
            "translane serving on %s:%d (%s; models file %s, default model %s, governor %s)",
            config.server.host,
            running.port,
            ("mTLS" if running.certificates.mutual else "TLS") if running.certificates else "plaintext",
            config.source,
            config.default_model,
            config.governor.kind,
        )
        if config.server.tenants_file:
            current = running.engine.tenants.current
            log.info(
                "tenants file %s: %d tenants; every RPC but health and reflection needs a key or a certificate",
                config.server.tenants_file,
                len(current.by_name),
            )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: health NOT_SERVING, grace %.1fs", config.server.grace_s)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
