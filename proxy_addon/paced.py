"""Paced replays written straight onto the client's connection.

mitmproxy sends a response an addon sets in its `request` hook in one piece. A stream replayed
with its recorded gaps went, until this, through a small HTTP server inside the proxy: each
event crossed a loopback socket, was parsed again by mitmproxy's HTTP/1 client layer and then
relayed, which cost more CPU than the client's own connection and held replay to about 50
timed streams a core.

Here the `HttpStream` that would send the addon's response sends it a piece at a time instead:
the headers, then each chunk when it is due. No socket is opened, so no other local user can
reach them. Two ways, by the client's connection:
- HTTP/1 over one TLS layer or none (what load generators and most SDKs use): each chunk is
  framed, encrypted with the client's own TLS session and written to its socket by an event-loop
  timer, straight: the layers only hear of the stream's start and its end, when one wakeup
  (mitmproxy's `RequestWakeup`) finishes it. That costs an event about a fifth of going through
  the layers, which is what timed replay at load-test scale needs.
- Anything else (HTTP/2's frames and flow control, nested TLS, QUIC): each chunk goes through
  the layers, woken by its own `RequestWakeup`, as mitmproxy's HTTP/2 keep-alive pings are.
"""

from __future__ import annotations

import asyncio
import time

from OpenSSL import SSL
from mitmproxy import ctx, flow, http
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import ClientTLSLayer
from mitmproxy.proxy.layers.http import DropStream, HttpErrorHook, HttpLayer, HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import (ErrorCode, ResponseData, ResponseHeaders,
                                                 ResponseProtocolError)

from . import collector
from .replay import Plan
from .tls_writes import PIECE

PLAN = "vcr_paced"  # flow.metadata key: the Plan to send in pieces
EARLY = 0.0005  # seconds: a chunk due this soon goes now rather than after another timer

_send_response = HttpStream.send_response


def install() -> None:
    """Let HttpStream send paced plans (once per process)."""
    if HttpStream.send_response is not _paced_send_response:
        HttpStream.send_response = _paced_send_response


def pace(flow: http.HTTPFlow, plan: Plan) -> None:
    """Answer `flow` with `plan`, each chunk at its time."""
    fields = [(name.encode("utf-8"), value.encode("utf-8")) for name, value in plan.headers]
    if flow.request.http_version != "HTTP/1.0":
        # Chunked on HTTP/1.1 (the connection stays usable); HTTP/2 drops the header itself.
        # An HTTP/1.0 client knows no chunks: its body ends where the connection does.
        fields.append((b"transfer-encoding", b"chunked"))
    now = time.time()
    response = http.Response(b"HTTP/1.1", plan.status, plan.reason.encode("latin-1", "replace"),
                             http.Headers(fields), b"", None, now, now)
    if plan.trailers:  # HTTP/2 only (playback.py): sent after the last chunk
        response.trailers = http.Headers([(n.lower().encode(), v.encode()) for n, v in plan.trailers])
    flow.response = response
    flow.metadata[PLAN] = plan


def _paced_send_response(self: HttpStream, already_streamed: bool = False):
    plan = None if already_streamed or self.flow.response is None else self.flow.metadata.pop(PLAN, None)
    if plan is None:
        return (yield from _send_response(self, already_streamed))
    pacer = _Pacer(self, plan)
    # The stream's own handler expects HTTP events only: a timer's wakeup goes to the pacer,
    # now and after the plan is sent (a stale one after the client left is dropped).
    self._handle_event = pacer.handle_event
    yield from pacer.send_due()


