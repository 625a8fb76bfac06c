"""A loopback TCP proxy whose link the test cuts and heals: a network partition on demand.

It runs in a process of its own, so the test's own load (or its GIL) never slows the link down.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards a free loopback port to `target_port` both ways; `cut()` drops every connection, old and new."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, str(self.target_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.port = int(self._command(b""))

    def cut(self) -> None:
        """Reset every open connection and every new one until `heal()`, as a partition seen from this side."""
        self._command(b"cut\n")

    def heal(self) -> None:
        self._command(b"heal\n")

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(5)
            self._proc = None

    def _command(self, line: bytes) -> bytes:
        """Send one command; the proxy answers once it has taken effect."""
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line)
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()


async def _serve(target_port: int) -> None:
    writers: set[asyncio.StreamWriter] = set()
    cut = False

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side ended (or was cut): end the other too

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if cut:
                raise ConnectionRefusedError
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.transport.abort()
            return
        writers.update((writer, up_writer))
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writers.difference_update((writer, up_writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    commands = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := await commands.readline():
        cut = line.strip() == b"cut"
        if cut:
            for w in tuple(writers):
                w.transport.abort()
        print("ok", flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
