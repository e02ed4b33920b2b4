"""Where client connections arrive: the direct front takes a CONNECT it can serve whole, and
hands every other connection to mitmproxy as if it had read nothing."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx
from mitmproxy.net.http.http1 import read_request_head
from mitmproxy.proxy.mode_servers import RegularInstance

from ..routing import CONTROL_HOST, normalize_host
from .certificates import Certificates, quiet_server_names
from .connection import FrontConnection, HeadTooLarge, head_lines, read_head

log = logging.getLogger("vcr-proxy")

FRONTS = ("mitmproxy", "direct")  # vcr_front's values

_mitmproxy_handle_stream = RegularInstance.handle_stream
_front: "Front | None" = None


def install(front: "Front") -> None:
    """Route the regular proxy's connections through `front` (once per process)."""
    global _front
    if _front is None:
        quiet_server_names()
    _front = front
    RegularInstance.handle_stream = _handle_stream


async def _handle_stream(self, reader, writer=None) -> None:
    front = _front
    if front is None or writer is None or not front.enabled():
        return await _mitmproxy_handle_stream(self, reader, writer)
    head = b""
    try:
        head = await reader.readexactly(1)
        # Only a CONNECT can be the front's: any other first byte goes to mitmproxy at once (a
        # client of an HTTPS proxy, `curl -x https://...`, speaks TLS first and waits: its
        # bytes never end a head).
        if head == b"C":
            head += await read_head(reader)
    except asyncio.IncompleteReadError:
        writer.close()  # closed before a whole head: nothing to answer
        return
    except HeadTooLarge as error:
        _unread(reader, head + error.read)  # mitmproxy's to refuse
        return await _mitmproxy_handle_stream(self, reader, writer)
    except (ConnectionError, OSError):
        writer.close()
        return
    # Bytes after the head (a ClientHello sent without waiting for the 200) are in the reader's
    # buffer, where start_tls would never see them: mitmproxy reads them.
    target = front.target(head, writer, self.mode) if not reader._buffer else None
    if target is None:
        _unread(reader, head)
        return await _mitmproxy_handle_stream(self, reader, writer)
    await front.serve(reader, writer, *target)


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    # asyncio's StreamReader has no way to give bytes back; mitmproxy reads from its buffer
    # first. (tests/test_direct_front.py hands every kind of connection over.)
    if data:
        reader._buffer[0:0] = data


class Front:
    """The direct front of one proxy (the addon, `proxy`): which connections it takes, and the
    ones it serves."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.certificates = Certificates()
        self.serving: set[FrontConnection] = set()
        self.taken = 0  # connections served since the start

    def status(self) -> dict:
        """For the control endpoint's /status: this front, and what it has served."""
        return {"kind": ctx.options.vcr_front, "connections": self.taken, "open": len(self.serving),
                "certificates": len(self.certificates.contexts)}

    @staticmethod
    def enabled() -> bool:
        return ctx.options.vcr_front == "direct"

    def target(self, head: bytes, writer: asyncio.StreamWriter, mode) -> tuple[str, int] | None:
        """The (host, port) of a CONNECT this front serves whole, else None."""
        if not head.startswith(b"CONNECT "):
            return None
        try:
            # mitmproxy's parser, and its checks of the host and port (1 to 65535): what it
            # refuses, it refuses in its own words.
            request = read_request_head(head_lines(head))
        except ValueError:
            return None
        if (request.method != "CONNECT" or not request.http_version.startswith("HTTP/1.")
                or request.authority.startswith("[")  # IPv6 literals
                # Port 80: plain HTTP in the tunnel (curl -p, Node's tunnelling agents), which
                # the front, TLS only, cannot read; mitmproxy reads both.
                or request.port == 80):
            return None
        host = normalize_host(request.host)
        options, proxy = ctx.options, self.proxy  # (allow_hosts, ignore_hosts: refused in configure)
        if (proxy.mode != "replay" or host == CONTROL_HOST or not proxy.routes.handles(host, "replay")
                or getattr(options, "proxyauth", None)  # mitmproxy asks for it; so would we
                or proxy.outside_loopback(writer.get_extra_info("sockname"), mode)):
            return None
        return host, request.port

    async def serve(self, reader, writer, host: str, port: int) -> None:
        served = FrontConnection(self, reader, writer, host, port)
        self.serving.add(served)
        self.taken += 1
        try:
            await served.serve()
        except Exception:
            log.exception(f"vcr-proxy: direct front: internal error on a connection to {host}")
        finally:
            self.serving.discard(served)
            served.cancel()
            writer.close()

    def close_all(self) -> None:
        """At shutdown: every connection ends now."""
        for served in list(self.serving):
            served.cancel()
            served.writer.close()
