"""One client connection on the direct front: after its CONNECT, TLS, then HTTP/1.1 requests
read with mitmproxy's parser, each answered by the addon's `request` hook as a flow of its own."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time

from mitmproxy import connection, ctx, http
from mitmproxy.net.http.http1 import read_request_head
from mitmproxy.net.http.http1.read import connection_close, expected_http_body_size
from mitmproxy.net.http.validate import validate_headers

from .. import paced
from ..realtime.hooks import is_upgrade
from ..responses import error_response, flow_error
from .sending import PacedSender, whole

log = logging.getLogger("vcr-proxy")

HEAD_LIMIT = 64 * 1024  # bytes of a request's line and headers (asyncio's stream limit)
# A line ends in CRLF or a bare LF, as mitmproxy (h11's buffer) reads them: one split for both
# fronts, so a bare LF inside a head is no header of one and part of another's value.
LINE_END = re.compile(rb"\r?\n")
# A chunk's size is hex digits and nothing else (h11's rule): int(..., 16) would also take a
# sign, "0x" and underscores, which mitmproxy refuses, and a negative size.
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")


class HeadTooLarge(Exception):
    """A head past HEAD_LIMIT bytes; `read` holds what was taken of it from the reader."""

    def __init__(self, read: bytes):
        super().__init__()
        self.read = read


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """A request's line and headers as sent, through the empty line that ends them. Lines end
    in CRLF or a bare LF (mitmproxy reads both: a client sending bare LFs is answered, not left
    waiting for a CRLF that never comes); empty lines before the request line are skipped, as
    RFC 9112 asks. IncompleteReadError if the client closes first."""
    head = bytearray()
    started = False
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise HeadTooLarge(bytes(head)) from None
        head += line
        if len(head) > HEAD_LIMIT:
            raise HeadTooLarge(bytes(head))
        if line == b"\r\n" or line == b"\n":
            if started:
                return bytes(head)
        else:
            started = True


def head_lines(head: bytes) -> list[bytes]:
    """`head`'s request line and header lines, without their ends."""
    lines = LINE_END.split(head)[:-2]
    while lines and not lines[0]:
        del lines[0]
    return lines


