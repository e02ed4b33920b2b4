"""One scrubbed view of each request, made once where the request enters the proxy.

Recording, matching, miss messages, logs and mitmproxy's own display (its flow printer and
save_stream_file) all read this view, never the request as the client sent it: what one of
them shows, each of them shows. The upstream alone receives the request as sent.
"""

from __future__ import annotations

from collections.abc import Iterable
import functools
from dataclasses import dataclass, field

from .codings import decode_body
from .credentials import Secrets, scrub_headers, scrub_request


@dataclass(frozen=True)
class RequestView:
    method: str
    url: str  # the public URL, credentials replaced (query values, echoes, key shapes)
    sent_headers: list[tuple[str, str]] = field(repr=False)  # read only through `headers`
    body: bytes | bytearray  # Content-Encoding undone, then scrubbed
    encoding: str  # the Content-Encoding the body was sent with ("" for none)
    secrets: Secrets  # the credentials the request carries, to scrub their echoes
    # The credential values `body` is already scrubbed of (with those found by name and key
    # shapes): `secrets` as it was then, since what reads it later may add to it. A recording
    # scrubs the body again only of values found since (the response's).
    scrubbed_of: frozenset[str] = frozenset()

    @functools.cached_property
    def headers(self) -> list[tuple[str, str]]:
        """The headers as sent, but a credential header's value is MARKER and any other loses
        the credentials and key shapes it holds. Made when first asked for: a replayed request
        needs them only when headers are matched or flows are shown."""
        return scrub_headers(self.sent_headers, self.secrets)


def _header(headers: list[tuple[str, str]], lower: str) -> str:
    return next((value for name, value in headers if name.lower() == lower), "")


def _joined(headers: list[tuple[str, str]], lower: str) -> str:
    # A list-valued header sent on several lines is one comma-separated list (RFC 9110 5.3), as
    # mitmproxy and the upstream read it: `Content-Encoding: identity` then `Content-Encoding:
    # br` is a br body, which the first line alone would leave compressed, its keys unseen.
    return ", ".join(value.strip() for name, value in headers
                     if name.lower() == lower and value.strip())


def view_request(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes,
                 limit: int, trailers: Iterable[tuple[str, str]] = ()) -> RequestView:
    """The view of a request. A compressed body is decoded within `limit` bytes first: a key
    inside it is a key all the same. DecodeError (BodyTooLarge past `limit`) if it cannot be.
    `trailers` (HTTP/2 headers sent after the body) are not recorded, but a credential in them
    is one of the request's, scrubbed wherever it echoes."""
    headers = list(headers)
    encoding = _joined(headers, "content-encoding")
    if any(coding.strip().lower() not in ("", "identity") for coding in encoding.split(",")):
        body = decode_body(body, encoding, limit, "request body")
    else:
        encoding = ""
    url, body, secrets = scrub_request(url, headers + list(trailers), body,
                                       _header(headers, "content-type"))
    return RequestView(method, url, headers, body, encoding, secrets, frozenset(secrets.values))