class _Pacer:
    def __init__(self, stream: HttpStream, plan: Plan):
        self.stream, self.plan = stream, plan
        self.headers_sent = False
        self.next_chunk = 0
        self.finished = False
        self.waiting: commands.RequestWakeup | None = None
        self.direct: _DirectWriter | None = None
        self.draining = 0.0  # seconds between looks at what HTTP/2 holds back before a cut

    def finish(self) -> None:
        """The plan is sent, or never will be: its chunks are let go of, and a big body's
        memory handed back (collector.give_back) as a recorded one's is. The stream and its
        pacer hold each other, so without a collection the chunks stayed for good."""
        if self.finished:
            return
        self.finished = True
        if self.direct is not None and self.direct.timer is not None:
            self.direct.timer.cancel()  # a client gone: its timer no longer holds the stream
            self.direct.timer = None
        size = sum(map(len, self.plan.chunks))
        # Not sent, or sent already: dropped now. A wakeup still pending holds the pacer until
        # it is due (an HTTP/2 stream the client reset: its connection lives on).
        self.plan.chunks, self.plan.chunk_at = [], []
        collector.give_back(size, self.stream.flow)

    def handle_event(self, event: events.Event):
        if isinstance(event, events.Wakeup):
            if event.command is self.waiting and not self.finished:
                self.waiting = None
                yield from self.send_due()
            return
        if self.finished:
            yield from HttpStream._handle_event(self.stream, event)
            return
        # The client cancelled or went away mid-stream: stop sending. (mitmproxy's own handling
        # would pass the error on to the upstream this flow never had.)
        self.finish()
        stream = self.stream
        stream.flow.error = flow.Error(getattr(event, "message", "the client went away"))
        yield HttpErrorHook(stream.flow)
        stream.client_state = stream.server_state = stream.state_errored
        stream.flow.live = False
        yield DropStream(stream.stream_id)

    def send_due(self):
        stream, plan = self.stream, self.plan
        now = time.time()
        if not self.headers_sent:
            wait = plan.started + plan.headers_at - now
            if wait > EARLY:
                yield from self._wait(wait)
                return
            self.headers_sent = True
            yield SendHttp(ResponseHeaders(stream.stream_id, stream.flow.response, end_stream=False),
                           stream.context.client)
            self.direct = _DirectWriter.for_stream(stream)
        chunks, times = plan.chunks, plan.chunk_at
        due: list[bytes] = []
        while self.next_chunk < len(chunks):
            wait = plan.started + times[self.next_chunk] - now
            if wait > EARLY:
                break
            due.append(chunks[self.next_chunk])
            self.next_chunk += 1
        if any(due):  # chunks due together go as one write
            yield SendHttp(ResponseData(stream.stream_id, b"".join(due)), stream.context.client)
        if self.next_chunk < len(chunks):
            if self.direct is not None:
                # The chunks between go straight; the layers wake when the last one is due.
                if self.direct.pacer is None:
                    self.direct.start(self)
                wait = max(wait, plan.started + times[-1] - now)
            yield from self._wait(wait)
            return
        if plan.cut and _held_back(stream):
            # HTTP/2 flow control still holds some of the chunks back, and a reset drops what
            # it holds: the cut waits until the client has taken them.
            self.draining = min(1.0, self.draining * 2) if self.draining else 0.01
            yield from self._wait(self.draining)
            return
        self.finish()
        if plan.cut:
            # The recording ends where its upstream cut it off: so does the replay.
            yield from stream.handle_protocol_error(ResponseProtocolError(
                stream.stream_id, "vcr-proxy: the recorded stream ends here, cut off",
                ErrorCode.GENERIC_SERVER_ERROR))
            return
        yield from _send_response(stream, already_streamed=True)

    def _wait(self, seconds: float):
        self.waiting = commands.RequestWakeup(seconds)
        yield self.waiting


def _held_back(stream: HttpStream) -> bool:
    """Whether the client's HTTP/2 connection holds data of `stream` back (flow control)."""
    for layer in reversed(stream.context.layers):  # the stream's own, inside a CONNECT's
        if isinstance(layer, HttpLayer):
            connection = layer.connections.get(stream.context.client)
            buffers = getattr(getattr(connection, "h2_conn", None), "stream_buffers", None)
            return bool(buffers and buffers.get(stream.stream_id))
    return False


