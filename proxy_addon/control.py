"""The control endpoint: test runners steer the proxy through requests to a reserved host.

    POST http://vcr-proxy.control/cassette  {"name": "suite/test", "mode": "replay"}
        Following requests use this cassette (and mode) until the next selection or eject.
    POST http://vcr-proxy.control/eject
        Back to the configured cassette and mode; answers what was recorded, replayed, missed.
    GET  http://vcr-proxy.control/status

The addon answers these itself; they never leave the proxy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .routing import CONTROL_HOST  # noqa: F401  (where test runners send these)


@dataclass
class Session:
    """What the control endpoint selected, and what happened since."""

    cassette: str | None = None
    mode: str | None = None
    recorded: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # interactions that could not be saved

    def report(self, default_cassette: str, default_mode: str) -> dict:
        data = asdict(self)
        data["cassette"] = self.cassette or default_cassette
        data["mode"] = self.mode or default_mode
        return data


class ControlError(ValueError):
    pass


def parse_selection(body: bytes, modes: tuple[str, ...]) -> tuple[str, str | None]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ControlError("the body must be JSON like {\"name\": \"suite/test\", \"mode\": \"once\"}") from None
    name, mode = data.get("name"), data.get("mode")
    if not isinstance(name, str) or not name:
        raise ControlError("'name' (the cassette, relative to vcr_dir) is required")
    if mode is not None and mode not in modes:
        raise ControlError(f"unknown mode {mode!r}; choose one of {', '.join(modes)}")
    return name, mode


class ControlEndpoint:
    """Answers requests to CONTROL_HOST for `proxy` (the addon): select, eject, status."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy

    def answer(self, flow):
        from .responses import error_response, json_response

        proxy = self.proxy
        path = flow.request.path.split("?", 1)[0].rstrip("/")
        method = flow.request.method
        if path == "/cassette" and method == "POST":
            try:
                name, mode = parse_selection(flow.request.raw_content or b"", proxy.modes)
                cassette_file = proxy.cassette_for(name)
            except (ControlError, ValueError) as error:
                flow.response = error_response(400, f"vcr-proxy control: {error}")
                return None
            proxy.session = Session(cassette=name, mode=mode)
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

        # A client may have read a stream's last event before the proxy saw its end.
        await self.proxy.recorder.settle(2.0)
        report = self.proxy.report()
        self.proxy.session = Session()
        flow.response = json_response(200, report)
