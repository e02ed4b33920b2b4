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

CONTROL_HOST = "vcr-proxy.control"


@dataclass
class Session:
    """What the control endpoint selected, and what happened since."""

    cassette: str | None = None
    mode: str | None = None
    recorded: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

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
