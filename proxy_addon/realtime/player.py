"""Playing a recorded session: an in-process WebSocket server on 127.0.0.1 (wsproto, which
mitmproxy itself uses) to which the addon points the client's upgrade, as playback.py points a
paced stream at its replay server. mitmproxy relays the session between the client and this
server, so nothing leaves the machine, and each planned session waits under a path of 256
random bits: another local user's connection gets a 404.

Client messages are matched in order against the recorded ones (matcher.py). Each server
message is anchored to the client message recorded last before it (or to the session's start)
and sent, in recorded order, that long after its anchor arrived (`vcr_timing=events`, divided
by `vcr_speed`; at once otherwise). A client message that does not match gets an error in the
provider's shape, OpenAI's `{"type": "error", ...}` event where the protocol has one, then a
close with 1008 (policy violation) and a reason: the session ends, never hangs.

A sidecar is data, perhaps hostile: no paced wait is longer than PACE_LIMIT (a line claiming
days plays after a minute), the handshake never repeats the headers the WebSocket protocol
sets itself, and whatever goes wrong while playing closes the session with 1011 (internal
error) and a logged reason, never a silent stop that leaves the client waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets as random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping,
                            Request, TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..credentials import Secrets
from ..matchers import MatchRules
from . import scrub
from .format import Session
from .matcher import difference, kind

log = logging.getLogger("vcr-proxy")

PLAYER_PATH = "/__vcr-proxy-realtime__/"
HEAD_TIMEOUT = 10.0
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
PACE_LIMIT = 60.0  # seconds: the longest wait between a message and the one it follows
# Set by the WebSocket handshake itself (wsproto), or by the connection: never from a recording.
_OWN_HEADERS = frozenset(("content-length", "date", "transfer-encoding", "connection", "upgrade",
                          "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions",
                          "sec-websocket-version", "sec-websocket-key", "x-vcr-proxy"))


@dataclass
class Plan:
    session: Session
    label: str  # "<sidecar>#session N", for messages and the X-Vcr-Proxy header
    cassette: str
    url: str  # the incoming URL, scrubbed
    timing: str
    speed: float
    rules: MatchRules
    secrets: Secrets
    error_event: bool  # the protocol has an error event (OpenAI Realtime)
    started: float  # time.time() of the upgrade request
    on_miss: Callable[[str, str], None] = lambda request, message: None
    matched: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def truncate_reason(text: str, limit: int = 123) -> str:
    """A close reason fits in a control frame: 123 bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


class LoopbackServer:
    """An in-process server on 127.0.0.1 serving plans, each to the one request whose path
    names its secret token: every local user can connect to its port (a TCP port has no
    owner), and gets nothing of them."""

    path = "/"

    def __init__(self) -> None:
        self.plans: dict[str, object] = {}  # by the secret in their path
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def add(self, plan) -> str:
        """Keep `plan` for the one request that names it; the path to request."""
        token = random.token_urlsafe(32)  # was a counter and the pid: others took streams
        self.plans[token] = plan
        return self.path + token

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class PlayerServer(LoopbackServer):
    path = PLAYER_PATH

    def __init__(self) -> None:
        super().__init__()
        self.tasks: set[asyncio.Task] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = WSConnection(ConnectionType.SERVER)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            connection.receive_data(head)
            request = next((e for e in connection.events() if isinstance(e, Request)), None)
            plan = None
            if request is not None:
                _, found, token = request.target.partition(PLAYER_PATH)
                plan = self.plans.pop(token, None) if found else None
            if plan is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            await Playback(plan, connection, reader, writer, request).run()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                RemoteProtocolError):
            pass
        except Exception:
            log.exception("vcr-proxy: internal error while replaying a WebSocket session")
        finally:
            writer.close()


