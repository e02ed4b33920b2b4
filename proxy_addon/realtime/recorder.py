"""A WebSocket session relayed to its upstream, written to the sidecar as it goes: the open line
once the upgrade succeeded, a line per message as it passes, the close line at the end."""

from __future__ import annotations

import datetime
import logging
import time

from mitmproxy import http

from ..credentials import Secrets, scrub_line
from ..errors import CassetteError
from . import scrub
from .format import Close, Message, Session, close_line, message_line
from .store import SidecarStore, Writes

log = logging.getLogger("vcr-proxy")


class SessionRecording:
    """One session being recorded (hooks.Realtime keeps it by flow)."""

    def __init__(self, store: SidecarStore, writes: Writes, url: str, secrets: Secrets, policy: str,
                 on_failed):
        self.store, self.writes = store, writes
        self.url, self.secrets, self.policy = url, secrets, policy
        self.id: int | None = None  # once the open line is written (on the writes thread)
        self.started = 0.0
        self.failed = False
        self.on_failed = on_failed
        self.count = 0

    def start(self, flow: http.HTTPFlow) -> None:
        request, response = flow.request, flow.response
        self.started = time.time()
        offered = scrub.subprotocol_list(request.headers.get_all("sec-websocket-protocol"))
        chosen = response.headers.get("sec-websocket-protocol") if response is not None else None
        session = Session(
            id=0, url=self.url,
            at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            handshake_ms=max(0.0, ((response.timestamp_start or self.started) - request.timestamp_start) * 1e3)
            if response is not None else 0.0,
            subprotocols=scrub.subprotocols(offered, self.secrets),
            protocol=scrub.subprotocols([chosen], self.secrets)[0] if chosen else None,
            request_headers=scrub.headers(request.headers.items(multi=True), self.policy, self.secrets),
            status=response.status_code if response is not None else 101,
            response_headers=scrub.headers(response.headers.items(multi=True), self.policy, self.secrets,
                                           response=True) if response is not None else {})

        def make_line(number: int) -> str:
            session.id = number
            return session.open_line()

        self._write(self._open, make_line)

    def refused(self, flow: http.HTTPFlow) -> None:
        """The upstream answered the upgrade with another status (401, 403...): the handshake
        is the whole session, recorded as its open line alone."""
        request, response = flow.request, flow.response
        body = response.get_content(strict=False) or b""
        try:
            data: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            data = body
        session = Session(
            id=0, url=self.url,
            at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            handshake_ms=max(0.0, ((response.timestamp_start or time.time()) - request.timestamp_start) * 1e3),
            subprotocols=scrub.subprotocols(scrub.subprotocol_list(request.headers.get_all("sec-websocket-protocol")),
                                            self.secrets),
            request_headers=scrub.headers(request.headers.items(multi=True), self.policy, self.secrets),
            status=response.status_code,
            response_headers=scrub.headers(response.headers.items(multi=True), self.policy, self.secrets,
                                           response=True),
            body=scrub.message(data, self.secrets))

        def make_line(number: int) -> str:
            session.id = number
            return session.open_line()

        def write() -> None:
            self._open(make_line)
            self.store.sync()
            log.info(f"recorded WebSocket {self.url}: refused with {session.status} -> "
                     f"{self.store.path}#session {self.id}")
        self._write(write)

    def _open(self, make_line) -> None:
        self.id = self.store.open_session(make_line)

    def message(self, from_client: bool, content: bytes, is_text: bool, timestamp: float) -> None:
        data: str | bytes = content.decode("utf-8", "surrogateescape") if is_text else bytes(content)
        data = scrub.message(data, self.secrets)
        message = Message(from_client, max(0.0, (timestamp - self.started) * 1e3), data)
        self.count += 1
        self._write(lambda: self.store.append([message_line(self.id, message)]))

    def end(self, code: int | None, reason: str, by_client: bool) -> None:
        if code in (1005, 1006, 1015):  # no code given, connection dropped, TLS failed: never sent
            code = None
        close = Close(max(0.0, (time.time() - self.started) * 1e3), code,
                      scrub_line(reason or "", self.secrets), by_client)

        def write() -> None:
            self.store.append([close_line(self.id, close)])
            self.store.sync()
            log.info(f"recorded WebSocket {self.url}: {self.count} messages -> "
                     f"{self.store.path}#session {self.id}")
        self._write(write)

    def _write(self, function, *args) -> None:
        def guarded() -> None:
            if self.failed:
                return
            try:
                function(*args)
            except (CassetteError, OSError) as error:
                self.failed = True
                message = f"WebSocket {self.url}: {scrub_line(str(error), self.secrets)}"
                log.error(f"vcr-proxy: not recorded: {message}")
                self.on_failed(message)
        self.writes.submit(guarded)
