"""The control endpoint: test runners steer the proxy through requests to a reserved host.

    POST http://vcr-proxy.control/cassette  {"name": "suite/test", "mode": "replay"}
        Following requests use this cassette (and mode) until the next selection or eject;
        optional "fault": "status=429;retry-after=2" for every replayed request of the
        selection. If a cassette was selected, the answer's "previous" is its eject report,
        so a test runner needs one round trip per test.
    POST http://vcr-proxy.control/eject
        Back to the configured cassette and mode; answers what was recorded, replayed, missed
        (with the miss messages), what could not be saved, and, in replay and once mode, the
        ids never replayed.
    GET  http://vcr-proxy.control/status

Every request carries the header `X-Vcr-Control: 1`.

The addon answers these itself; they never leave the proxy.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field

from .routing import CONTROL_HOST  # noqa: F401  (where test runners send these)

# Every control request carries it: a web page in a proxied browser cannot send a custom header
# cross-site without a CORS preflight, which the endpoint refuses, so a page cannot switch the
# proxy to record or passthrough.
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

    def report(self, default_cassette: str, default_mode: str) -> dict:
        data = asdict(self)
        data["fault"] = getattr(self.fault, "text", None)
        data["cassette"] = self.cassette or default_cassette
        data["mode"] = self.mode or default_mode
        return data


class ControlError(ValueError):
    pass


_EXAMPLE = '{"name": "suite/test", "mode": "once"}'
_FIELDS = ("name", "mode", "fault")


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
                           f"'name' and 'mode', like {_EXAMPLE}")
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
    """Answers requests to CONTROL_HOST for `proxy` (the addon): select, eject, status."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy

    def answer(self, flow):
        from .responses import error_response, json_response

        proxy = self.proxy
        path = flow.request.path.split("?", 1)[0].rstrip("/")
        method = flow.request.method
        if method == "OPTIONS" or flow.request.headers.get(CONTROL_HEADER) != "1":
            flow.response = error_response(403, f"vcr-proxy control: requests must carry the header "
                                                f"{CONTROL_HEADER}: 1 (and browsers' preflights are "
                                                "refused)")
            return None
        if path == "/cassette" and method == "POST":
            try:
                name, mode = parse_selection(flow.request.raw_content or b"", proxy.modes)
                cassette_file = proxy.cassette_for(name)
            except (ControlError, ValueError) as error:
                flow.response = error_response(400, f"vcr-proxy control: {error}")
                return None
            try:
                fault = parse_fault_field(flow.request.raw_content or b"")
            except ValueError as error:
                flow.response = error_response(400, f"vcr-proxy control: {error}")
                return None
            if proxy.session.cassette is not None:
                return self._select_after(flow, name, mode, fault, cassette_file)
            proxy.session = Session(cassette=name, mode=mode, fault=fault)
            proxy.forget(cassette_file)  # selected again: starts over
            flow.response = json_response(200, proxy.report())
        elif path == "/eject" and method == "POST":
            return self._eject(flow)
        elif path in ("", "/status"):
            flow.response = json_response(200, proxy.report() | {"dir": proxy.folder})
        else:
            flow.response = error_response(404, f"vcr-proxy control: no {method} {path or '/'}; "
                                                "use POST /cassette, POST /eject or GET /status")
        return None

    async def _eject(self, flow) -> None:
        from .responses import json_response

        report = await self._closing_report()
        self.proxy.session = Session()
        flow.response = json_response(200, report)

    async def _select_after(self, flow, name: str, mode: str | None, fault, cassette_file) -> None:
        """Select a cassette while another is selected: the answer carries the other's report."""
        from .responses import json_response

        previous = await self._closing_report()
        proxy = self.proxy
        proxy.session = Session(cassette=name, mode=mode, fault=fault)
        proxy.forget(cassette_file)
        flow.response = json_response(200, proxy.report() | {"previous": previous})

    async def _closing_report(self) -> dict:
        # A client may have read a stream's last event before the proxy saw its end.
        await self.proxy.recorder.settle(2.0)
        report = self.proxy.report()
        try:
            report["unused"] = await self._unused()
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
        if mode == "once" and proxy.decisions.get(path) == "record":
            return []
        replay = proxy.replays.get(path)
        if replay is None:
            if not await asyncio.to_thread(path.exists):
                return []
            replay = proxy.replays[path] = ReplayCassette(path)
            await asyncio.to_thread(replay.refresh)
        if replay.cassette is None:
            return []
        return [i.id for i in replay.cassette.interactions if i.id not in replay.used]