class Playback:
    def __init__(self, plan: Plan, connection: WSConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, request: Request):
        self.plan, self.connection, self.reader, self.writer = plan, connection, reader, writer
        self.request = request
        session = plan.session
        self.recorded_client = session.client_messages
        self.arrived: list[asyncio.Event] = [asyncio.Event() for _ in self.recorded_client]
        self.arrival: list[float] = [0.0] * len(self.recorded_client)
        self.start = 0.0
        self.closed = False  # a close frame was sent
        self.sender: asyncio.Task | None = None  # plays the server's side
        self.last_client_event_id: str | None = None

    def _send(self, event) -> None:
        self.writer.write(self.connection.send(event))

    async def run(self) -> None:
        plan, session = self.plan, self.plan.session
        if plan.timing in ("duration", "events"):
            delay = plan.started + min(session.handshake_ms / 1e3, PACE_LIMIT) / plan.speed - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        protocol = session.protocol if session.protocol in self.request.subprotocols else None
        extra = [(name.encode(), value.encode()) for name, values in session.response_headers.items()
                 for value in values if name.lower() not in _OWN_HEADERS]
        extra.append((b"X-Vcr-Proxy", f"replayed {plan.label}".encode()))
        self._send(AcceptConnection(subprotocol=protocol, extra_headers=extra))
        await self.writer.drain()
        self.start = time.monotonic()
        sender = self.sender = asyncio.create_task(self._play_server())
        try:
            await self._receive()
        finally:
            sender.cancel()
            plan.done.set()

    # -- the server's side, as recorded --

    async def _play_server(self) -> None:
        try:
            await self._play_server_messages()
        except (ConnectionError, LocalProtocolError):
            pass  # the client went away, or closed first
        except Exception as error:  # a recording that cannot be played: said, and closed
            message = f"vcr-proxy: WebSocket {self.plan.url}: cannot play {self.plan.label}: {error!r}"
            log.error(message)
            if not self.closed:
                self.closed = True
                try:
                    self._send(CloseConnection(INTERNAL_ERROR, truncate_reason(message)))
                    await self.writer.drain()
                except (ConnectionError, LocalProtocolError):
                    pass
            self.writer.close()

    async def _play_server_messages(self) -> None:
        plan, session = self.plan, self.plan.session
        paced = plan.timing == "events"
        anchor = -1
        last_ms, offset = 0.0, 0.0  # the recorded time of the last message; its paced offset

        def paced_offset(ms: float) -> float:
            """`ms` as an offset from the anchor, no gap from the message before longer than
            PACE_LIMIT (and none negative: times out of order play at once)."""
            nonlocal last_ms, offset
            offset += min(max(0.0, ms - last_ms), PACE_LIMIT * 1e3)
            last_ms = max(last_ms, ms)
            return offset

        for message in session.messages:
            if message.from_client:
                anchor, last_ms, offset = anchor + 1, message.ms, 0.0
                continue
            await self._wait_for(anchor, paced_offset(message.ms), paced)
            if self.closed:
                return
            self._send(TextMessage(message.data) if message.is_text else BytesMessage(message.data))
            await self.writer.drain()
        close = session.close
        if close is not None and not close.by_client:
            await self._wait_for(anchor, paced_offset(close.ms), paced)
            if self.closed:
                return
            if close.code is None:
                self.writer.close()  # the upstream dropped the connection: so does the replay
            else:
                self.closed = True
                self._send(CloseConnection(close.code, truncate_reason(close.reason)))
                await self.writer.drain()

    async def _wait_for(self, anchor: int, offset_ms: float, paced: bool) -> None:
        if anchor >= 0:
            await self.arrived[anchor].wait()
        if not paced:
            return
        base = self.arrival[anchor] if anchor >= 0 else self.start
        delay = base + offset_ms / 1e3 / self.plan.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- the client's side, matched --

    async def _receive(self) -> None:
        text_parts: list[str] = []
        binary_parts: list[bytes] = []
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.connection.receive_data(data)
            for event in self.connection.events():
                if isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        if not await self._client_message("".join(text_parts)):
                            return
                        text_parts = []
                elif isinstance(event, BytesMessage):
                    binary_parts.append(bytes(event.data))
                    if event.message_finished:
                        if not await self._client_message(b"".join(binary_parts)):
                            return
                        binary_parts = []
                elif isinstance(event, Ping):
                    self._send(event.response())
                elif isinstance(event, CloseConnection):
                    if not self.closed:
                        self.closed = True
                        self._send(event.response())
                    await self.writer.drain()
                    return
            await self.writer.drain()

    async def _client_message(self, data: str | bytes) -> bool:
        """Match the next client message; False once the session is over (a mismatch)."""
        plan = self.plan
        index = plan.matched
        sent = scrub.message(data, plan.secrets)
        if isinstance(sent, str) and sent[:1] == "{":
            try:
                event_id = json.loads(sent).get("event_id")
                self.last_client_event_id = event_id if isinstance(event_id, str) else None
            except (ValueError, AttributeError, RecursionError):
                self.last_client_event_id = None
        if index >= len(self.recorded_client):
            # Past the recording: what it still holds for the client is sent first (the server
            # messages after the last client message, paced, and a close the server made).
            if self.sender is not None:
                await asyncio.shield(self.sender)
            if self.closed or self.writer.is_closing():
                # The server closed the session as recorded: nothing would have answered this.
                log.info(f"vcr-proxy: WebSocket {plan.url}: {plan.label}: client message #{index} "
                         f"({kind(sent)}) after the recorded close, dropped")
                await self._await_close()
                return False
            problem = (f"client message #{index} ({kind(sent)}): the recording holds "
                       f"{len(self.recorded_client)} client message(s), all already matched")
        else:
            found = difference(self.recorded_client[index].data, sent, plan.rules)
            if found is None:
                self.arrival[index] = time.monotonic()
                plan.matched += 1
                self.arrived[index].set()
                return True
            problem = f"client message #{index} ({kind(sent)}): {found}"
        await self._mismatch(problem)
        return False

    async def _mismatch(self, problem: str) -> None:
        plan = self.plan
        message = f"vcr-proxy: WebSocket {plan.url}: no match in {plan.label}: {problem}"
        log.error(message)
        plan.on_miss(f"WebSocket {plan.url} ({problem.split(':', 1)[0]})", message)
        if plan.error_event:
            self._send(TextMessage(json.dumps({
                "type": "error", "event_id": f"event_vcr_proxy_{random.token_hex(8)}",
                "error": {"type": "invalid_request_error", "code": "vcr_proxy_no_match",
                          "message": message, "param": None,
                          "event_id": self.last_client_event_id}})))
        self.closed = True
        self._send(CloseConnection(POLICY_VIOLATION, truncate_reason(message)))
        await self.writer.drain()
        await self._await_close()

    async def _await_close(self) -> None:
        """Let the client answer the close (it then sees a clean close), but never wait long."""
        if self.writer.is_closing():
            return
        try:
            await asyncio.wait_for(self._drain_close(), 2.0)
        except (TimeoutError, ConnectionError, RemoteProtocolError):
            pass

    async def _drain_close(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.connection.receive_data(data)
            if any(isinstance(e, CloseConnection) for e in self.connection.events()):
                return
