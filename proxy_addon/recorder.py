"""One HTTP exchange, as a proxy saw it, turned into what go-vcr records from a Go client."""

from __future__ import annotations

import re
import time
import zlib
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import filters
from .credentials import Secrets, request_secrets, scrub_interaction
from .cassette import Interaction, Request, Response
from .codings import (DEFAULT_MAX_BODY, BodyTooLarge, DecodeError, Decoder, codings, decode_body,  # noqa: F401
                      size_text)
from .gohttp import canonical_header_key, parse_form, proto_numbers, status_line
from .timing import Timing, body_hash, event_times

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .persisters.filesystem import CassetteWriter
    from .request_view import RequestView


@dataclass
class Exchange:
    """A completed request and response, free of any proxy's types."""

    method: str
    url: str  # the public URL the client asked for, before any rerouting
    request_headers: list[tuple[str, str]]
    request_body: bytes
    http_version: str  # the upstream's, e.g. "HTTP/2.0"
    status_code: int
    reason: str
    response_headers: list[tuple[str, str]]
    response_body: bytes | bytearray  # as the upstream sent it (possibly compressed)
    started: float  # when the request started (seconds, any clock)
    headers_at: float  # when the response headers arrived
    ended: float  # when the body ended
    # For streamed bodies: (bytes received so far, time) after each chunk.
    arrivals: list[tuple[int, float]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    # The request's credentials, when the proxy already found them as the request began.
    secrets: Secrets | None = None
    # When `request_body` is already scrubbed (request_view.py): the credential values it is
    # scrubbed of. It is then scrubbed only of those found since, not scanned all over again.
    request_scrubbed_of: frozenset[str] | None = None


class Arrivals:
    """(bytes received so far, time) after each chunk, kept as two machine arrays.

    Servers send a stream in chunks as small as one token; as a list of tuples the arrivals
    took more memory (about 120 bytes a chunk) than the body they describe. Reads like the
    list it replaces (len, index, slices, iteration).
    """

    def __init__(self, pairs=()):
        self.sizes = array("q")
        self.times = array("d")
        for size, at in pairs:
            self.append((size, at))

    def append(self, pair: tuple[int, float]) -> None:
        self.sizes.append(pair[0])
        self.times.append(pair[1])

    def clear(self) -> None:
        self.sizes = array("q")
        self.times = array("d")

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(zip(self.sizes[index], self.times[index]))
        return self.sizes[index], self.times[index]

    def __iter__(self):
        return zip(self.sizes, self.times)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


@dataclass
class PendingRecording:
    """A flow being recorded: where it goes, and the copy of its streamed body so far.

    The copy is bounded by `limit` (the addon's `vcr_max_body`): past it the copy is dropped
    and the stream keeps flowing to the client untouched, but the interaction will not be
    recorded (`body()` says why).
    """

    writer: "CassetteWriter"
    id: int
    url: str  # the public URL, scrubbed (as it was sent, until the view is made)
    started: float
    streamed: bool = False
    # One growing buffer, not a list of chunks to join: joining would hold the body twice.
    copy: bytearray = field(default_factory=bytearray)
    arrivals: Arrivals = field(default_factory=Arrivals)
    ended: float | None = None  # when the upstream finished the body
    limit: int = DEFAULT_MAX_BODY
    over_limit: bool = False
    received: int = 0  # bytes passed through, kept or not
    view: "RequestView | None" = None  # the request as it is saved (request_view.py)
    # Or, until it is made (in a thread, as the request goes upstream), what will hold it.
    view_later: "Future[RequestView] | None" = None

    def on_chunk(self, data: bytes) -> bytes:
        """The response stream callback: keeps a copy and passes `data` on unchanged
        (an empty chunk marks the end of the body)."""
        if data:
            self.received += len(data)
            if self.over_limit:
                return data
            if len(self.copy) + len(data) > self.limit:
                self.over_limit = True
                self.discard()
                return data
            self.copy += data
            self.arrivals.append((len(self.copy), time.time()))
        else:
            self.ended = time.time()
        return data

    def discard(self) -> None:
        """Let go of the copy now (an aborted or over-limit stream): the flow may live on
        in mitmproxy, or in a reference cycle until the cyclic GC, and with it the copy."""
        self.copy = bytearray()
        self.arrivals.clear()

    def body(self) -> bytearray:
        """The streamed body to record; BodyTooLarge if it outgrew the limit."""
        if self.over_limit:
            raise BodyTooLarge(f"the streamed response passed vcr_max_body ({size_text(self.limit)}) "
                               f"after {size_text(self.received)}; raise vcr_max_body (bytes) to "
                               "record it")
        return self.copy


# Last events after which an LLM API's stream has nothing more to say.
_FINAL_EVENT = re.compile(
    rb"(?:^|\n)(?:data: \[DONE\]|event: (?:message_stop|response\.(?:completed|failed|incomplete)))"
    rb"[^\n]*(?:\r?\n(?:data|id|retry):[^\n]*)*\r?\n\r?\n\Z")


def stream_is_finished(body: bytes) -> bool:
    """Whether a Server-Sent Events body ends with its API's final event (OpenAI-style
    `data: [DONE]`, Anthropic's `message_stop`, the Responses API's `response.completed`)."""
    return _FINAL_EVENT.search(body[-4096:]) is not None


def _decoded_arrivals(raw_arrivals, raw: bytes, encoding: str,
                      limit: int = DEFAULT_MAX_BODY) -> list[tuple[int, float]]:
    """Map arrival points in the compressed stream to sizes of the decoded stream."""
    stages = codings(encoding)
    if not stages or stages == ["identity"]:
        return raw_arrivals
    if len(stages) > 1:  # stacked codings: every event counts as arriving with the last chunk
        return raw_arrivals[-1:]
    decoded, total, previous = [], 0, 0
    try:
        decoder = Decoder(stages[0], bytes(raw[:2]), limit)
        view = memoryview(raw)
        for size, at in raw_arrivals:
            total += sum(len(out) for out in decoder.feed(view[previous:size]))
            previous = size
            decoded.append((total, at))
    except Exception:  # a body that did not decode was reported by decode_body already
        return raw_arrivals[-1:]
    return decoded


def _header_map(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in pairs:
        result.setdefault(canonical_header_key(name), []).append(value)
    return result


# A body this long stays bytes: the emitter writes UTF-8 bytes as text without decoding them,
# and a decoded copy would double the memory a long stream takes to save.
_LONG_BODY = 1 << 20


def _text(data: bytes | bytearray) -> str | bytes | bytearray:
    if len(data) >= _LONG_BODY:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(data)


def _header(pairs: list[tuple[str, str]], name: str) -> str:
    lower = name.lower()
    return next((value for key, value in pairs if key.lower() == lower), "")


def to_interaction(exchange: Exchange, interaction_id: int, header_policy: str = "minimal",
                   max_body: int = DEFAULT_MAX_BODY) -> tuple[Interaction, Timing]:
    """The interaction go-vcr would record for `exchange`, and its event timing.

    Credentials are scrubbed whatever the policy (credentials.py): by name, by value, by shape.
    BodyTooLarge (a DecodeError) if a body, raw or decoded, is over `max_body` bytes.
    """
    if len(exchange.request_body) > max_body:
        raise BodyTooLarge(f"the request body is larger than vcr_max_body ({size_text(max_body)}); "
                           "raise vcr_max_body (bytes) to record it")
    url = exchange.url
    parts = urlsplit(url)
    request_content_type = _header(exchange.request_headers, "content-type")
    request = Request(
        proto="HTTP/1.1", proto_major=1, proto_minor=1,
        content_length=len(exchange.request_body),
        host="",
        body=_text(exchange.request_body),
        form=parse_form(exchange.method, parts.query, request_content_type, exchange.request_body),
        headers=_header_map(filters.request_headers(exchange.request_headers, header_policy)),
        url=url,
        method=exchange.method,
    )

    encoding = _header(exchange.response_headers, "content-encoding")
    decoded = bool(encoding) and encoding.strip().lower() != "identity"
    body = (decode_body(exchange.response_body, encoding, max_body) if decoded
            else decode_body(exchange.response_body, "", max_body))
    proto, major, minor = proto_numbers(exchange.http_version)
    length_header = _header(exchange.response_headers, "content-length")
    chunked = "chunked" in _header(exchange.response_headers, "transfer-encoding").lower()
    if decoded or not length_header.strip().isdigit():
        content_length = -1
    else:
        content_length = int(length_header)
    response = Response(
        proto=proto, proto_major=major, proto_minor=minor,
        transfer_encoding=["chunked"] if chunked and major == 1 else [],
        trailer=_header_map(exchange.trailers),
        content_length=content_length,
        uncompressed=decoded,
        body=_text(body),
        headers=_header_map(filters.response_headers(exchange.response_headers, header_policy,
                                                     decoded)),
        status=status_line(exchange.status_code, exchange.reason, proto),
        code=exchange.status_code,
        duration=max(0, round((exchange.headers_at - exchange.started) * 1e9)),
    )
    arrivals = _decoded_arrivals(exchange.arrivals, exchange.response_body, encoding if decoded else "",
                                 max_body)
    ms = [(size, (at - exchange.started) * 1e3) for size, at in arrivals]
    interaction = Interaction(id=interaction_id, request=request, response=response)
    # Headers the policy leaves out carry credentials too: their values are scrubbed wherever
    # they echo.
    # (A copy of the request's: the proxy's thread still reads those for its log lines.)
    secrets = exchange.secrets.copy() if exchange.secrets else request_secrets(
        exchange.request_headers, exchange.url, exchange.request_body, request_content_type)
    for name, value in exchange.response_headers + exchange.trailers:
        secrets.add_header(name, value)
    scrub_interaction(interaction, secrets, exchange.request_scrubbed_of)
    timing = Timing(id=interaction_id, body_hash=body_hash(response.body),
                    headers_ms=(exchange.headers_at - exchange.started) * 1e3,
                    events_ms=event_times(body, ms, _header(exchange.response_headers, "content-type")),
                    end_ms=(exchange.ended - exchange.started) * 1e3)
    return interaction, timing
