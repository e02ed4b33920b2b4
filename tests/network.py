"""A stand-in for the network: an HTTP proxy on 127.0.0.1 that logs every connection made to it.

vcr-proxy is chained to it (`--set mode=upstream:http://127.0.0.1:PORT`), so anything that would
leave the machine arrives here instead. CONNECT tunnels are forwarded to `forward_to` (a local
upstream), or refused with 502 when there is none.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from .upstream import free_port


class StandInNetwork:
    def __init__(self, forward_to: tuple[str, int] | None = None):
        self.port = free_port()
        self.forward_to = forward_to
        self.connections: list[str] = []  # the first line each connection sent
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "StandInNetwork":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stand-in network did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append("(connected)")
        index = len(self.connections) - 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        first = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.connections[index] = first
        if not first.startswith("CONNECT ") or self.forward_to is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.forward_to)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def read_until_closed(sock: socket.socket, timeout: float | None = None) -> bytes:
    """Everything `sock` receives until the other side closes it (or it is silent for its
    timeout: `timeout` if given, else the one it has)."""
    if timeout is not None:
        sock.settimeout(timeout)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except (TimeoutError, OSError):
        pass
    return received
