"""The control endpoint: test runners steer the proxy through requests to a reserved host.

    POST http://vcr-proxy.control/cassette  {"name": "suite/test", "mode": "replay"}
        Following requests use this cassette (and mode) until the next selection or eject;
        optional "fault": "status=429;retry-after=2" for every replayed request of the
        selection. If a cassette was selected, the answer's "previous" is its eject report,
        so a test runner needs one round trip per test.
    POST http://vcr-proxy.control/report
        The selection's report so far (as eject answers it), the selection unchanged.
    POST http://vcr-proxy.control/eject
        Back to the configured cassette and mode; answers what was recorded, replayed, missed
        (with the miss messages), what could not be saved, and, in replay and once mode, the
        ids never replayed.
    GET  http://vcr-proxy.control/status

Every request carries the header `X-Vcr-Control: <token>`, the proxy's control token
(control_token.py): any local user can reach the proxy's port, only its owner can read the token.

The addon answers these itself; they never leave the proxy. With the option
`vcr_control_socket`, the same calls are also answered on that Unix socket, one JSON line each
(see ControlEndpoint._socket_client): a cheaper round trip for a test runner, and one only the
socket's owner can open. With `vcr_control_http=false` (the pytest plugin's setting) the socket
is the only way: a request to the control host is answered 404, and goes nowhere.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .background import read_off_loop
from .control_token import TOKEN_VARIABLE, token_matches
from .routing import CONTROL_HOST  # noqa: F401  (where test runners send these)

# Every control request carries it, with the control token: another local user cannot read the
# token, and a web page in a proxied browser cannot send a custom header cross-site without a
# CORS preflight, which the endpoint refuses.
CONTROL_HEADER = "X-Vcr-Control"


@dataclass
class Session:
    """What the control endpoint selected, and what happened since."""

    cassette: str | None = None
    mode: str | None = None
    recorded: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # interactions that could not be saved
    miss_messages: list[str] = field(default_factory=list)  # each miss's whole error
    replayed_from: list[str] = field(default_factory=list)  # "<cassette file>#<id>"
    fault: object = None  # a playback.Fault for the whole selection
    matcher: object = None  # a matchers.Matcher for the selection's own match rules

    def report(self, default_cassette: str, default_mode: str) -> dict:
        data = {f.name: list(value) if isinstance(value := getattr(self, f.name), list) else value
                for f in fields(self) if f.name != "matcher"}
        data["fault"] = getattr(self.fault, "text", None)
        data["cassette"] = self.cassette or default_cassette
        data["mode"] = self.mode or default_mode
        return data


class ControlError(ValueError):
    pass


def _error(status: int, message: str) -> dict:
    from .responses import error_payload

    return error_payload(status, message)


_EXAMPLE = '{"name": "suite/test", "mode": "once"}'
_FIELDS = ("name", "mode", "fault", "match", "ignore_fields", "normalize")
MATCH_FIELDS = ("match", "ignore_fields", "normalize")


def parse_selection(body: bytes, modes: tuple[str, ...]) -> tuple[str, str | None]:
    """The cassette name and mode (None: keep the configured mode) a POST /cassette asks for.

    Every malformed body is a ControlError whose text is one line saying what is expected
    (the addon answers it with a 400), never an exception from deeper down.
    """
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise ControlError(f"the body must be a JSON object like {_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ControlError(f"the body must be a JSON object like {_EXAMPLE}, "
                           f"not {_json_kind(data)}")
    unknown = sorted(key for key in data if key not in _FIELDS)
    if unknown:
        raise ControlError(f"unknown field {unknown[0]!r}; a selection has only "
                           f"{', '.join(repr(f) for f in _FIELDS)}, like {_EXAMPLE}")
    name, mode = data.get("name"), data.get("mode")
    if not isinstance(name, str) or not name.strip():
        raise ControlError("'name' (the cassette, relative to vcr_dir) is required and must be a "
                           f"non-empty string, like {_EXAMPLE}")
    if "\x00" in name:
        raise ControlError("'name' must not contain a NUL character")
    if mode is not None and (not isinstance(mode, str) or mode not in modes):
        raise ControlError(f"unknown mode {_short(mode)}; choose one of {', '.join(modes)}")
    return name, mode


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_match_fields(body: bytes) -> dict[str, str] | None:
    """The selection's own match rules, as option values (`match` and `ignore_fields` joined
    by commas, `normalize` by lines), or None; ControlError if one is not a string or a list of
    strings."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return None
    found = {}
    for key in MATCH_FIELDS:
        value = data.get(key) if isinstance(data, dict) else None
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ControlError(f"'{key}' must be a string or a list of strings")
        found[key] = ("\n" if key == "normalize" else ",").join(value)
    return found or None


