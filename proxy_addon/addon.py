"""vcr-proxy as a mitmproxy addon: `mitmdump -s proxy_addon/addon.py --set vcr_mode=record`.

The addon routes: it declares the options, decides for each connection whether it is opened
up (routing.py) and for each request whether it is answered from a cassette (playback.py),
recorded (recording.py), sent to the control endpoint (control.py) or passed on untouched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

try:
    import proxy_addon  # noqa: F401
except ImportError:  # loaded by `mitmdump -s` from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import connection, ctx, exceptions, http  # noqa: E402
from mitmproxy.proxy import layers, mode_specs  # noqa: E402
from mitmproxy.utils.human import format_address  # noqa: E402

from proxy_addon import body_limit, collector, display, filters, tls_writes  # noqa: E402
from proxy_addon.background import read_off_loop, start_off_loop  # noqa: E402
from proxy_addon.control import CONTROL_HEADER, ControlEndpoint, Session  # noqa: E402
from proxy_addon.codings import BodyTooLarge, DecodeError  # noqa: E402
from proxy_addon.credentials import Secrets, request_secrets, scrub_headers, scrub_line  # noqa: E402
from proxy_addon.control_token import TOKEN_VARIABLE, TokenError, chosen_token, load_token, token_path  # noqa: E402
from proxy_addon.errors import CassetteError  # noqa: E402
from proxy_addon.front import listener as front_listener  # noqa: E402
from proxy_addon.front.listener import FRONTS, Front  # noqa: E402
from proxy_addon.matchers import DEFAULT_PARTS, PARTS, Matcher, MatchRules  # noqa: E402
from proxy_addon.playback import FAULT_HEADER, Player, active_fault, incoming_request, parse_fault  # noqa: E402
from proxy_addon.recorder import DEFAULT_MAX_BODY  # noqa: E402
from proxy_addon.recording import Recorder, reroute  # noqa: E402
from proxy_addon.relays import RAW, TUNNEL, WEBSOCKET, Relay, Relays  # noqa: E402
from proxy_addon.connections import RAW_LAYERS, Closed, close_client_connection, wait_closed  # noqa: E402
from proxy_addon.proxy_modes import ADDRESSED_ELSEWHERE, replay_mode_problem  # noqa: E402
from proxy_addon.realtime.hooks import Realtime, is_upgrade as is_websocket_upgrade  # noqa: E402
from proxy_addon.replay import TIMINGS, ReplayCassette  # noqa: E402
from proxy_addon.request_view import RequestView, view_request  # noqa: E402
from proxy_addon.responses import error_response, flow_error, json_response  # noqa: E402
from proxy_addon.telemetry import parse_endpoints, telemetry_endpoint  # noqa: E402
from proxy_addon.routing import (  # noqa: E402
    CONTROL_HOST, CassetteHosts, HostPatterns, Routes, host_mismatch, normalize_host, parse_hosts)
from proxy_addon.serializers.emitter import DEFAULT_LAYOUT, LAYOUTS  # noqa: E402

log = logging.getLogger("vcr-proxy")

# go-vcr's modes: replay only; record only (the cassette starts anew); once (replay an existing
# cassette, record a missing one); new-episodes (replay hits, record and append misses).
MODES = ("once", "replay", "record", "new-episodes", "passthrough")
CASSETTE_HEADER = "X-Vcr-Cassette"

# `mitmdump -s proxy_addon/addon.py` loads this file under mitmproxy's own module name.
LOADED_AS_SCRIPT = __name__.startswith("__mitmproxy_script__")
# Where the proxy listens when listen_host is not given (mitmproxy's own default is everywhere).
LOOPBACK = "127.0.0.1"


def cassette_path(folder: Path, name: str) -> Path:
    """The file for cassette `name` (relative to `folder`, `.yaml` added); ValueError if
    the name could reach outside the folder."""
    if not name or "\x00" in name or "\\" in name:
        raise ValueError(f"invalid cassette name {name!r}")
    if len(name) > 1024 or any(len(part.encode()) > 255 for part in name.split("/")):
        raise ValueError(f"cassette name of {len(name)} characters is too long for a file name")
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


def control_socket_problem(path: str) -> str | None:
    """Why a Unix socket cannot be made at `path`, or None."""
    if len(os.fsencode(path)) > 107:  # sun_path's size on Linux, less the final NUL
        return f"{path!r} is longer than a Unix socket path may be (107 bytes)"
    if os.path.lexists(path):
        return f"{path} exists; give a path where no file is (the socket is made there)"
    return None


class VcrProxy:
    """Records LLM API exchanges into go-vcr cassettes and replays them."""

    modes = MODES

    def __init__(self) -> None:
        self.recorder = Recorder(on_saved=lambda i: self.session.recorded.append(i),
                                 on_failed=lambda message: self.session.failed.append(message))
        self.player = Player()
        self.control = ControlEndpoint(self)
        self.routes = Routes(HostPatterns(parse_hosts("")), HostPatterns(()))
        self.paths: dict[str, Path] = {}
        self.replays: dict[Path, ReplayCassette] = {}
        self.decisions: dict[Path, str] = {}  # once: "replay" or "record", per cassette
        self.loading: dict[Path, asyncio.Task] = {}  # cassettes read ahead (preload)
        self.matcher = Matcher(MatchRules())
        self.speed = 1.0
        self.telemetry = parse_endpoints("")
        self.session = Session()
        self.loopback_forced = False
        self.rebinding: asyncio.Task | None = None
        self.configured = False  # once a configure succeeded
        self.configuring = 0
        self.flows_shown = True
        self.control_server = None
        self.failed_to_start = False
        self.parent_watch: asyncio.Task | None = None
        self.relays = Relays()  # connections relayed untouched (tunnels, WebSockets)
        self.control_configured = False  # whether the HTTP control endpoint's token was read
        self.realtime = Realtime(self)  # WebSocket sessions (realtime/)
        self.front = Front(self)  # vcr_front=direct (front/)

    def load(self, loader) -> None:
        # mitmproxy's own log lines quote the raw bytes of requests it cannot parse: from now
        # on they are shown without them (display.py), in every log handler there is.
        display.guard_logs()
        body_limit.install(self.refuse_large_body)
        tls_writes.install()
        front_listener.install(self.front)
        loader.add_option("vcr_mode", str, "once",
                          "once: replay an existing cassette, record a missing one; replay: "
                          "only from disk, a miss is an error; record: always upstream, the "
                          "cassette rewritten; new-episodes: replay what matches, record and "
                          "append what does not; passthrough: neither.")
        loader.add_option("vcr_dir", str, "recordings", "Folder that holds the cassettes.")
        loader.add_option("vcr_cassette", str, "default",
                          "Cassette for requests without an X-Vcr-Cassette header (a name "
                          "relative to vcr_dir; .yaml is added).")
        loader.add_option("vcr_hosts", str, "",
                          "Comma-separated hosts to record (shell patterns like *.openai.azure.com): "
                          "+host adds to the default LLM APIs, host replaces them. Hosts named in "
                          "a cassette under vcr_dir are recorded and replayed too; other hosts pass "
                          "through untouched, except in replay mode.")
        loader.add_option("vcr_passthrough_hosts", str, "",
                          "Comma-separated hosts (shell patterns) that reach the network untouched "
                          "in every mode, replay included; no other host does in replay mode.")
        loader.add_option("vcr_headers", str, "minimal",
                          "Headers to record: minimal (request Accept, Content-Type, User-Agent; "
                          "response Content-Type, X-Amzn-Errortype, X-Should-Retry) or all. "
                          "Credentials are never recorded.")
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
        loader.add_option("vcr_max_body", int, DEFAULT_MAX_BODY,
                          "Largest body, in bytes, decoded: a larger response still reaches the "
                          "client whole, and is not recorded; a larger request to a host recorded "
                          "or replayed is refused with a 413 as it arrives, never held in memory.")
        loader.add_option("vcr_control_socket", str, "",
                          "Also answer the control calls on this Unix socket, one JSON line each "
                          "(for test runners; only the socket's owner can connect).")
        loader.add_option("vcr_control_http", bool, True,
                          "Answer the control calls at http://vcr-proxy.control/ (requests carry "
                          "X-Vcr-Control: <token>); false: only on vcr_control_socket, and a "
                          "request to the control host is answered 404 (the pytest plugin's "
                          "setting).")
        loader.add_option("vcr_control_token", str, "",
                          "The secret HTTP control requests carry in X-Vcr-Control (16 characters "
                          f"or more). Empty: {TOKEN_VARIABLE} if set, else the token kept in "
                          "<confdir>/vcr-proxy-control-token (made on first use, mode 0600; "
                          "`vcr-proxy env` exports it). Given here, it shows in the process list.")
        loader.add_option("vcr_parent_pid", int, 0,
                          "Stop once this process, the proxy's parent, has ended (the pytest "
                          "plugin gives its own: a test run killed by SIGTERM or SIGKILL leaves "
                          "no proxy behind); 0: never.")
        loader.add_option("vcr_workers", int, 1,
                          "Replay processes sharing the proxy's port (`vcr-proxy start --workers`, "
                          "which sets it). Each keeps its own selections, so with more than one "
                          "the control endpoint refuses selections: X-Vcr-Cassette selects per "
                          "request.")
        loader.add_option("vcr_front", str, "mitmproxy",
                          "What serves connections in replay mode: mitmproxy (every protocol, "
                          "other addons' hooks, flows shown) or direct (HTTPS to the hosts "
                          "replayed, over HTTP/1.1, answered without mitmproxy's layers: for load "
                          "tests, several times the new connections a core holds; WebSockets, "
                          "HTTP/2 and everything else still go to mitmproxy).")
        loader.add_option("vcr_allow_repeats", bool, False,
                          "Once every matching interaction has been replayed, serve the last "
                          "one again instead of answering with a miss.")
        loader.add_option("vcr_normalize", str, "",
                          "Regular expressions, one per line, whose matches in a request body count "
                          "as equal on both sides when matching (a date in a system prompt, a uuid "
                          "in a tool argument); the OpenAI Agents SDK's per-run prompt_cache_key is "
                          "always normalised.")
        loader.add_option("vcr_telemetry", str, "",
                          "Endpoints SDKs send telemetry to on their own (host/path patterns): "
                          "never recorded, answered here with a success where cassettes are "
                          "replayed. +host/path adds to the defaults (the OpenAI Agents SDK's "
                          "traces, LangSmith, Langfuse), host/path replaces them, none: no such "
                          "endpoints.")

    def configure(self, updated: set[str]) -> None:
        # Options set below (listen_host...) call configure again from inside this one.
        self.configuring += 1
        try:
            self._configure(updated)
        except exceptions.OptionsError as error:
            if self.configured or not LOADED_AS_SCRIPT:
                raise
            # mitmdump prints what a script's first configure raises with a traceback
            # (addons/script.py's script_error_handler): the one line instead, once (the
            # outermost call meets the same error). An error logged while it starts makes
            # mitmdump exit with status 1 (its errorcheck addon).
            if self.configuring == 1:
                log.error(f"vcr-proxy: {error}")
            return
        finally:
            self.configuring -= 1
        if not self.configuring:
            self.configured = True
            if self.loopback_forced and self.rebinding is None:
                # Not before the options are known good: mitmdump exits at once on a bad one,
                # and a server start then still under way can crash its exit (mitmproxy_rs's UDP).
                self._rebind_to_loopback_soon()

    def _configure(self, updated: set[str]) -> None:
        options = ctx.options
        # Listen on loopback unless told otherwise (mitmproxy's own default is every interface),
        # first of all: a bad option below still leaves mitmdump starting up for a moment.
        if not options.listen_host:
            self.loopback_forced = True  # client_connected refuses what arrives elsewhere
            options.listen_host = LOOPBACK
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
            try:
                parts = urlsplit(options.vcr_upstream)
                parts.port  # noqa: B018  (raises ValueError for a port out of range)
            except ValueError:  # 'https://[::1': an unclosed bracket
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise exceptions.OptionsError(f"vcr_upstream: {options.vcr_upstream!r} is not "
                                              "an http(s) URL like https://127.0.0.1:8443")
        if "vcr_dir" in updated and os.path.exists(options.vcr_dir) and not os.path.isdir(options.vcr_dir):
            raise exceptions.OptionsError(f"vcr_dir: {options.vcr_dir} is not a folder; give the "
                                          "folder that holds the cassettes (made if missing)")
        try:
            cassette_path(Path(options.vcr_dir), options.vcr_cassette)
        except ValueError as error:
            raise exceptions.OptionsError(f"vcr_cassette: {error}") from None
        if options.vcr_front not in FRONTS:
            raise exceptions.OptionsError(f"vcr_front: {options.vcr_front!r} is not one of "
                                          f"{', '.join(FRONTS)}")
        if options.vcr_timing not in TIMINGS:
            raise exceptions.OptionsError(f"vcr_timing: {options.vcr_timing!r} is not one of "
                                          f"{', '.join(TIMINGS)}")
        try:
            self.speed = float(options.vcr_speed)
        except ValueError:
            self.speed = 0.0
        if "vcr_control_socket" in updated and options.vcr_control_socket:
            problem = control_socket_problem(options.vcr_control_socket)
            if problem:
                raise exceptions.OptionsError(f"vcr_control_socket: {problem}")
        if {"vcr_control_http", "vcr_control_token", "confdir"} & updated:
            self._serve_control_http(options)
        if options.vcr_max_body < 1:
            raise exceptions.OptionsError(f"vcr_max_body: {options.vcr_max_body} is not a size in "
                                          "bytes above 0")
        if not 0 < self.speed < float("inf"):
            raise exceptions.OptionsError(f"vcr_speed: {options.vcr_speed!r} is not a number above 0")
        try:
            self.matcher = Matcher(MatchRules.parse(options.vcr_match, options.vcr_ignore_fields,
                                                    options.vcr_allow_repeats, options.vcr_normalize))
        except ValueError as error:
            raise exceptions.OptionsError(f"vcr_match: {error}") from None
        try:
            self.telemetry = parse_endpoints(options.vcr_telemetry)
        except ValueError as error:
            raise exceptions.OptionsError(f"vcr_telemetry: {error}") from None
        if options.allow_hosts or options.ignore_hosts or options.tcp_hosts:
            # mitmproxy would tunnel what these name, in replay mode too: one rule decides.
            raise exceptions.OptionsError(
                "allow_hosts/ignore_hosts/tcp_hosts: vcr-proxy decides which hosts are intercepted; "
                "use vcr_hosts (hosts to record) and vcr_passthrough_hosts (hosts never touched)")
        # Checked in every configure: `mode` may change at runtime, and so may the mode of a
        # control selection (self.mode).
        if self.mode == "replay":
            problem = replay_mode_problem(options.mode)
            if problem:
                raise exceptions.OptionsError(f"mode: {problem}")
        if options.stream_large_bodies:
            # mitmproxy would send a large request upstream before it is matched or recorded,
            # in replay mode too. Responses need no option: streams already pass through live.
            raise exceptions.OptionsError(
                "stream_large_bodies: vcr-proxy reads requests whole to match and record them; "
                "streamed responses reach the client live without this option")
        if options.proxy_debug:
            # mitmproxy logs each connection's bytes as they arrive, before any hook could
            # scrub them: Authorization headers and keys in bodies would reach the log.
            raise exceptions.OptionsError(
                "proxy_debug: mitmproxy would log every byte clients send, credentials included; "
                "vcr-proxy refuses it (termlog_verbosity=debug and flow_detail show scrubbed flows)")
        # An intercepted connection that does not speak HTTP would otherwise be relayed raw to
        # its target (mitmproxy's rawtcp), in replay mode too; it fails instead.
        if options.rawtcp:
            options.rawtcp = False
        if {"vcr_hosts", "vcr_passthrough_hosts", "vcr_dir"} & updated:
            self.routes = Routes(HostPatterns(parse_hosts(options.vcr_hosts)),
                                 HostPatterns(parse_hosts(options.vcr_passthrough_hosts, ())),
                                 CassetteHosts(Path(options.vcr_dir)))
        self.paths.clear()
        if {"vcr_dir", "vcr_mode", "vcr_layout"} & updated:
            self.recorder.forget()
            self.replays.clear()
            self.decisions.clear()
            self.realtime.forget()
        if {"vcr_mode", "vcr_hosts", "vcr_passthrough_hosts", "vcr_dir"} & updated:
            # Connections relayed untouched under the old settings must not outlive them
            # (nothing here to wait for: the closing starts now, before any later request).
            self.close_stale_relays()
        # Connect upstream only when a request needs it: a rerouted or offline host must not
        # be dialled just because a client opened a tunnel to it.
        if options.connection_strategy != "lazy":
            options.connection_strategy = "lazy"

    def _serve_control_http(self, options) -> None:
        # Any local user can connect to the proxy's port: the HTTP endpoint answers only the
        # holder of a token its owner alone can read (control_token.py).
        try:
            if not options.vcr_control_http:
                self.control.serve_http(None)
            elif chosen := chosen_token(options.vcr_control_token):
                self.control.serve_http(*chosen)
            else:
                confdir = Path(options.confdir).expanduser()
                self.control.serve_http(load_token(confdir), token_path(confdir))
        except TokenError as error:
            raise exceptions.OptionsError(f"vcr_control_token: {error}") from None
        self.control_configured = True

    @property
    def mode(self) -> str:
        return self.session.mode or ctx.options.vcr_mode

    @property
    def folder(self) -> str:
        return ctx.options.vcr_dir

    def report(self) -> dict:
        return self.session.report(ctx.options.vcr_cassette, ctx.options.vcr_mode)

    @staticmethod
    def workers() -> int:
        return ctx.options.vcr_workers

    @staticmethod
    def replay_problem() -> str | None:
        """Why this proxy cannot switch to replay mode (its mitmproxy modes), or None."""
        return replay_mode_problem(ctx.options.mode)

    def matcher_for(self, rules: dict[str, str]) -> Matcher:
        """A selection's own match rules (control.parse_match_fields): `match` replaces
        vcr_match; `ignore_fields` and `normalize` add to the options'. ValueError if invalid."""
        options = ctx.options
        return Matcher(MatchRules.parse(
            rules.get("match") or options.vcr_match,
            ",".join(filter(None, (options.vcr_ignore_fields, rules.get("ignore_fields")))),
            options.vcr_allow_repeats,
            "\n".join(filter(None, (options.vcr_normalize, rules.get("normalize"))))))

    def cassette_for(self, name: str) -> Path:
        """The checked path of cassette `name`, remembered: requests name the same few."""
        path = self.paths.get(name)
        if path is None:
            path = self.paths[name] = cassette_path(Path(ctx.options.vcr_dir), name)
        return path

    def forget(self, path: Path) -> None:
        """Start cassette `path` over: its once-decision, writer and replay state are redone."""
        self.decisions.pop(path, None)
        self.recorder.forget(path)
        self.replays.pop(path, None)
        self.loading.pop(path, None)  # a read ahead still running fills what was forgotten
        self.realtime.forget(path)

    async def running(self) -> None:
        # Flows need scrubbing for display only where something shows or saves them (mitmdump's
        # flow printer, save_stream_file, hardump, mitmweb's view); `vcr-proxy start`'s lean
        # mitmproxy has none of them.
        display.guard_logs()  # handlers added since load (none with mitmproxy 12: cheap)
        self.flows_shown = any(ctx.master.addons.get(name) is not None
                               for name in ("dumper", "save", "savehar", "view"))
        if self.flows_shown:
            display.guard(ctx.master)
        await self.realtime.running()
        collector.settle()
        if not self.control_configured:
            # `vcr-proxy start` adds the addon to options already made, so configure() heard only
            # of the options it set: the token is read now, once all of them are.
            try:
                self._serve_control_http(ctx.options)
            except exceptions.OptionsError as error:
                log.error(f"vcr-proxy: {error}")
                self.failed_to_start = True
                ctx.master.shutdown()
                return
        if ctx.options.vcr_control_socket:
            await self._serve_control_socket(ctx.options.vcr_control_socket)
        if ctx.options.vcr_parent_pid and self.parent_watch is None:
            self.parent_watch = asyncio.create_task(self._exit_with_parent(ctx.options.vcr_parent_pid))

    @staticmethod
    async def _exit_with_parent(parent: int) -> None:
        # A parent killed without a chance to stop its child (SIGTERM's default action, SIGKILL,
        # a crash) leaves it reparented: its ppid changes (checked rather than kill(pid, 0),
        # which a reused pid would fool). Polled, since no signal tells of it portably; stopping
        # this way saves what is being recorded, as Ctrl-C does.
        while os.getppid() == parent:
            await asyncio.sleep(0.25)
        log.warning("vcr-proxy: the process that started it has ended; stopping")
        ctx.master.shutdown()

    async def _serve_control_socket(self, path: str) -> None:
        try:
            self.control_server = await self.control.serve_socket(path)
        except OSError as error:
            log.error(f"vcr-proxy: vcr_control_socket: cannot listen on {path}: "
                      f"{error.strerror or error}; give a path in a folder you own")
            self.failed_to_start = True
            ctx.master.shutdown()

    # -- listening on loopback only --
    #
    # `mitmdump -s proxy_addon/addon.py` starts its servers before it loads the script: when the
    # script's configure() sets listen_host, the server's start has already read the empty one
    # (every interface) and is waiting for getaddrinfo to bind it; nothing in mitmproxy's API
    # reaches that start, so a script cannot make mitmdump bind once on loopback. Instead the
    # addon starts the servers again on loopback as soon as that start is over (waiting on the
    # servers' own lock), and meanwhile refuses, unanswered, every client connection that
    # arrives on another local address (client_connected), and closes any accepted before the
    # script loaded (none with mitmdump 12, which loads it before the bind completes).

    def _rebind_to_loopback_soon(self) -> None:
        master = getattr(ctx, "master", None)
        proxyserver = master.addons.get("proxyserver") if master is not None else None
        if proxyserver is None or not (proxyserver.servers.is_updating or len(proxyserver.servers)):
            return  # no server yet: the first start reads listen_host as set now
        self._close_outside_loopback(proxyserver)
        self.rebinding = asyncio.ensure_future(self._rebind_to_loopback(proxyserver))

    async def _rebind_to_loopback(self, proxyserver) -> None:
        modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
        # Waits for a start under way (it holds the servers' lock), and changes nothing itself:
        # the modes are those being started.
        await proxyserver.servers.update(modes)
        if any(address[0] in ("", "0.0.0.0", "::") for address in proxyserver.listen_addrs()):
            await proxyserver.servers.update([])
            await proxyserver.servers.update(modes)
        self._close_outside_loopback(proxyserver)

    def _close_outside_loopback(self, proxyserver) -> None:
        """Close the client connections, already accepted, that came in on an address other
        than loopback while listen_host was forced to it."""
        for handler in list(proxyserver.connections.values()):
            client = handler.client
            if self._outside_loopback(client):
                self._refuse(client)
                io = handler.transports.get(client)
                if io is not None and io.writer is not None:
                    io.writer.close()

    def _outside_loopback(self, client: connection.Client) -> bool:
        return self.outside_loopback(client.sockname, client.proxy_mode)

    def outside_loopback(self, sockname, mode: mode_specs.ProxyMode) -> bool:
        """Whether a client reached (on `sockname`) a server that listened beyond loopback only
        because listen_host was not yet forced to it when the server started."""
        if not self.loopback_forced or not sockname:
            return False
        if mode.custom_listen_host is not None or isinstance(mode, ADDRESSED_ELSEWHERE):
            return False  # an address given in the mode, or a sockname that is no listener's
        return str(sockname[0]).removeprefix("::ffff:") != LOOPBACK

    def client_connected(self, client: connection.Client) -> None:
        if self._outside_loopback(client):
            self._refuse(client)  # the error makes mitmproxy close it before reading from it

    @staticmethod
    def _refuse(client: connection.Client) -> None:
        client.error = f"vcr-proxy: the proxy listens on {LOOPBACK} only"
        log.warning(f"vcr-proxy: refused a connection to {format_address(client.sockname)}: the "
                    f"proxy listens on {LOOPBACK} only (set listen_host to listen elsewhere)")

    async def done(self) -> None:
        await self.recorder.settle(5.0)  # Ctrl-C: let the exchanges that are ending be saved
        # Then end the client connections still open (a tunnel, a keep-alive client): left to
        # the event loop's end, each is cancelled there, which `mitmdump -s` (its exception
        # handler gone by then) prints as a traceback on Ctrl-C.
        self.front.close_all()
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is not None:
            closing = []
            for client in list(proxyserver.connections):
                closing += close_client_connection(client)
            if closing:
                await wait_closed(closing)
        save = ctx.master.addons.get("save")
        if save is not None:  # it writes the flows still in flight when it stops: scrubbed too
            for flow in list(save.active_flows):
                if isinstance(flow, http.HTTPFlow):
                    hide_credentials(flow)
        await self.realtime.done()
        if self.control_server is not None:
            self.control_server.close()
            Path(ctx.options.vcr_control_socket).unlink(missing_ok=True)
        failures = self.recorder.failures
        if failures:
            log.error(f"vcr-proxy: {len(failures)} interaction(s) could not be saved:")
            for message in failures:
                log.error(f"vcr-proxy:   {message}")

    # -- routing --

    def next_layer(self, nextlayer) -> None:
        """A tunnel (CONNECT) to a host this proxy does not handle is passed on untouched, so
        its certificate needs no trust in mitmproxy's CA; any other is opened up. In replay
        mode UDP is closed, and so is an opened-up connection mitmproxy would relay raw (DNS on
        port 53): nothing answers them from a cassette."""
        context = nextlayer.context
        if context.client.transport_protocol == "udp" and self.mode == "replay":
            # Local mode carries UDP (DNS, QUIC) and reverse:https listens for QUIC too; relayed,
            # it would reach the network.
            log.info(f"vcr-proxy: closed UDP from {format_address(context.client.peername)} to "
                     f"{format_address(context.server.address)}: replay mode answers HTTP(S) over "
                     "TCP only")
            nextlayer.layer = Closed(context)
            return
        address = context.server.address
        mode = self.mode
        if (address is not None and not context.client.tls_established
                and not self.routes.intercepts(address[0], mode)):
            nextlayer.layer = layers.TCPLayer(context, ignore=True)
            # Relayed byte for byte from now on, whatever the mode becomes: remembered, so that
            # a switch to a mode that would answer this host closes it (relays.py).
            client = context.client.id
            self.relays.opened(client, Relay(client, TUNNEL, address[0], address[1], mode))
            return
        decider = ctx.master.addons.get("nextlayer")
        if nextlayer.layer is None and decider is not None:
            # mitmproxy's own choice, made now to be checked here: `mitmdump -s` calls its
            # scripts before its next_layer addon (`vcr-proxy start`, after). Made, it stands:
            # that addon never overrides a layer already chosen.
            decider.next_layer(nextlayer)
        if isinstance(nextlayer.layer, RAW_LAYERS):
            # An opened-up connection that mitmproxy's own choice relays past the request hook:
            # DNS for any target on port 53 or 5353, inside a tunnel or its TLS too; raw TCP or
            # UDP for what its options name.
            host, port = address or ("", 0)
            if mode == "replay":
                log.info(f"vcr-proxy: closed {type(nextlayer.layer).__name__} traffic from "
                         f"{format_address(context.client.peername)} to {format_address(address)}: "
                         "replay mode answers HTTP(S) only")
                nextlayer.layer = Closed(context)
                return
            # Relayed as it is in this mode: a switch to replay closes it (relays.py).
            self.relays.opened(context.client.id, Relay(context.client.id, RAW, host, port, mode))

    def client_disconnected(self, client) -> None:
        if self.relays:
            self.relays.client_gone(client.id)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        # A WebSocket the proxy let through (one it answers itself never starts): relayed
        # message by message from now on, whatever the mode becomes.
        if self.realtime.start(flow):
            return  # played by the in-process player: nothing relayed
        host, port = flow.metadata.get("vcr_target") or (flow.request.host, flow.request.port)
        self.relays.opened(flow.id, Relay(flow.client_conn.id, WEBSOCKET, host, port, self.mode))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self.realtime.message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.relays.closed(flow.id)
        self.realtime.end(flow)

    def close_stale_relays(self) -> list:
        """Close the connections relayed untouched that the current mode and hosts would not
        let through (relays.py); returns what wait_closed() waits for."""
        if not self.relays:
            return []
        closing = []
        for relay in self.relays.stale(self.routes, self.mode):
            log.info(f"vcr-proxy: closed a {relay.shown()}: {self.mode} mode would not let "
                     f"{relay.host} through untouched (the client reconnects, and is routed anew)")
            closing += close_client_connection(relay.client)
        return closing

    async def close_stale_relays_and_wait(self) -> None:
        closing = self.close_stale_relays()
        if closing:
            await wait_closed(closing)

    def request(self, flow: http.HTTPFlow):
        if flow.response is not None:
            return None
        if (len(flow.request.raw_content or b"") >= OFF_LOOP_BODY
                and self.routes.handles(flow.request.host, self.mode)):
            if self.mode != "record" or coded(flow.request):
                return self._route_large(flow)
            # Recorded whatever it holds, and nothing to decode (nor to refuse for that): its
            # view is made in a thread while the request goes upstream, not before.
            view_later(flow)
        try:
            result = self._route(flow)
        except Exception as error:
            self._internal_error(flow, error)
            return None
        return None if result is None else self._guarded(flow, result)

    async def _route_large(self, flow: http.HTTPFlow) -> None:
        # Decoding and scrubbing a large body take time (RE2 lets other threads run while it
        # scans): done in a thread, so that every other client is answered meanwhile.
        await read_off_loop(prepare_request_view, flow)
        try:
            result = self._route(flow)
        except Exception as error:
            self._internal_error(flow, error)
            return
        if result is not None:
            await self._guarded(flow, result)

    def _route(self, flow: http.HTTPFlow):
        request = flow.request
        # The connection's target (the CONNECT authority, or an absolute URL's host) decides:
        # the bytes go there, whatever the Host header says.
        if normalize_host(request.host) == CONTROL_HOST:
            return self.control.answer(flow)
        problem = host_mismatch(request.host, request.port, request.scheme, request.host_header,
                                flow.client_conn.sni)
        if problem:
            problem = scrub_line(problem)  # it quotes the Host header and the SNI as sent
            log.error(f"vcr-proxy: refused {request.method} {scrub_line(request.pretty_url)}: {problem}")
            flow.response = error_response(400, f"vcr-proxy: {problem}; the request was not forwarded")
            return None
        mode = self.mode
        fault_text = request.headers.pop(FAULT_HEADER, None)  # never forwarded nor recorded
        # A client that sends the control token with every request (a session's default
        # headers) must not hand it to an API or a passthrough host: it steers this proxy.
        request.headers.pop(CONTROL_HEADER, None)
        if not self.routes.handles(request.host, mode):
            return None
        try:
            flow.metadata["vcr_fault"] = parse_fault(fault_text) if fault_text else self.session.fault
        except ValueError as error:
            # The header's value is quoted: a client's odd header may hold anything.
            message = scrub_line(str(error))
            flow.response = error_response(400, f"vcr-proxy: {FAULT_HEADER}: {message}")
            return None
        if is_websocket_upgrade(request.headers):
            return self._websocket(flow, mode)
        name = request.headers.pop(CASSETTE_HEADER, None) or self.session.cassette or ctx.options.vcr_cassette
        if telemetry_endpoint(self.telemetry, request.host, request.path) is not None:
            return self._telemetry(flow, name, mode)
        try:
            if "vcr_view_later" not in flow.metadata:
                request_view(flow)
        except DecodeError as error:
            # What cannot be decoded cannot be scrubbed, matched nor recorded: never forwarded.
            status = 413 if isinstance(error, BodyTooLarge) else 400
            shown = f"{request.method} {scrub_line(request.pretty_url)}"
            log.error(f"vcr-proxy: refused {shown}: {error}")
            flow.response = error_response(status, f"vcr-proxy: refused {shown}: {error}")
            return None
        try:
            path = self.cassette_for(name)
        except ValueError as error:
            message = scrub_line(str(error))  # it quotes the header's value
            flow.response = error_response(400, f"vcr-proxy: {CASSETTE_HEADER}: {message}")
            return None
        return self._dispatch(flow, path, mode)

    def refuse_large_body(self, flow: http.HTTPFlow, size: int) -> http.Response | None:
        """The 413 for a request body of `size` bytes (so far) past vcr_max_body, if the
        request is one vcr-proxy answers or records (body_limit.py); None to let it through."""
        limit = ctx.options.vcr_max_body
        request = flow.request
        if (size <= limit or normalize_host(request.host) == CONTROL_HOST
                or not self.routes.handles(request.host, self.mode)):
            return None
        shown = f"{request.method} {scrub_line(request.pretty_url)}"
        message = (f"vcr-proxy: refused {shown}: its body ({size:,} bytes or more) is larger than "
                   f"vcr_max_body ({limit:,} bytes); raise vcr_max_body to record or replay it")
        log.error(message)
        return flow_error(flow, 413, message)

    def _telemetry(self, flow: http.HTTPFlow, name: str, mode: str) -> None:
        """An SDK's own telemetry (telemetry.py): never recorded; answered here wherever the
        cassette is replayed, passed on (to vcr_upstream, if set) wherever it is recorded."""
        if mode == "once":  # replayed or recorded, as once decided for the cassette (or will)
            try:
                path = self.cassette_for(name)
                mode = self.decisions.get(path) or ("replay" if path.exists() else "record")
            except ValueError:
                mode = "replay"
        if mode == "replay":
            flow.response = json_response(200, {})
        elif mode != "passthrough" and ctx.options.vcr_upstream:
            reroute(flow, ctx.options.vcr_upstream)

    def _websocket(self, flow: http.HTTPFlow, mode: str):
        """A WebSocket (OpenAI Realtime, Gemini Live): recorded beside the cassette or
        replayed from it (realtime/)."""
        return self.realtime.upgrade(flow, mode)

    # Each step answers at once when it can (the hot paths stay synchronous) and returns a
    # coroutine for mitmproxy to await when it must touch the disk or wait.

    def _dispatch(self, flow: http.HTTPFlow, path: Path, mode: str):
        if mode == "once":
            decision = self.decisions.get(path)
            if decision is None:
                return self._decide(flow, path)
            mode = decision
        if mode == "record":
            writer = self.recorder.writers.get(path)
            if writer is None:
                return self._record(flow, path, fresh=True)
            self._begin_recording(flow, writer)
            return None
        replay = self.replays.get(path)
        if replay is None or replay.needs_refresh():
            return self._refresh(flow, path, mode)
        return self._replay(flow, replay, mode)

    def preload(self, path: Path) -> None:
        """Read cassette `path` now, in a thread, for the requests to come: a test runner
        selects a test's cassette before the test builds its client and connects, time in
        which the first request would otherwise wait for the file to load."""
        if self.mode in ("record", "passthrough") or path in self.loading:
            return
        task = asyncio.ensure_future(self._read_ahead(path))
        self.loading[path] = task
        task.add_done_callback(lambda done: self.loading.get(path) is done and self.loading.pop(path))

    async def _read_ahead(self, path: Path) -> None:
        # Only the file is read (a missing one leaves nothing loaded): once mode's choice
        # between replaying and recording stays with the first request (_decide), which a
        # cassette put in place after the selection (by a fixture, say) must still find; decided
        # here, it was recorded over.
        try:
            replay = self.replays.setdefault(path, ReplayCassette(path))
            await read_off_loop(replay.refresh)
        except Exception:  # the first request reads it again, and answers what went wrong
            log.debug(f"vcr-proxy: reading {path} ahead failed", exc_info=True)

    async def read_ahead_done(self, path: Path) -> None:
        loading = self.loading.get(path)
        if loading is not None:
            await loading

    async def _decide(self, flow: http.HTTPFlow, path: Path) -> None:
        await self.read_ahead_done(path)
        if path not in self.decisions:
            exists = await read_off_loop(path.exists)
            self.decisions[path] = "replay" if exists else "record"
        await self._finish(self._dispatch(flow, path, self.decisions[path]))

    async def _refresh(self, flow: http.HTTPFlow, path: Path, mode: str) -> None:
        await self.read_ahead_done(path)
        replay = self.replays.get(path)
        if replay is None:
            replay = self.replays[path] = ReplayCassette(path)
        if replay.needs_refresh():
            await read_off_loop(replay.refresh)
        await self._finish(self._replay(flow, replay, mode))

    def _replay(self, flow: http.HTTPFlow, replay: ReplayCassette, mode: str):
        fault = active_fault(flow) if mode != "new-episodes" else None
        if fault is not None and fault.status:
            return self.player.fail(flow, fault)
        matcher = self.session.matcher or self.matcher  # a selection may bring its own rules
        incoming = incoming_request(request_view(flow), ctx.options.vcr_headers
                                    if "headers" in matcher.rules.parts else None)
        if len(incoming.body) >= OFF_LOOP_BODY:
            return self._replay_large(flow, replay, mode, matcher, incoming, fault)
        interaction, matched = replay.find(matcher, incoming)
        return self._replayed(flow, replay, mode, matcher, incoming, fault, interaction, matched)

    async def _replay_large(self, flow, replay, mode, matcher, incoming, fault) -> None:
        # Comparing a large body (and naming the nearest recording on a miss) in a thread: the
        # loop goes on answering every other client meanwhile.
        interaction, matched = await read_off_loop(replay.find, matcher, incoming)
        if interaction is None and mode != "new-episodes" and not matched and replay.cassette:
            await read_off_loop(matcher.nearest, replay.cassette.interactions, incoming)
        await self._finish(self._replayed(flow, replay, mode, matcher, incoming, fault,
                                          interaction, matched))

    def _replayed(self, flow, replay, mode, matcher, incoming, fault, interaction, matched):
        if interaction is not None:
            self.session.replayed.append(interaction.id)
            self.session.replayed_from.append(f"{replay.path}#{interaction.id}")
            if ctx.options.vcr_log_replays:
                log.info(f"replayed {incoming.method} {incoming.url} -> "
                         f"{interaction.response.code} from {replay.path}#{interaction.id}")
            return self.player.serve(flow, replay, interaction, ctx.options.vcr_timing, self.speed,
                                     fault)
        if mode == "new-episodes":
            return self._record(flow, replay.path, fresh=False)
        self.session.misses.append(self.player.miss(flow, replay, matcher, incoming, matched))
        self.session.miss_messages.append(flow.metadata["vcr_miss"])
        self.control.notify("miss")  # before the client has its answer
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
        shown = scrub_line(f"{flow.request.method} {flow.request.pretty_url}")
        log.exception(f"vcr-proxy: internal error on {shown}")
        flow.response = error_response(500, f"vcr-proxy: internal error: {scrub_line(repr(error))}")

    async def _record(self, flow: http.HTTPFlow, path: Path, fresh: bool) -> None:
        try:
            writer = await self.recorder.writer(path, LAYOUTS[ctx.options.vcr_layout], fresh)
        except CassetteError as error:
            log.error(f"vcr-proxy: {error}")
            flow.response = error_response(400, f"vcr-proxy: {error}")
            return
        self._begin_recording(flow, writer)

    def _begin_recording(self, flow: http.HTTPFlow, writer) -> None:
        if self.mode == "replay":
            # Switched to replay while this request waited for the disk (once mode's decision,
            # a cassette lock): it would be forwarded under a mode no longer in force.
            message = (f"vcr-proxy: {flow.request.method} {request_view(flow).url}: the proxy "
                       "switched to replay mode while this request waited to be recorded; it "
                       "was not forwarded")
            log.error(message)
            flow.response = flow_error(flow, 404, message)
            self.session.misses.append(f"{flow.request.method} {request_view(flow).url}")
            self.session.miss_messages.append(message)
            self.control.notify("miss")
            return
        # A test runner that heard of no recording (and no miss) knows, without asking, that
        # no save can fail for its test.
        self.control.notify("record")
        self.recorder.begin(flow, flow.metadata.get("vcr_view_later") or request_view(flow), writer,
                            ctx.options.vcr_upstream, ctx.options.vcr_max_body)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("vcr_replay"):
            flow.response.stream = True
            flow.response.headers.pop("Connection", None)
            return
        self.recorder.responseheaders(flow)

    def response(self, flow: http.HTTPFlow):
        if view_pending(flow):
            return self._once_viewed(flow, self.response)
        self.recorder.response(flow, ctx.options.vcr_headers)
        self.realtime.response(flow)  # a refused WebSocket upgrade is recorded
        self._after(flow)

    def error(self, flow: http.HTTPFlow):
        if view_pending(flow):
            return self._once_viewed(flow, self.error)
        self.recorder.error(flow, ctx.options.vcr_headers)
        self.realtime.error(flow)
        self._after(flow)

    @staticmethod
    async def _once_viewed(flow: http.HTTPFlow, hook) -> None:
        """`hook(flow)` once the request's view (view_later) is made: the upstream answered
        before it was."""
        try:
            await asyncio.wrap_future(flow.metadata["vcr_view_later"])
        except Exception:  # said where the view is asked for
            pass
        hook(flow)

    def _after(self, flow: http.HTTPFlow) -> None:
        if self.flows_shown:
            display.remember(flow, hide_credentials(flow))
        flow.metadata.pop("vcr_view", None)  # no serializer knows it (save_stream_file)
        flow.metadata.pop("vcr_view_error", None)
        flow.metadata.pop("vcr_view_later", None)
        collector.give_back(len(flow.request.raw_content or b"")
                            + len(flow.response.raw_content or b"") if flow.response else 0, flow)


