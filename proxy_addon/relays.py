"""Connections relayed to the network as they are, and which of them a change of mode must close.

routing.py decides when a connection opens: a CONNECT tunnel to a host the current mode does not
open up is relayed byte for byte, and a WebSocket that passes through is relayed message by
message, as is DNS that mitmproxy relays on a connection it opened up (any target's port 53).
None shows the addon the requests that come later on it: a client that keeps its
connection (a session-wide SDK client, an HTTP/2 connection, a Realtime session) would go on
reaching the network after the proxy had been switched to replay. So when the mode or the hosts
change, every relay the new configuration would answer from cassettes is closed; its client
reconnects, and the new connection is routed by the new mode. Replay answers every host but the
passthrough hosts: no connection opened before a switch to replay reaches the network after it.

Plain Python: the addon tells what opened and closed, and closes what `stale` names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .routing import Routes

TUNNEL = "tunnel"
WEBSOCKET = "WebSocket"
RAW = "raw relay"  # DNS, TCP or UDP mitmproxy relays on a connection it opened up


@dataclass(frozen=True)
class Relay:
    """One connection relayed untouched: `client` is the client connection to close (its
    mitmproxy id), `host` and `port` where it goes, `mode` the mode it was opened in."""

    client: str
    kind: str
    host: str
    port: int
    mode: str

    def shown(self) -> str:
        return f"{self.kind} to {self.host}:{self.port} opened in {self.mode} mode"


class Relays:
    """The relays open now, by key: a tunnel's client id, a WebSocket's flow id."""

    def __init__(self) -> None:
        self._open: dict[str, Relay] = {}

    def __bool__(self) -> bool:
        return bool(self._open)

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, key: str, relay: Relay) -> None:
        self._open[key] = relay

    def closed(self, key: str) -> None:
        self._open.pop(key, None)

    def client_gone(self, client: str) -> None:
        """The client connection ended: its tunnel and WebSockets with it."""
        self._open.pop(client, None)
        for key in [key for key, relay in self._open.items() if relay.client == client]:
            del self._open[key]

    def stale(self, routes: Routes, mode: str) -> list[Relay]:
        """The relays that `routes` in `mode` would not let through if they opened now; they
        are forgotten here (the caller closes them)."""
        found = {key: relay for key, relay in self._open.items() if _stale(relay, routes, mode)}
        for key in found:
            del self._open[key]
        return list(found.values())


def _stale(relay: Relay, routes: Routes, mode: str) -> bool:
    if relay.kind == TUNNEL:
        # A tunnel the mode would open up: in replay every host but the passthrough hosts, in
        # the other modes the hosts they record (a test recording through a connection pooled
        # in passthrough mode would otherwise record nothing).
        return routes.intercepts(relay.host, mode)
    # A WebSocket or a raw relay is never recorded, in any mode: only replay, which refuses
    # them, ends one.
    return mode == "replay" and routes.handles(relay.host, mode)
