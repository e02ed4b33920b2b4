"""One HTTP exchange, as a proxy saw it, turned into what go-vcr records from a Go client."""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import filters
from .credentials import request_secrets, scrub_interaction
from .cassette import Interaction, Request, Response
from .gohttp import canonical_header_key, parse_form, proto_numbers, status_line
from .timing import Timing, body_hash, event_times

if TYPE_CHECKING:
    from .persisters.filesystem import CassetteWriter


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


@dataclass
class PendingRecording:
    """A flow being recorded: where it goes, and the copy of its streamed body so far."""

    writer: "CassetteWriter"
    id: int
    url: str
    started: float
    streamed: bool = False
    # One growing buffer, not a list of chunks to join: joining would hold the body twice.
    copy: bytearray = field(default_factory=bytearray)
    arrivals: list[tuple[int, float]] = field(default_factory=list)
    ended: float | None = None  # when the upstream finished the body

    def on_chunk(self, data: bytes) -> bytes:
        """The response stream callback: keeps a copy and passes `data` on unchanged
        (an empty chunk marks the end of the body)."""
        if data:
            self.copy += data
            self.arrivals.append((len(self.copy), time.time()))
        else:
            self.ended = time.time()
        return data


# Last events after which an LLM API's stream has nothing more to say.
_FINAL_EVENT = re.compile(
    rb"(?:^|\n)(?:data: \[DONE\]|event: (?:message_stop|response\.(?:completed|failed|incomplete)))"
    rb"[^\n]*(?:\r?\n(?:data|id|retry):[^\n]*)*\r?\n\r?\n\Z")


def stream_is_finished(body: bytes) -> bool:
    """Whether a Server-Sent Events body ends with its API's final event (OpenAI-style
    `data: [DONE]`, Anthropic's `message_stop`, the Responses API's `response.completed`)."""
    return _FINAL_EVENT.search(body[-4096:]) is not None


class DecodeError(ValueError):
    pass


def _decompressor(coding: str, head: bytes):
    """An incremental decoder for one content coding (`head`: the body's first bytes, which
    tell zlib-wrapped deflate from raw), None for identity; DecodeError if unknown."""
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "deflate":  # servers send both zlib-wrapped and raw deflate
        wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and int.from_bytes(head[:2], "big") % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS).decompress
    if coding == "br":
        import brotli

        return brotli.Decompressor().process
    if coding == "zstd":  # the module mitmproxy itself uses (Python 3.14's, or its backport)
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd

        return zstd.ZstdDecompressor().decompress
    if coding == "identity":
        return None
    raise DecodeError(f"unknown Content-Encoding {coding!r}")


def _codings(encoding: str) -> list[str]:
    """Content-Encoding's codings in the order they are undone."""
    return list(reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]))


def decode_body(body: bytes, encoding: str) -> bytes:
    """The body a Go client sees after its transport (or the SDK) undoes Content-Encoding."""
    for coding in _codings(encoding):
        try:
            decode = _decompressor(coding, body[:2])
            if decode is not None:
                body = decode(body)
        except DecodeError:
            raise
        except Exception as error:  # each library has its own error type
            raise DecodeError(f"cannot decode {coding} body: {error}") from None
    return body


def _decoded_arrivals(raw_arrivals: list[tuple[int, float]], raw: bytes,
                      encoding: str) -> list[tuple[int, float]]:
    """Map arrival points in the compressed stream to sizes of the decoded stream."""
    codings = _codings(encoding)
    if not codings or codings == ["identity"]:
        return raw_arrivals
    if len(codings) > 1:  # stacked codings: every event counts as arriving with the last chunk
        return raw_arrivals[-1:]
    decoded, total, previous = [], 0, 0
    try:
        decode = _decompressor(codings[0], raw[:2])
        for size, at in raw_arrivals:
            total += len(decode(raw[previous:size]))
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
                   ) -> tuple[Interaction, Timing]:
    """The interaction go-vcr would record for `exchange`, and its event timing.

    Credentials are scrubbed whatever the policy (credentials.py): by name, by value, by shape.
    """
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
    body = decode_body(exchange.response_body, encoding) if decoded else exchange.response_body
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
    arrivals = _decoded_arrivals(exchange.arrivals, exchange.response_body, encoding if decoded else "")
    ms = [(size, (at - exchange.started) * 1e3) for size, at in arrivals]
    interaction = Interaction(id=interaction_id, request=request, response=response)
    # Headers the policy leaves out carry credentials too: their values are scrubbed wherever
    # they echo.
    secrets = request_secrets(exchange.request_headers, exchange.url, exchange.request_body,
                              request_content_type)
    for name, value in exchange.response_headers + exchange.trailers:
        secrets.add_header(name, value)
    scrub_interaction(interaction, secrets)
    timing = Timing(id=interaction_id, body_hash=body_hash(response.body),
                    headers_ms=(exchange.headers_at - exchange.started) * 1e3,
                    events_ms=event_times(body, ms),
                    end_ms=(exchange.ended - exchange.started) * 1e3)
    return interaction, timing