OFF_LOOP_BODY = 1 << 20  # request bodies this large are decoded and scrubbed off the event loop


def prepare_request_view(flow: http.HTTPFlow) -> None:
    """request_view(flow) made ahead, in a thread; what it raises is raised when asked for."""
    try:
        request_view(flow)
    except DecodeError as error:
        flow.metadata["vcr_view_error"] = error
    except Exception:  # raised again, where it is handled, when _route asks for the view
        pass


def coded(request: http.Request) -> bool:
    """Whether a request's body was sent with a Content-Encoding to undo (view_request)."""
    return any(coding.strip().lower() not in ("", "identity")
               for value in request.headers.get_all("content-encoding")
               for coding in value.split(","))


def view_later(flow: http.HTTPFlow) -> None:
    """Start making request_view(flow) in a thread, from the request as it is now (before it is
    rerouted), while it goes on; request_view(flow) waits for it, the hooks await it."""
    request = flow.request
    flow.metadata["vcr_view_later"] = start_off_loop(
        view_request, request.method, request.pretty_url, list(request.headers.items(multi=True)),
        request.raw_content or b"", ctx.options.vcr_max_body,
        list(request.trailers.items(multi=True)) if request.trailers else ())


def view_pending(flow: http.HTTPFlow) -> bool:
    later = flow.metadata.get("vcr_view_later")
    return later is not None and not later.done()