class BadRequest(Exception):
    """What the client sent is not a request this front reads: answered with a 400 (or the
    given status), and the connection closed."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class FrontConnection:
    def __init__(self, front, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str, port: int):
        self.front, self.proxy = front, front.proxy
        self.reader, self.writer = reader, writer
        self.host, self.port = host, port
        self.sni: str | None = None
        self.sender: PacedSender | None = None
        self.client = connection.Client(peername=writer.get_extra_info("peername"),
                                        sockname=writer.get_extra_info("sockname"),
                                        timestamp_start=time.time())

    async def serve(self) -> None:
        self.writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        plain = self.writer.transport
        try:
            await self.writer.start_tls(self.front.certificates.context(self.host))
        except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as error:
            if getattr(error, "reason", None) == "HTTP_REQUEST":
                # Plain HTTP in the tunnel, on a port other than 80 (Front.target leaves those
                # to mitmproxy): the connection is closed by now, the log says why.
                log.error(f"vcr-proxy: a client sent plain HTTP inside a CONNECT tunnel to "
                          f"{self.host}:{self.port}; vcr_front=direct reads only TLS there: start "
                          "the proxy with vcr_front=mitmproxy to replay it")
                return
            log.debug(f"vcr-proxy: direct front: TLS with a client for {self.host} failed: {error}")
            return
        except AttributeError:
            # Closed mid-handshake from this side (close_all, at a stop): asyncio's handshake
            # then ends with no transport rather than an error, and StreamWriter.start_tls
            # fails on it, leaving the writer none (its close() and __del__ would fail too).
            # The closed plain one stands in.
            if self.writer.transport is not None:
                raise
            self.writer._transport = plain
            return
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.sni = getattr(ssl_object, "vcr_sni", None)
        self.client.sni = self.sni
        self.client.tls = True
        self.client.timestamp_tls_setup = time.time()
        self.client.alpn = b"http/1.1"
        while await self._one_request():
            pass

    def cancel(self) -> None:
        if self.sender is not None:
            self.sender.cancel()

    async def _one_request(self) -> bool:
        """Answer the next request; whether the connection goes on."""
        try:
            head = await read_head(self.reader)
        except asyncio.IncompleteReadError:
            return False  # the client closed between requests (or mid-head)
        except HeadTooLarge:
            return self._refuse(BadRequest(f"its headers are larger than {HEAD_LIMIT:,} bytes", 431))
        except (ConnectionError, ssl.SSLError, OSError):
            return False
        try:
            request = self._parse(head)
            body = await self._body(request)
        except BadRequest as error:
            return self._refuse(error)
        except asyncio.LimitOverrunError:  # a chunk-size or trailer line past asyncio's limit
            return self._refuse(BadRequest("its chunked body cannot be read"))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            return False
        request.data.content = body
        request.timestamp_end = time.time()
        flow = http.HTTPFlow(self.client, connection.Server(address=(self.host, self.port)))
        flow.request = request
        return await self._answer(flow) and not self.writer.is_closing()

    def _parse(self, head: bytes) -> http.Request:
        try:
            request = read_request_head(head_lines(head))
        except ValueError:
            # Not repeated: the line may hold a credential (mitmproxy's message quotes it).
            raise BadRequest("the request could not be read as HTTP/1.1") from None
        if request.method == "CONNECT":
            raise BadRequest("a CONNECT inside a CONNECT tunnel is not read")
        # An absolute-form target (RFC 9112 asks servers to accept it) names the tunnel's host,
        # whatever it says, as in mitmproxy's tunnels: the Host header is then checked against
        # the tunnel's target, which refuses another host.
        request.data.authority = b""
        if getattr(ctx.options, "validate_inbound_headers", True):
            try:
                validate_headers(request)  # as mitmproxy does: against request smuggling
            except ValueError:
                # Not repeated either: a header's name or value may be a credential.
                raise BadRequest("its headers are ambiguous or malformed (a request smuggling "
                                 "check, mitmproxy's validate_inbound_headers)") from None
        # The tunnel's target, as mitmproxy sets it inside a CONNECT (its `host` setter would
        # rewrite the Host header too, which routing compares with the target).
        request.data.host, request.data.port, request.scheme = self.host, self.port, "https"
        request.timestamp_start = time.time()
        return request

    async def _body(self, request: http.Request) -> bytes:
        try:
            size = expected_http_body_size(request)
        except ValueError:
            raise BadRequest("its Content-Length or Transfer-Encoding cannot be read") from None
        limit = ctx.options.vcr_max_body
        if size is not None and size > limit:
            raise BadRequest(f"its body ({size:,} bytes) is larger than vcr_max_body ({limit:,} "
                             "bytes); raise vcr_max_body to replay it", 413)
        if request.headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if size is None:
            return await self._chunked(limit)
        return await self.reader.readexactly(size) if size > 0 else b""

    async def _chunked(self, limit: int) -> bytes:
        parts, total = [], 0
        while True:
            size = CHUNK_SIZE.fullmatch(await self.reader.readuntil(b"\n"))
            if size is None:
                raise BadRequest("its chunked body cannot be read")
            size = int(size[1], 16)
            if size == 0:
                while (await self.reader.readuntil(b"\n")) not in (b"\r\n", b"\n"):
                    pass  # trailers: not kept
                return b"".join(parts)
            total += size
            if total > limit:
                raise BadRequest(f"its body ({total:,} bytes or more) is larger than vcr_max_body "
                                 f"({limit:,} bytes); raise vcr_max_body to replay it", 413)
            parts.append(await self.reader.readexactly(size))
            if await self.reader.readexactly(2) != b"\r\n":
                raise BadRequest("its chunked body cannot be read")

    def _refuse(self, error: BadRequest) -> bool:
        message = f"vcr-proxy: refused a request to {self.host}: {error}"
        log.error(message)
        response = error_response(error.status, message)
        response.headers["Connection"] = "close"
        self.writer.write(whole(response, head_only=False))
        self.writer.close()
        return False

    async def _answer(self, flow: http.HTTPFlow) -> bool:
        """Answer `flow`'s request; whether the connection stays open for another."""
        proxy, request = self.proxy, flow.request
        keep = not connection_close(request.http_version, request.headers)
        if proxy.mode != "replay":
            # Opened while the proxy replayed; it has switched since (a control selection):
            # this front answers from cassettes only, so the client comes back on a new
            # connection, which mitmproxy routes by the mode now in force.
            flow.response = _switched(flow, proxy.mode)
            keep = False
        elif is_upgrade(request.headers):
            flow.response = flow_error(flow, 501, "vcr-proxy: WebSocket sessions are not replayed "
                                       "by vcr_front=direct; start the proxy with vcr_front="
                                       "mitmproxy (without --workers) to replay them")
            keep = False
        else:
            result = proxy.request(flow)
            if result is not None:
                await result
            if proxy.recorder.drop(flow):
                # The switch came while the hook ran (a large body's view is made in a thread):
                # it began a recording, which mitmproxy would forward; not this front. Unsaved,
                # or a 502 of this front's would be recorded as the API's answer.
                flow.response = _switched(flow, proxy.mode)
                keep = False
            elif flow.response is None:
                # Never forwarded from here (a switch to passthrough while the hook ran, say):
                # this front answers from cassettes only.
                flow.response = flow_error(flow, 502, "vcr-proxy: not forwarded: this connection "
                                           "was taken for replay (vcr_front=direct), which sends "
                                           "nothing on; send it again on a new connection")
                keep = False
        plan = flow.metadata.pop(paced.PLAN, None)
        proxy.responseheaders(flow)
        response = flow.response
        head_only = request.method == "HEAD"
        if plan is not None:
            chunked = request.http_version != "HTTP/1.0"
            keep = keep and chunked and not plan.cut
            head = whole(_with_connection(response, keep), head_only=True)
            self.sender = PacedSender(self.writer.transport, head, plan, chunked, head_only)
            sent = await self.sender.start()
            self.sender = None
            keep = keep and sent
        else:
            self.writer.write(whole(_with_connection(response, keep), head_only))
            try:
                await self.writer.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                keep = False
        proxy.response(flow)
        if not keep:
            self.writer.close()
        return keep


def _switched(flow: http.HTTPFlow, mode: str) -> http.Response:
    request = flow.request
    message = (f"vcr-proxy: {request.method} {request.path.split('?')[0]}: the proxy switched "
               f"to {mode} mode after this connection was opened for replay; not forwarded: "
               "send it again on a new connection")
    return flow_error(flow, 503, message, {"Connection": "close"})


def _with_connection(response: http.Response, keep: bool) -> http.Response:
    if not keep:
        response.headers["Connection"] = "close"
    return response
