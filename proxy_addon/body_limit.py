"""Request bodies past vcr_max_body refused with a 413 before they are held in memory.

mitmproxy reads a request's body whole before any addon hook sees it: a 2 GiB upload to a
recorded host was held in memory, then crashed it. Its own `body_size_limit` would refuse it
early, but applies to responses and to every host as well (a large download through a dev
shell's proxy would break), and answers in HTML or, over HTTP/2, with a stream reset. So the
one check mitmproxy makes on each piece of a request body as it arrives (and on its declared
length, before reading any) asks vcr-proxy too: for a request vcr-proxy would answer or record,
a body that passes the limit gets vcr-proxy's one-line 413 at once, in the API's error shape,
and the rest of it is read and dropped, never kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import ResponseData, ResponseEndOfMessage, ResponseHeaders

# flow -> the response refusing its request body of `size` bytes, or None to let it through.
Refusal = Callable[[http.HTTPFlow, int], "http.Response | None"]

_original = HttpStream.check_body_size
_refusal: Refusal | None = None


def install(refusal: Refusal) -> None:
    """Route mitmproxy's body-size check through `refusal` (once per process; the addon's
    latest instance answers)."""
    global _refusal
    _refusal = refusal
    if HttpStream.check_body_size is not _checked:
        HttpStream.check_body_size = _checked


def _declared_size(stream: HttpStream) -> int | None:
    if stream.request_body_buf:
        return len(stream.request_body_buf)
    try:
        return expected_http_body_size(stream.flow.request, None)
    except ValueError:
        return None


def _checked(self: HttpStream, request: bool):
    if request and _refusal is not None and self.flow is not None and not self.flow.response:
        size = _declared_size(self)
        response = _refusal(self.flow, size) if size is not None and size > 0 else None
        if response is not None:
            self.request_body_buf.clear()
            self.flow.response = response
            response.timestamp_start = response.timestamp_end = time.time()
            yield SendHttp(ResponseHeaders(self.stream_id, response, False), self.context.client)
            yield SendHttp(ResponseData(self.stream_id, response.raw_content or b""), self.context.client)
            yield SendHttp(ResponseEndOfMessage(self.stream_id), self.context.client)
            # What is still to come of the body is read and dropped, never buffered.
            self.client_state = self.state_errored
            self.server_state = self.state_errored
            self.flow.live = False
            return True
    return (yield from _original(self, request))