def request_view(flow: http.HTTPFlow) -> RequestView:
    """The flow's request as everything but the upstream sees it (request_view.py), made once."""
    view = flow.metadata.get("vcr_view")
    if view is None:
        if "vcr_view_error" in flow.metadata:
            raise flow.metadata["vcr_view_error"]
        if "vcr_view_later" in flow.metadata:
            view = flow.metadata["vcr_view"] = flow.metadata["vcr_view_later"].result()
            return view
        request = flow.request
        view = view_request(request.method, request.pretty_url, request.headers.items(multi=True),
                            request.raw_content or b"", ctx.options.vcr_max_body,
                            request.trailers.items(multi=True) if request.trailers else ())
        flow.metadata["vcr_view"] = view
    return view


def hide_credentials(flow: http.HTTPFlow) -> Secrets:
    """Once a request is sent, its flow holds the scrubbed view instead, so that what mitmproxy
    prints or saves of it (mitmdump's flow lines at every flow_detail, save_stream_file) holds no
    credential either: the URL, every header, and the body, decoded. The response is left alone:
    the client has yet to receive it, as the upstream sent it (display.py shows a scrubbed
    copy of it). Returns the request's credentials."""
    request = flow.request
    try:
        view = request_view(flow)
        secrets, body = view.secrets, view.body
    except DecodeError as error:  # too large or broken to scrub (refused if it was ours to handle)
        trailers = request.trailers.items(multi=True) if request.trailers else []
        secrets = request_secrets([*request.headers.items(multi=True), *trailers],
                                  request.pretty_url, b"", "")
        body = f"<body not shown: {error}>".encode()
    # Each part is set only where it changes: this runs for every flow mitmdump shows, and a
    # replayed request is mostly shown as it came.
    path = scrub_line(request.path, secrets)
    if path != request.path:
        request.path = path
    sent = list(request.headers.items(multi=True))
    # The body shown is the view's (decoded, scrubbed): no coding, and a length of its own (a
    # Content-Length as sent may be anything, a key glued to a digit included).
    shown = [(n, v) for n, v in scrub_headers(sent, secrets)
             if n.lower() not in ("content-encoding", "content-length")]
    if body != (request.raw_content or b""):
        request.raw_content = bytes(body)
    if shown != sent:
        request.headers = http.Headers([(name.encode(), value.encode()) for name, value in shown])
    if request.trailers:  # HTTP/2 headers sent after the body: printed and saved as well
        request.trailers = http.Headers([
            (name.encode(), value.encode())
            for name, value in scrub_headers(request.trailers.items(multi=True), secrets)])
    return secrets


addons = [VcrProxy()]
