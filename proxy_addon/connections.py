"""Client connections closed from outside mitmproxy's layers: at once, before any byte is
relayed (a UDP flow in replay), or later, when a change of mode ends a relay (relays.py)."""

from __future__ import annotations

import asyncio

from mitmproxy import ctx
from mitmproxy.proxy import commands, events, layer, layers

# The layers mitmproxy relays a connection's bytes or datagrams with, past the request hook.
RAW_LAYERS = (layers.TCPLayer, layers.UDPLayer, layers.DNSLayer, layers.RawQuicLayer)


class Closed(layer.Layer):
    """Closes the client's connection at once and relays nothing."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


def close_client_connection(client_id: str) -> list:
    """End client connection `client_id` from outside its layers, the way mitmproxy's own
    inactivity timeout does (ConnectionHandler.on_timeout): its read loop is cancelled, so no
    byte it has not relayed yet is relayed, and the connection closes with the server connections
    behind it. Returns what wait_closed() waits for ([] if the connection is gone already)."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(client_id) if proxyserver is not None else None
    if handler is None:
        return []
    io = handler.transports.get(handler.client)
    if io is None or io.handler is None:
        return []
    io.handler.cancel("vcr-proxy: the mode changed")
    return [(io.handler, io.writer)]


async def wait_closed(closing: list) -> None:
    """Until the connections close_client_connection() closed have closed their sockets: the
    read loop closes the writer as it ends, the socket closes a turn of the event loop later
    (StreamWriter.wait_closed), and only then has the client seen the end."""
    await asyncio.wait([task for task, _ in closing], timeout=5)
    for _, writer in closing:
        if isinstance(writer, asyncio.StreamWriter):
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, TimeoutError):
                pass
