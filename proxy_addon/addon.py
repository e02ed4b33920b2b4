"""vcr-proxy as a mitmproxy addon: `mitmdump -s proxy_addon/addon.py --set vcr_mode=record`.

This file adapts mitmproxy flows to the plain-Python parts of the package (recorder, filters,
persisters): it decides which flows to record, streams their responses through while keeping
a copy, and hands each completed exchange to the cassette writer.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import re
import sys
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

try:
    import proxy_addon  # noqa: F401
except ImportError:  # loaded by `mitmdump -s` from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http  # noqa: E402

from proxy_addon import filters  # noqa: E402
from proxy_addon.cassette import Interaction  # noqa: E402
from proxy_addon.control import CONTROL_HOST, ControlError, Session, parse_selection  # noqa: E402
from proxy_addon.errors import CassetteError  # noqa: E402
from proxy_addon.matchers import DEFAULT_PARTS, PARTS, IncomingRequest, Matcher, MatchRules  # noqa: E402
from proxy_addon.persisters.filesystem import CassetteWriter  # noqa: E402
from proxy_addon.recorder import (  # noqa: E402
    DecodeError, Exchange, PendingRecording, stream_is_finished, to_interaction)
from proxy_addon.replay import TIMINGS, ReplayCassette, ReplayServer, make_plan  # noqa: E402
from proxy_addon.serializers.emitter import DEFAULT_LAYOUT, LAYOUTS  # noqa: E402

log = logging.getLogger("vcr-proxy")

# go-vcr's modes: replay only; record only (the cassette starts anew); once (replay an existing
# cassette, record a missing one); new-episodes (replay hits, record and append misses).
MODES = ("once", "replay", "record", "new-episodes", "passthrough")
DEFAULT_HOSTS = ",".join((
    "openrouter.ai", "api.openai.com", "*.openai.azure.com", "api.anthropic.com",
    "generativelanguage.googleapis.com", "aiplatform.googleapis.com",
    "*-aiplatform.googleapis.com", "api.groq.com", "api.x.ai", "api.mistral.ai",
    "api.deepseek.com",
))
CASSETTE_HEADER = "X-Vcr-Cassette"


def json_response(status: int, payload: dict) -> http.Response:
    return http.Response.make(status, json.dumps(payload), {"Content-Type": "application/json"})


def error_response(status: int, message: str) -> http.Response:
    """An error in the OpenAI shape, so an SDK's exception shows the message."""
    return json_response(status, {"error": {"message": message, "type": "vcr_proxy_error",
                                            "code": status}})


def cassette_path(folder: Path, name: str) -> Path:
    """The file for cassette `name` (relative to `folder`, `.yaml` added); ValueError if
    the name could reach outside the folder."""
    if not name or "\x00" in name or "\\" in name:
        raise ValueError(f"invalid cassette name {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"cassette name {name!r} must be relative to the cassette folder "
                         "and must not contain '..'")
    if pure.suffix not in (".yaml", ".yml"):
        pure = pure.with_name(pure.name + ".yaml")
    path = folder / pure
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"cassette name {name!r} leads outside {folder} (through a symlink)")
    return path


