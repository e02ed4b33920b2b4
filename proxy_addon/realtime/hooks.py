"""What the addon calls for WebSockets: `upgrade` from its request hook, `start`, `message` and
`end` from mitmproxy's websocket hooks. In `record`, `once` (a new cassette) and `new-episodes`
(a session the sidecar does not hold) the session goes to its upstream and is recorded; in
`replay`, `once` (an existing cassette) and `new-episodes` (a held session) it is played by the
in-process player: nothing leaves the machine."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import connection, ctx, http

from .. import display
from ..credentials import Secrets, scrub_line
from ..errors import CassetteError
from ..matchers import normalized_url
from ..responses import error_response, flow_error
from . import format as sidecar
from . import scrub
from .player import Plan, PlayerServer
from .recorder import SessionRecording
from .store import SidecarStore, Writes

log = logging.getLogger("vcr-proxy")

CASSETTE_HEADER = "X-Vcr-Cassette"
# A replayed refusal's own: its body is sent whole, as it is.
_REFUSAL_OWN_HEADERS = frozenset(("content-length", "transfer-encoding", "content-encoding", "connection",
                                  "upgrade", "x-vcr-proxy"))


def ws_url(flow: http.HTTPFlow) -> str:
    url = flow.request.pretty_url
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return secure + url[len(plain):]
    return url


def _match_url(url: str) -> str:
    for ws, web in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            url = web + url[len(ws):]
    return normalized_url(url)


def is_upgrade(headers: http.Headers) -> bool:
    """Whether a request asks to switch to WebSocket: `websocket` among the protocols of its
    Upgrade header(s), a comma-separated list in any case (`Upgrade: websocket, foo`,
    `WebSocket/13`), whatever its Connection header lists beside `Upgrade`."""
    return any(token.split("/", 1)[0].strip().lower() == "websocket"
               for value in headers.get_all("upgrade") for token in value.split(","))


def error_event_protocol(host: str, path: str) -> bool:
    """Whether the API speaks OpenAI Realtime's events (which has an error event)."""
    host = host.lower().rstrip(".")
    return (host == "api.openai.com" or host.endswith(".openai.azure.com")
            or host.endswith(".cognitiveservices.azure.com") or "/realtime" in path)


@dataclass
class Loaded:
    """A cassette's recorded sessions, as last read, and which were replayed."""

    path: Path
    sessions: list[sidecar.Session] = field(default_factory=list)
    stamp: tuple | None = None
    used: set[int] = field(default_factory=set)
    error: str | None = None

    def _stamp(self):
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def refresh(self) -> None:
        stamp = self._stamp()
        if stamp == self.stamp and self.error is None:
            return
        try:
            self.sessions = sidecar.read(self.path)
            self.error = None
        except CassetteError as error:
            self.sessions, self.error = [], str(error)
        self.stamp = stamp

    def unused(self) -> list[int]:
        return [s.id for s in self.sessions if s.id not in self.used]


