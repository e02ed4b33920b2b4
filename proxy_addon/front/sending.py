"""Writing an answer onto the front's connection: whole, or a paced plan piece by piece at
each piece's time (event-loop timers, one pending per connection)."""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http
from mitmproxy.net.http.http1 import assemble_response, assemble_response_head

from .. import collector
from ..replay import Plan
from ..tls_writes import PIECE

EARLY = 0.0005  # seconds: a piece due this soon goes now rather than after another timer


def whole(response: http.Response, head_only: bool) -> bytes:
    """An answer in one piece (a HEAD request's without its body)."""
    return assemble_response_head(response) if head_only else assemble_response(response)


def chunked_frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class PacedSender:
    """Sends `plan` on `transport`: its head at plan.headers_at, each chunk at its time; the
    future `done` is set once everything is written (or the client has gone)."""

    def __init__(self, transport: asyncio.Transport, head: bytes, plan: Plan, chunked: bool,
                 head_only: bool):
        loop = asyncio.get_running_loop()
        self.loop, self.transport, self.plan = loop, transport, plan
        # The plan's times count from the request's start on the wall clock; timers run on the
        # loop's monotonic one.
        start = loop.time() + (plan.started - time.time())
        pieces = [(start + plan.headers_at, head)]
        if not head_only:
            for chunk, at in zip(plan.chunks, plan.chunk_at):
                if chunk:  # an empty chunk would end a chunked body
                    pieces.append((start + at, chunked_frame(chunk) if chunked else chunk))
            if chunked and not plan.cut:
                pieces.append((start + (plan.chunk_at[-1] if plan.chunk_at else plan.headers_at),
                               b"0\r\n\r\n"))
        self.pieces = pieces
        self.size = sum(map(len, plan.chunks))
        self.next = 0
        self.timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future = loop.create_future()

    def start(self) -> asyncio.Future:
        self._tick()
        return self.done

    def _tick(self) -> None:
        self.timer = None
        if self.transport.is_closing():  # the client went away mid-stream
            self._finish(sent=False)
            return
        now = self.loop.time()
        due = []
        pieces = self.pieces
        while self.next < len(pieces) and pieces[self.next][0] - now <= EARLY:
            due.append(pieces[self.next][1])
            self.next += 1
        if due:
            data = b"".join(due)
            for offset in range(0, len(data), PIECE):  # OpenSSL's buffer stays a piece's size
                self.transport.write(data[offset:offset + PIECE])
        if self.next < len(pieces):
            self.timer = self.loop.call_at(pieces[self.next][0], self._tick)
        else:
            self._finish(sent=True)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self._finish(sent=False)

    def _finish(self, sent: bool) -> None:
        self.timer = None
        if not self.done.done():
            self.done.set_result(sent)
        self.pieces = []
        collector.give_back(self.size, self.plan)