def parse_fault_field(body: bytes):
    """The selection's optional "fault" (a playback.Fault), or None; ValueError if invalid."""
    from .playback import parse_fault

    try:
        fault = json.loads(body or b"{}").get("fault")
    except (ValueError, AttributeError):
        return None
    if fault is None or fault == "":
        return None
    if not isinstance(fault, str):
        raise ValueError("'fault' must be a string like \"status=429;retry-after=2\"")
    return parse_fault(fault)


class ControlEndpoint:
    """Answers control requests for `proxy` (the addon): select, report, eject, status.

    The same calls arrive two ways: as HTTP requests to CONTROL_HOST through the proxy, and as
    JSON lines on the optional Unix socket (`vcr_control_socket`), which a test runner on the
    same machine reaches without an HTTP exchange through mitmproxy.
    """

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.listeners: set[asyncio.StreamWriter] = set()  # the control socket's clients
        # What HTTP requests must carry (None: no HTTP endpoint), and where the token comes from,
        # for the refusal to say.
        self.token: str | None = None
        self.token_source: str | Path = ""

    def serve_http(self, token: str | None, source: str | Path = "") -> None:
        """Answer HTTP control requests that carry `token` (from `source`: the file it is kept
        in, or the option or variable that gave it); None: answer none of them."""
        self.token, self.token_source = token, source

    def notify(self, event: str) -> None:
        """Tell the control socket's clients that `event` ("miss", "record") happened, ahead
        of any answer the proxy gives a client about it: a test runner that heard of neither
        knows, without asking, that its test has nothing to report."""
        line = json.dumps({"event": event}).encode() + b"\n"
        for writer in self.listeners:
            if not writer.is_closing():
                writer.write(line)

    def answer(self, flow):
        """The HTTP way: answers `flow`, at once or in the coroutine returned."""
        from .responses import error_response

        if self.token is None:
            flow.response = error_response(404, "vcr-proxy control: this proxy serves no HTTP control "
                                                "endpoint (vcr_control_http=false); whoever started "
                                                "it steers it through its control socket")
            return None
        if (flow.request.method == "OPTIONS"
                or not token_matches(flow.request.headers.get(CONTROL_HEADER), self.token)):
            flow.response = error_response(403, f"vcr-proxy control: requests must carry the header "
                                                f"{CONTROL_HEADER}: <token>, {self._where()}; "
                                                "browsers' preflights are refused")
            return None
        path = flow.request.path.split("?", 1)[0]
        return self._answer_flow(flow, self.call(flow.request.method, path,
                                                 flow.request.raw_content or b""))

    def _where(self) -> str:
        if isinstance(self.token_source, Path):
            return (f"the token in {self.token_source} (readable by the proxy's user only; "
                    f"`vcr-proxy env` exports it as {TOKEN_VARIABLE})")
        return f"the token given to this proxy in {self.token_source}"

    @staticmethod
    async def _answer_flow(flow, answer) -> None:
        from .responses import json_response

        status, payload = await answer
        flow.response = json_response(status, payload)

    async def call(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        """One control call: its HTTP status and JSON answer."""
        proxy = self.proxy
        path = path.rstrip("/")
        workers = proxy.workers()
        if workers > 1 and path in ("/cassette", "/report", "/eject"):
            # Each worker holds its own selection, and the kernel hands each connection to any
            # one of them: a selection made here would steer some of a test's requests only.
            return 409, _error(409, f"vcr-proxy control: refused: this proxy runs {workers} "
                                    "replay workers (--workers), each with its own selection; "
                                    "select a cassette per request with the X-Vcr-Cassette "
                                    "header, or start the proxy with --workers 1")
        if path == "/cassette" and method == "POST":
            try:
                name, mode = parse_selection(body, proxy.modes)
                cassette_file = proxy.cassette_for(name)
                fault = parse_fault_field(body)
                match = parse_match_fields(body)
                matcher = proxy.matcher_for(match) if match else None
            except (ControlError, ValueError) as error:
                return 400, _error(400, f"vcr-proxy control: {error}")
            # A mode that relays raw TCP, UDP or DNS would leak past replay (the addon refuses
            # it at start for vcr_mode=replay, and here for a switch to it).
            problem = proxy.replay_problem() if mode == "replay" else None
            if problem:
                return 400, _error(400, f"vcr-proxy control: replay mode refused: mode {problem}")
            previous = None
            if proxy.session.cassette is not None:
                previous = await self._closing_report()
            proxy.session = Session(cassette=name, mode=mode, fault=fault, matcher=matcher)
            proxy.forget(cassette_file)  # selected again: starts over
            proxy.preload(cassette_file)
            await self._closing_relays()
            answer = proxy.report()
            if previous is not None:
                answer["previous"] = previous  # one round trip per test for a test runner
            return 200, answer
        if path == "/report" and method == "POST":
            return 200, await self._closing_report()
        if path == "/eject" and method == "POST":
            report = await self._closing_report()
            proxy.session = Session()
            await self._closing_relays()
            return 200, report
        if path in ("", "/status"):
            return 200, proxy.report() | {"dir": proxy.folder, "workers": workers, "pid": os.getpid(),
                                          "front": proxy.front.status()}
        return 404, _error(404, f"vcr-proxy control: no {method} {path or '/'}; use POST "
                                "/cassette, POST /report, POST /eject or GET /status")

    async def serve_socket(self, path: str):
        """Listen on the Unix socket `path` (only its owner may connect); returns the server."""
        import os

        old_mask = os.umask(0o177)
        try:
            return await asyncio.start_unix_server(self._socket_client, path, limit=1 << 20)
        finally:
            os.umask(old_mask)

    async def _socket_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each line is a JSON call `{"method": "POST", "path": "/cassette", "body": {...}}`;
        each answer a line `{"status": 200, "body": {...}}`. Between answers come event lines,
        `{"event": "miss"}` or `{"event": "record"}` (notify)."""
        self.listeners.add(writer)
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    method, path = request["method"], request["path"]
                    if not isinstance(method, str) or not isinstance(path, str):
                        raise TypeError
                    body = json.dumps(request.get("body") or {}).encode()
                except (ValueError, KeyError, TypeError, RecursionError):
                    status, payload = 400, _error(400, "vcr-proxy control: each line must be a JSON "
                                                       'object like {"method": "POST", "path": '
                                                       '"/cassette", "body": ' + _EXAMPLE + "}")
                else:
                    status, payload = await self.call(method, path, body)
                writer.write(json.dumps({"status": status, "body": payload}).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the test runner went away, or sent a line over the limit
        except asyncio.CancelledError:
            # The proxy is stopping with a runner still connected. Ended as a cancelled task,
            # Python 3.12.0-3.12.1's start_unix_server callback prints a traceback for it.
            pass
        finally:
            self.listeners.discard(writer)
            writer.close()

    async def _closing_relays(self) -> None:
        # A connection relayed untouched under the selection before (a tunnel opened in
        # passthrough mode) that this one would answer from cassettes is closed before the
        # runner hears back: its next request comes on a new connection, routed by this mode.
        await self.proxy.close_stale_relays_and_wait()

    async def _closing_report(self) -> dict:
        # A client may have read a stream's last event before the proxy saw its end.
        await self.proxy.recorder.settle(2.0)
        report = self.proxy.report()
        try:
            report["unused"] = await self._unused()
            report["unused_sessions"] = await self.proxy.realtime.unused_in_selection()
        except Exception as error:  # a report must not fail because a cassette went bad
            report["unused"] = []
            report["unused_error"] = str(error)
        return report

    async def _unused(self) -> list[int]:
        """Ids of the selected cassette that this selection never replayed (replay and once
        mode, when the cassette was replayed rather than recorded)."""
        from .replay import ReplayCassette

        proxy = self.proxy
        mode = proxy.mode
        if mode not in ("replay", "once"):
            return []
        path = proxy.cassette_for(proxy.report()["cassette"])
        # A test that sent no request reports soon after its selection, maybe while the
        # cassette is still being read ahead (its replay state there but not yet loaded): all of
        # it is unused, not none of it.
        await proxy.read_ahead_done(path)
        if mode == "once" and proxy.decisions.get(path) == "record":
            return []
        replay = proxy.replays.get(path)
        if replay is None:
            if not await read_off_loop(path.exists):
                return []
            replay = proxy.replays[path] = ReplayCassette(path)
            await read_off_loop(replay.refresh)
        if replay.cassette is None:
            return []
        return [i.id for i in replay.cassette.interactions if i.id not in replay.used]