class Realtime:
    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.writes = Writes()
        self.stores: dict[tuple[Path, bool], SidecarStore] = {}
        self.loaded: dict[Path, Loaded] = {}
        self.player = PlayerServer()
        # A flow's session being recorded, or the plan it is replayed by. Never in the flow's
        # metadata: mitmproxy copies that (its printers at flow_detail 2 and up, flow files),
        # and locks and events cannot be copied.
        self.recordings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.replaying: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def forget(self, path: Path | None = None) -> None:
        """Start cassette `path` (all, if None) over: a new store, sessions unused again."""
        if path is None:
            self.stores.clear()
            self.loaded.clear()
            return
        self.stores.pop((path, True), None)
        self.stores.pop((path, False), None)
        self.loaded.pop(sidecar.sidecar_path(path), None)
        if self.proxy.mode == "record":
            # Selected in record mode: the sidecar starts anew now, so that a test that no
            # longer opens a WebSocket leaves none behind (store.py: not another proxy's).
            store = self.stores[(path, True)] = SidecarStore(path, fresh=True)

            def start() -> None:
                try:
                    store.start_anew()
                except (CassetteError, OSError) as error:
                    log.error(f"vcr-proxy: {error}")
            self.writes.submit(start)

    def unused(self, path: Path) -> list[int]:
        """Sessions of cassette `path` not replayed since it was selected."""
        loaded = self.loaded.get(sidecar.sidecar_path(path))
        if loaded is None:
            loaded = self.loaded[sidecar.sidecar_path(path)] = Loaded(sidecar.sidecar_path(path))
        loaded.refresh()
        return loaded.unused()

    async def unused_in_selection(self) -> list[int]:
        """Sessions of the selected cassette never replayed (replay and once mode, when once
        replayed it), for the control endpoint's report."""
        proxy = self.proxy
        mode = proxy.mode
        if mode not in ("replay", "once"):
            return []
        path = proxy.cassette_for(proxy.report()["cassette"])
        if mode == "once" and proxy.decisions.get(path) != "replay":
            return []
        return await asyncio.to_thread(self.unused, path)

    async def running(self) -> None:
        await self.player.start()

    async def done(self) -> None:
        await self.player.stop()
        await asyncio.to_thread(self.writes.wait, 5.0)

    # -- the upgrade request --

    def upgrade(self, flow: http.HTTPFlow, mode: str):
        request = flow.request
        flow.metadata["vcr_target"] = (request.host, request.port)  # before a reroute
        name = (request.headers.pop(CASSETTE_HEADER, None) or self.proxy.session.cassette
                or ctx.options.vcr_cassette)
        try:
            path = self.proxy.cassette_for(name)
        except ValueError as error:
            message = scrub_line(str(error))  # it quotes the header's value
            flow.response = error_response(400, f"vcr-proxy: {CASSETTE_HEADER}: {message}")
            return None
        secrets = scrub.collect(Secrets(), request.pretty_url, request.headers.items(multi=True))
        url = scrub.url(ws_url(flow), secrets)
        return self._upgrade(flow, path, mode, url, secrets)

    async def _upgrade(self, flow: http.HTTPFlow, path: Path, mode: str, url: str,
                       secrets: Secrets) -> None:
        proxy = self.proxy
        if mode == "once":
            mode = proxy.decisions.get(path)
            if mode is None:
                exists = await asyncio.to_thread(
                    lambda: path.exists() or sidecar.sidecar_path(path).exists())
                mode = proxy.decisions[path] = "replay" if exists else "record"
        if mode == "record":
            await self._record(flow, path, url, secrets, fresh=True)
            return
        loaded = self.loaded.get(sidecar.sidecar_path(path))
        if loaded is None:
            loaded = self.loaded[sidecar.sidecar_path(path)] = Loaded(sidecar.sidecar_path(path))
        await asyncio.to_thread(loaded.refresh)
        wanted = _match_url(url)
        same = [s for s in loaded.sessions if _match_url(s.url) == wanted]
        session = next((s for s in same if s.id not in loaded.used), None)
        if session is None and same and (proxy.session.matcher or proxy.matcher).rules.allow_repeats:
            session = same[-1]  # vcr_allow_repeats: the last again, as for HTTP
        if session is not None:
            loaded.used.add(session.id)
            self._replay(flow, path, loaded, session, url, secrets)
            return
        if mode == "new-episodes":
            await self._record(flow, path, url, secrets, fresh=False)
            return
        if loaded.error:
            detail = loaded.error
        elif same:
            detail = (f"{len(same)} session(s) of {loaded.path} have this URL, all already replayed")
        elif loaded.sessions:
            detail = (f"no session among {len(loaded.sessions)} of {loaded.path} has this URL; "
                      f"nearest is session {loaded.sessions[0].id} ({loaded.sessions[0].url})")
        else:
            detail = (f"{loaded.path} holds no WebSocket session; record it with vcr_mode=once, "
                      "record or new-episodes")
        message = f"vcr-proxy: WebSocket {url}: {detail}"
        self._miss(f"WebSocket {url}", message)
        flow.response = flow_error(flow, 404, message)

    def _miss(self, request: str, message: str) -> None:
        log.error(message)
        session = self.proxy.session
        session.misses.append(request)
        session.miss_messages.append(message)
        self.proxy.control.notify("miss")

    async def _record(self, flow: http.HTTPFlow, path: Path, url: str, secrets: Secrets,
                      fresh: bool) -> None:
        store = self.stores.get((path, fresh))
        try:
            if store is None:
                store = self.stores[(path, fresh)] = SidecarStore(path, fresh)
            if not store.checked:
                await asyncio.to_thread(store.check)
        except CassetteError as error:
            log.error(f"vcr-proxy: {error}")
            flow.response = error_response(400, f"vcr-proxy: {error}")
            return
        if self.proxy.mode == "replay":
            message = f"vcr-proxy: WebSocket {url}: the proxy switched to replay mode; not forwarded"
            self._miss(f"WebSocket {url}", message)
            flow.response = flow_error(flow, 404, message)
            return
        self.proxy.control.notify("record")
        self.recordings[flow] = SessionRecording(
            store, self.writes, url, secrets, ctx.options.vcr_headers,
            on_failed=self.proxy.session.failed.append)
        if ctx.options.vcr_upstream:
            from ..recording import reroute
            reroute(flow, ctx.options.vcr_upstream)

    def _replay(self, flow: http.HTTPFlow, path: Path, loaded: Loaded, session: sidecar.Session,
                url: str, secrets: Secrets) -> None:
        proxy = self.proxy
        matcher = proxy.session.matcher or proxy.matcher
        label = f"{loaded.path}#session {session.id}"
        request = flow.request
        plan = Plan(session=session, label=label, cassette=str(path), url=url,
                    timing=ctx.options.vcr_timing, speed=proxy.speed, rules=matcher.rules,
                    secrets=secrets, error_event=error_event_protocol(request.pretty_host, request.path),
                    started=request.timestamp_start, on_miss=self._miss)
        proxy.session.replayed_from.append(label)
        if ctx.options.vcr_log_replays:
            log.info(f"replayed WebSocket {url} from {label}")
        if session.refused:  # the upstream refused the upgrade: so does the replay, as it did
            body = session.body.encode("utf-8") if isinstance(session.body, str) else session.body
            headers = [(name.encode(), value.encode()) for name, values in session.response_headers.items()
                       for value in values if name.lower() not in _REFUSAL_OWN_HEADERS]
            headers.append((b"X-Vcr-Proxy", f"replayed {label}".encode()))
            flow.response = http.Response.make(session.status, body, headers)
            return
        self.replaying[flow] = plan
        # Played by the in-process player: a new connection with no `via`, so an upstream proxy
        # (mode=upstream:...) never sees it either. Its handshake (wsproto) wants the plain
        # headers: `Upgrade: websocket, foo` or `Connection: keep-alive, Upgrade` say as much.
        request.headers["Upgrade"] = "websocket"
        request.headers["Connection"] = "Upgrade"
        request.scheme, request.host, request.port = "http", "127.0.0.1", self.player.port
        request.path = self.player.add(plan)
        flow.server_conn = connection.Server(address=("127.0.0.1", self.player.port))

    def response(self, flow: http.HTTPFlow) -> None:
        """An upgrade's answer: a refusal (not 101) is the whole session, recorded so. And a
        101 replayed from a go-vcr cassette: never sent (there is nothing to switch to)."""
        response = flow.response
        if response is not None and response.status_code == 101 and flow.metadata.get("vcr_replay"):
            self._recorded_switch(flow)
            return
        if not self.recordings:  # every HTTP response comes here: most at once
            return
        recording: SessionRecording | None = self.recordings.get(flow)
        if recording is not None and flow.response is not None and flow.response.status_code != 101:
            del self.recordings[flow]
            recording.refused(flow)

    def _recorded_switch(self, flow: http.HTTPFlow) -> None:
        """A `101 Switching Protocols` recorded as an HTTP exchange (go-vcr keeps a WebSocket's
        handshake and none of its messages) and matched: sent, it would leave the client's
        connection switched to a WebSocket with no server behind it (mitmproxy failed on it
        with a KeyError). An error instead, a miss like any other."""
        request = flow.request
        source = (flow.response.headers.get("X-Vcr-Proxy") or "replayed a recording").removeprefix("replayed ")
        shown = f"{request.method} {scrub_line(request.pretty_url)}"
        message = (f"vcr-proxy: {shown}: {source} is an HTTP 101 (Switching Protocols) recorded as an "
                   "HTTP exchange, without the messages that followed it: it cannot be replayed; "
                   "record the WebSocket session again with vcr-proxy (NAME.realtime.jsonl)")
        self._miss(shown, message)
        flow.websocket = None
        flow.response = flow_error(flow, 501, message)

    def error(self, flow: http.HTTPFlow) -> None:
        """An upgrade that got no answer (the upstream unreachable): nothing to record."""
        if self.recordings or self.replaying:
            self.recordings.pop(flow, None)
            self.replaying.pop(flow, None)

    # -- mitmproxy's websocket hooks --

    def start(self, flow: http.HTTPFlow) -> bool:
        """A session began; whether it is one the player answers (not relayed anywhere)."""
        recording: SessionRecording | None = self.recordings.get(flow)
        plan: Plan | None = self.replaying.get(flow)
        if recording is not None:
            recording.start(flow)
        # mitmproxy prints each message (flow_detail 3): without every credential the session
        # carries, the URL's of a replayed one too (its request now names the player).
        secrets = recording.secrets if recording is not None else plan.secrets if plan is not None else None
        if secrets is not None:
            display.share(flow, secrets)
        return plan is not None

    def message(self, flow: http.HTTPFlow) -> None:
        recording: SessionRecording | None = self.recordings.get(flow)
        if recording is not None and flow.websocket is not None and flow.websocket.messages:
            last = flow.websocket.messages[-1]
            recording.message(last.from_client, last.content, last.is_text, last.timestamp)

    def end(self, flow: http.HTTPFlow) -> None:
        self.replaying.pop(flow, None)
        recording: SessionRecording | None = self.recordings.pop(flow, None)
        if recording is not None and flow.websocket is not None:
            websocket = flow.websocket
            recording.end(websocket.close_code, websocket.close_reason or "",
                          bool(websocket.closed_by_client))