class VcrProxy:
    """Records LLM API exchanges into go-vcr cassettes while passing streams through live."""

    def __init__(self) -> None:
        self.writers: dict[Path, CassetteWriter] = {}
        self.opening: dict[Path, asyncio.Lock] = {}
        self.hosts: list[str] = []
        self.host_pattern = re.compile("(?!)")
        self.paths: dict[str, Path] = {}
        self.replays: dict[Path, ReplayCassette] = {}
        self.decisions: dict[Path, str] = {}  # once: "replay" or "record", per cassette
        self.matcher = Matcher(MatchRules())
        self.speed = 1.0
        self.session = Session()
        self.in_flight: set[int] = set()  # id() of recordings whose exchange is not over
        self.loopback_forced = False
        self.server = ReplayServer()
        self.allow_hosts: list[str] = []

    def load(self, loader) -> None:
        loader.add_option("vcr_mode", str, "once",
                          "once: replay an existing cassette, record a missing one; replay: "
                          "only from disk, a miss is an error; record: always upstream, the "
                          "cassette rewritten; new-episodes: replay what matches, record and "
                          "append what does not; passthrough: neither.")
        loader.add_option("vcr_dir", str, "recordings", "Folder that holds the cassettes.")
        loader.add_option("vcr_cassette", str, "default",
                          "Cassette for requests without an X-Vcr-Cassette header (a name "
                          "relative to vcr_dir; .yaml is added).")
        loader.add_option("vcr_hosts", str, DEFAULT_HOSTS,
                          "Comma-separated hosts to record (shell patterns like *.openai.azure.com); "
                          "other hosts pass through untouched and unrecorded.")
        loader.add_option("vcr_headers", str, "minimal",
                          "Headers to record: minimal (request Accept, Content-Type, User-Agent; "
                          "response Content-Type) or all. Credentials are never recorded.")
        loader.add_option("vcr_layout", str, DEFAULT_LAYOUT.name,
                          f"Layout of new cassettes: {', '.join(LAYOUTS)}. Existing cassettes keep "
                          "theirs.")
        loader.add_option("vcr_upstream", str, "",
                          "Send recorded hosts' traffic to this base URL instead (e.g. a gateway, "
                          "or a local test server); cassettes keep the public URLs.")
        loader.add_option("vcr_timing", str, "none",
                          "Replay pacing: none (as fast as possible); duration (wait the recorded "
                          "time to the headers, as go-vcr does); events (that, then each event at "
                          "its recorded time, from NAME.timing.jsonl).")
        # A string: mitmproxy's --set cannot parse float options.
        loader.add_option("vcr_speed", str, "1.0", "Replay pacing factor: 2.0 is twice as fast.")
        loader.add_option("vcr_match", str, ",".join(DEFAULT_PARTS),
                          f"Parts of a request that must match a recording: {', '.join(PARTS)}.")
        loader.add_option("vcr_ignore_fields", str, "",
                          "Comma-separated JSON body fields left out of matching, e.g. "
                          "user,metadata.session_id,seed.")
        loader.add_option("vcr_log_replays", bool, False,
                          "Log a line for every replayed interaction (through mitmdump's terminal "
                          "log this costs about a tenth of replay throughput).")
        loader.add_option("vcr_allow_repeats", bool, False,
                          "Once every matching interaction has been replayed, serve the last "
                          "one again instead of answering with a miss.")

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if options.vcr_mode not in MODES:
            raise exceptions.OptionsError(f"vcr_mode: unknown mode {options.vcr_mode!r}; "
                                          f"choose one of {', '.join(MODES)}")
        if options.vcr_headers not in filters.HEADER_POLICIES:
            raise exceptions.OptionsError(f"vcr_headers: {options.vcr_headers!r} is not "
                                          "'minimal' or 'all'")
        if options.vcr_layout not in LAYOUTS:
            raise exceptions.OptionsError(f"vcr_layout: unknown layout {options.vcr_layout!r}; "
                                          f"choose one of {', '.join(LAYOUTS)}")
        if options.vcr_upstream:
            parts = urlsplit(options.vcr_upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise exceptions.OptionsError(f"vcr_upstream: {options.vcr_upstream!r} is not "
                                              "an http(s) URL like https://127.0.0.1:8443")
        try:
            cassette_path(Path(options.vcr_dir), options.vcr_cassette)
        except ValueError as error:
            raise exceptions.OptionsError(f"vcr_cassette: {error}") from None
        if options.vcr_timing not in TIMINGS:
            raise exceptions.OptionsError(f"vcr_timing: {options.vcr_timing!r} is not one of "
                                          f"{', '.join(TIMINGS)}")
        try:
            self.speed = float(options.vcr_speed)
        except ValueError:
            self.speed = 0.0
        if not 0 < self.speed < float("inf"):
            raise exceptions.OptionsError(f"vcr_speed: {options.vcr_speed!r} is not a number above 0")
        try:
            self.matcher = Matcher(MatchRules.parse(options.vcr_match, options.vcr_ignore_fields,
                                                    options.vcr_allow_repeats))
        except ValueError as error:
            raise exceptions.OptionsError(f"vcr_match: {error}") from None
        self.hosts = [h.strip().lower() for h in options.vcr_hosts.split(",") if h.strip()]
        self.host_pattern = re.compile("|".join(fnmatch.translate(h) for h in self.hosts) or "(?!)")
        self.paths.clear()
        # Intercept TLS only for recorded hosts: every other host is tunnelled untouched, so
        # its certificates need no trust in mitmproxy's CA. A user's own choice stands.
        allow = [rf"^(?:{fnmatch.translate(h)[4:-3]})(?::\d+)?$" for h in self.hosts + [CONTROL_HOST]]
        if options.vcr_mode != "passthrough" and not options.ignore_hosts and (
                not options.allow_hosts or options.allow_hosts == self.allow_hosts):
            if options.allow_hosts != allow:
                self.allow_hosts = allow
                options.allow_hosts = allow
        if {"vcr_dir", "vcr_mode", "vcr_layout"} & updated:
            self.writers.clear()
            self.replays.clear()
            self.decisions.clear()
        # Listen on loopback unless told otherwise (mitmproxy's own default is every interface).
        if not options.listen_host:
            options.listen_host = "127.0.0.1"
            self.loopback_forced = True
        # Connect upstream only when a request needs it: a rerouted or offline host must not
        # be dialled just because a client opened a tunnel to it.
        if options.connection_strategy != "lazy":
            options.connection_strategy = "lazy"

    @property
    def mode(self) -> str:
        return self.session.mode or ctx.options.vcr_mode

    def records(self, host: str) -> bool:
        return self.mode != "passthrough" and self.host_pattern.match(host.lower()) is not None

    def cassette_for(self, name: str) -> Path:
        """The checked path of cassette `name`, remembered: requests name the same few."""
        path = self.paths.get(name)
        if path is None:
            path = self.paths[name] = cassette_path(Path(ctx.options.vcr_dir), name)
        return path

    async def running(self) -> None:
        await self.server.start()
        if self.loopback_forced:
            await self._rebind_to_loopback()

    @staticmethod
    async def _rebind_to_loopback() -> None:
        # mitmdump loads scripts while it brings its servers up, so they may already listen on
        # every interface by the time configure() set listen_host: start them again.
        from mitmproxy.proxy import mode_specs

        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None or not any(address[0] in ("", "0.0.0.0", "::")
                                          for address in proxyserver.listen_addrs()):
            return
        await proxyserver.servers.update([])
        await proxyserver.servers.update([mode_specs.ProxyMode.parse(m) for m in ctx.options.mode])

    async def done(self) -> None:
        await self.settle(5.0)  # Ctrl-C: let the exchanges that are ending be saved
        await self.server.stop()

    async def settle(self, timeout: float) -> None:
        """Wait (up to `timeout`) until no recorded exchange is still in flight."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def writer(self, path: Path, fresh: bool) -> CassetteWriter:
        writer = self.writers.get(path)
        if writer is None:
            lock = self.opening.setdefault(path, asyncio.Lock())
            async with lock:
                writer = self.writers.get(path)
                if writer is None:
                    layout = LAYOUTS[ctx.options.vcr_layout]
                    writer = await asyncio.to_thread(CassetteWriter, path, layout, fresh)
                    self.writers[path] = writer
        return writer

    def request(self, flow: http.HTTPFlow):
        if flow.response is not None:
            return None
        host = flow.request.pretty_host
        if host == CONTROL_HOST:
            return self.control(flow)
        if not self.records(host):
            return None
        name = (flow.request.headers.pop(CASSETTE_HEADER, None) or self.session.cassette
                or ctx.options.vcr_cassette)
        try:
            path = self.cassette_for(name)
        except ValueError as error:
            flow.response = error_response(400, f"vcr-proxy: {CASSETTE_HEADER}: {error}")
            return None
        try:
            result = self._dispatch(flow, path, self.mode)
        except Exception as error:
            self._internal_error(flow, error)
            return None
        return None if result is None else self._guarded(flow, result)

    # Each step answers at once when it can (the hot paths stay synchronous) and returns a
    # coroutine for mitmproxy to await when it must touch the disk or wait.

    def _dispatch(self, flow: http.HTTPFlow, path: Path, mode: str):
        if mode == "once":
            decision = self.decisions.get(path)
            if decision is None:
                return self._decide(flow, path)
            mode = decision
        if mode == "record":
            writer = self.writers.get(path)
            if writer is None:
                return self._record(flow, path, fresh=True)
            self.begin(flow, writer)
            return None
        replay = self.replays.get(path)
        if replay is None or replay.needs_refresh():
            return self._refresh(flow, path, mode)
        return self._replay(flow, replay, mode)

    async def _decide(self, flow: http.HTTPFlow, path: Path) -> None:
        if path not in self.decisions:
            exists = await asyncio.to_thread(path.exists)
            self.decisions[path] = "replay" if exists else "record"
        await self._finish(self._dispatch(flow, path, self.decisions[path]))

    async def _refresh(self, flow: http.HTTPFlow, path: Path, mode: str) -> None:
        replay = self.replays.get(path)
        if replay is None:
            replay = self.replays[path] = ReplayCassette(path)
        await asyncio.to_thread(replay.refresh)
        await self._finish(self._replay(flow, replay, mode))

    def _replay(self, flow: http.HTTPFlow, replay: ReplayCassette, mode: str):
        headers = flow.request.headers
        incoming = IncomingRequest(
            flow.request.method, flow.request.pretty_url, flow.request.raw_content or b"",
            {k: headers.get_all(k) for k in headers} if "headers" in self.matcher.rules.parts else {})
        interaction, matched = replay.find(self.matcher, incoming)
        if interaction is not None:
            return self.serve(flow, replay, interaction, incoming.url)
        if mode == "new-episodes":
            return self._record(flow, replay.path, fresh=False)
        self.miss(flow, replay, incoming, matched)
        return None

    @staticmethod
    async def _finish(result) -> None:
        if result is not None:
            await result

    async def _guarded(self, flow: http.HTTPFlow, result) -> None:
        try:
            await result
        except Exception as error:
            self._internal_error(flow, error)

    @staticmethod
    def _internal_error(flow: http.HTTPFlow, error: Exception) -> None:
        # Never let a request the addon failed on fall through to the network.
        log.exception(f"vcr-proxy: internal error on {flow.request.method} {flow.request.pretty_url}")
        flow.response = error_response(500, f"vcr-proxy: internal error: {error!r}")

    async def _record(self, flow: http.HTTPFlow, path: Path, fresh: bool) -> None:
        try:
            writer = await self.writer(path, fresh)
        except CassetteError as error:
            log.error(f"vcr-proxy: {error}")
            flow.response = error_response(400, f"vcr-proxy: {error}")
            return
        self.begin(flow, writer)

    def serve(self, flow: http.HTTPFlow, replay: ReplayCassette, interaction: Interaction, url: str):
        response = interaction.response
        headers = [(name, value) for name, values in response.headers.items() for value in values
                   if name.lower() not in ("content-length", "transfer-encoding")]
        plan = make_plan(interaction, replay.timing_for(interaction), ctx.options.vcr_timing,
                         self.speed, flow.request.timestamp_start, headers)
        self.session.replayed.append(interaction.id)
        if ctx.options.vcr_log_replays:
            log.info(f"replayed {flow.request.method} {url} -> "
                     f"{response.code} from {replay.path}#{interaction.id}")
        flow.metadata["vcr_replay"] = True
        streamed = any(name.lower() == "content-type" and "text/event-stream" in value.lower()
                       for name, value in headers)
        if streamed:
            # Through the in-process replay server, so gaps between events stay gaps.
            flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", self.server.port
            flow.request.path = self.server.add(plan)
            flow.request.method = "GET"
            flow.request.content = b""
            return None
        wait = plan.started + plan.headers_at - time.time()
        if wait > 0:
            return self._respond_later(flow, plan, wait)
        self._respond(flow, plan)
        return None

    async def _respond_later(self, flow: http.HTTPFlow, plan, wait: float) -> None:
        await asyncio.sleep(wait)
        self._respond(flow, plan)

    @staticmethod
    def _respond(flow: http.HTTPFlow, plan) -> None:
        fields = [(name.encode("utf-8"), value.encode("utf-8")) for name, value in plan.headers]
        body = b"".join(plan.chunks)
        if any(name.lower() == b"content-encoding" for name, _ in fields):
            # mitmproxy encodes the recorded (decoded) body as the header says.
            flow.response = http.Response.make(plan.status, body, http.Headers(fields))
        else:
            # What Response.make does for a body without a content coding, in one step (make's
            # content setter was a tenth of the time the addon takes per replayed request).
            fields.append((b"content-length", str(len(body)).encode()))
            now = time.time()
            flow.response = http.Response(b"HTTP/1.1", plan.status, b"", http.Headers(fields), body,
                                          None, now, now)
        flow.response.reason = plan.reason

    def miss(self, flow: http.HTTPFlow, replay: ReplayCassette, incoming: IncomingRequest,
             matched: int) -> None:
        request = f"{incoming.method} {filters.redact_url(incoming.url)}"
        if replay.cassette is None and replay.error is not None:
            detail = f"cassette {replay.error}"
        elif replay.cassette is None:
            detail = (f"cassette {replay.path} does not exist; record it with vcr_mode=once or "
                      "record")
        elif matched:
            detail = (f"{matched} interaction(s) of {replay.path} match, all already replayed; "
                      "set vcr_allow_repeats=true to serve the last again")
        else:
            count = len(replay.cassette.interactions)
            nearest = self.matcher.nearest(replay.cassette.interactions, incoming)
            detail = f"no match among {count} interaction(s) of {replay.path}"
            if nearest:
                found, differences = nearest
                detail += (f"; nearest is #{found.id} ({found.request.method} "
                           f"{filters.redact_url(found.request.url)}): " + "; ".join(differences))
        message = f"vcr-proxy: {request}: {detail}"
        self.session.misses.append(request)
        log.error(message)
        flow.response = error_response(404, message)

    async def _eject(self, flow: http.HTTPFlow) -> None:
        # A client may have read a stream's last event before the proxy saw its end.
        await self.settle(2.0)
        report = self.session.report(ctx.options.vcr_cassette, ctx.options.vcr_mode)
        self.session = Session()
        flow.response = json_response(200, report)

    def control(self, flow: http.HTTPFlow):
        """Answer a request to the control host (see control.py); it never goes upstream."""
        path = flow.request.path.split("?", 1)[0].rstrip("/")
        options = ctx.options
        if path == "/cassette" and flow.request.method == "POST":
            try:
                name, mode = parse_selection(flow.request.raw_content or b"", MODES)
                cassette_file = self.cassette_for(name)
            except (ControlError, ValueError) as error:
                flow.response = error_response(400, f"vcr-proxy control: {error}")
                return
            self.session = Session(cassette=name, mode=mode)
            # A cassette selected again starts over: its once-decision and writer are redone.
            self.decisions.pop(cassette_file, None)
            self.writers.pop(cassette_file, None)
            self.replays.pop(cassette_file, None)
            report = self.session.report(options.vcr_cassette, options.vcr_mode)
        elif path == "/eject" and flow.request.method == "POST":
            return self._eject(flow)
        elif path in ("", "/status"):
            report = self.session.report(options.vcr_cassette, options.vcr_mode)
            report["dir"] = options.vcr_dir
        else:
            flow.response = error_response(404, f"vcr-proxy control: no {flow.request.method} "
                                                f"{path or '/'}; use POST /cassette, POST /eject "
                                                "or GET /status")
            return
        flow.response = json_response(200, report)
        return None

    def begin(self, flow: http.HTTPFlow, writer: CassetteWriter) -> None:
        recording = PendingRecording(writer=writer, id=writer.reserve_id(),
                                     url=flow.request.pretty_url, started=flow.request.timestamp_start)
        flow.metadata["vcr"] = recording
        self.in_flight.add(id(recording))
        if ctx.options.vcr_upstream:
            self.reroute(flow, ctx.options.vcr_upstream)

    @staticmethod
    def reroute(flow: http.HTTPFlow, upstream: str) -> None:
        parts = urlsplit(upstream)
        prefix = parts.path.rstrip("/")
        flow.request.scheme = parts.scheme
        flow.request.host = parts.hostname
        flow.request.port = parts.port or (443 if parts.scheme == "https" else 80)
        if prefix:
            flow.request.path = prefix + flow.request.path

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("vcr_replay"):
            flow.response.stream = True
            flow.response.headers.pop("Connection", None)
            return
        recording: PendingRecording | None = flow.metadata.get("vcr")
        if recording is None:
            return
        headers = flow.response.headers
        streaming = ("text/event-stream" in headers.get("content-type", "").lower()
                     or "content-length" not in headers
                     or "chunked" in headers.get("transfer-encoding", "").lower())
        if streaming:
            recording.streamed = True
            flow.response.stream = recording.on_chunk

    async def response(self, flow: http.HTTPFlow) -> None:
        recording: PendingRecording | None = flow.metadata.pop("vcr", None)
        if recording is not None:
            try:
                await self.save(flow, recording)
            finally:
                self.in_flight.discard(id(recording))

    async def error(self, flow: http.HTTPFlow) -> None:
        recording: PendingRecording | None = flow.metadata.pop("vcr", None)
        if recording is None:
            return
        try:
            await self._failed(flow, recording)
        finally:
            self.in_flight.discard(id(recording))

    async def _failed(self, flow: http.HTTPFlow, recording: PendingRecording) -> None:
        if recording.streamed and (recording.ended is not None or
                                   stream_is_finished(recording.copy)):
            # The answer is whole: the client hung up as it ended (SDKs close a stream once
            # they have read its final event), which changes nothing worth recording.
            if recording.ended is None:
                recording.ended = recording.arrivals[-1][1]
            await self.save(flow, recording)
            return
        reason = flow.error.msg if flow.error else "unknown error"
        log.warning(f"vcr-proxy: not recorded: {flow.request.method} {recording.url}: "
                    f"the exchange did not complete ({reason})")

    async def save(self, flow: http.HTTPFlow, recording: PendingRecording) -> None:
        response = flow.response
        streamed = recording.streamed
        body = recording.copy if streamed else (response.raw_content or b"")
        ended = recording.ended if streamed else (response.timestamp_end or time.time())
        exchange = Exchange(
            method=flow.request.method, url=recording.url,
            request_headers=list(flow.request.headers.items(multi=True)),
            request_body=flow.request.raw_content or b"",
            http_version=response.http_version, status_code=response.status_code,
            reason=response.reason, response_headers=list(response.headers.items(multi=True)),
            response_body=body, started=recording.started,
            headers_at=response.timestamp_start or recording.started, ended=ended,
            arrivals=recording.arrivals if streamed else [(len(body), ended)],
            trailers=list(response.trailers.items(multi=True)) if response.trailers else [],
        )
        try:
            interaction, timing = to_interaction(exchange, recording.id, ctx.options.vcr_headers)
            await asyncio.to_thread(recording.writer.append, interaction, timing)
        except (DecodeError, CassetteError, OSError) as error:
            log.error(f"vcr-proxy: not recorded: {flow.request.method} {recording.url}: {error}")
            return
        self.session.recorded.append(recording.id)
        events = f", {len(timing.events_ms)} events" if streamed else ""
        log.info(f"recorded {flow.request.method} {interaction.request.url} -> "
                 f"{interaction.response.code} in {interaction.response.duration / 1e9:.3f}s"
                 f"{events} -> {recording.writer.path}#{recording.id}")

addons = [VcrProxy()]