class _DirectWriter:
    """Writes a paced stream's chunks onto an HTTP/1 client's socket, through its TLS session
    if it has one, from event-loop timers."""

    def __init__(self, tls: SSL.Connection | None, handler, writer: asyncio.StreamWriter,
                 chunked: bool = True):
        self.tls, self.handler, self.writer, self.chunked = tls, handler, writer, chunked
        self.timer: asyncio.TimerHandle | None = None
        self.pacer: _Pacer | None = None

    @classmethod
    def for_stream(cls, stream: HttpStream) -> "_DirectWriter | None":
        client = stream.context.client
        if stream.flow.request.http_version not in ("HTTP/1.1", "HTTP/1.0") or client.transport_protocol != "tcp":
            return None
        tls_layers = [layer for layer in stream.context.layers
                      if isinstance(layer, ClientTLSLayer) and layer.conn is client]
        if len(tls_layers) > 1 or (client.tls and not tls_layers):
            return None  # TLS in TLS (an HTTPS proxy), or TLS this stack does not hold
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
        transport = handler.transports.get(client) if handler is not None else None
        writer = transport.writer if transport is not None else None
        if not isinstance(writer, asyncio.StreamWriter):
            return None
        chunked = "chunked" in stream.flow.response.headers.get("transfer-encoding", "").lower()
        return cls(tls_layers[0].tls if tls_layers else None, handler, writer, chunked)

    def start(self, pacer: _Pacer) -> None:
        self.pacer = pacer
        self._schedule()

    def _schedule(self) -> None:
        pacer = self.pacer
        plan = pacer.plan
        if pacer.finished or pacer.next_chunk >= len(plan.chunks) - 1:
            return  # the last chunk goes with the layers' wakeup
        loop = asyncio.get_running_loop()
        delay = plan.started + plan.chunk_at[pacer.next_chunk] - time.time()
        self.timer = loop.call_at(loop.time() + delay, self._tick)

    def _tick(self) -> None:
        pacer = self.pacer
        plan = pacer.plan
        if pacer.finished or self.writer.is_closing():
            return
        now = time.time()
        due = []
        last = len(plan.chunks) - 1
        while pacer.next_chunk < last and plan.started + plan.chunk_at[pacer.next_chunk] - now <= EARLY:
            due.append(plan.chunks[pacer.next_chunk])
            pacer.next_chunk += 1
        data = b"".join(due)
        if data and not self._write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data):
            # The session refused it (renegotiating, or broken): the rest goes through the
            # layers at the last chunk's time, which handle the session as they do any write.
            pacer.next_chunk -= len(due)
            return
        self._schedule()

    def _write(self, data: bytes) -> bool:
        """Send `data`; False if the TLS session took none of it."""
        tls = self.tls
        if tls is not None:
            # To OpenSSL a piece at a time, as tls_writes.py has mitmproxy do: a big event
            # encrypted whole grew the connection's outgoing buffer to its size, for good.
            encrypted: list[bytes] = []
            view = memoryview(data)
            try:
                for start in range(0, len(view), PIECE):
                    tls.sendall(view[start:start + PIECE])
                    while True:  # a piece's records fit one read (no exception raised)
                        try:
                            encrypted.append(tls.bio_read(PIECE << 1))
                        except SSL.WantReadError:  # all of it read out
                            break
                        if len(encrypted[-1]) < PIECE << 1:
                            break
            except SSL.Error:
                if not encrypted:
                    return False
                # The session moved on past part of it: what it encrypted goes, and the
                # connection ends (the client sees the stream cut off, the layers hear of it).
                self.writer.write(b"".join(encrypted))
                self.writer.close()
                return True
            data = b"".join(encrypted)
        self.handler.timeout_watchdog.register_activity()
        self.writer.write(data)
        return True
