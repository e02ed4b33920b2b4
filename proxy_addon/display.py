"""What mitmproxy's own printers and savers are given of a flow: mitmdump's flow lines,
save_stream_file and hardump get a copy whose response is scrubbed too.

A request is scrubbed in its flow once it has been sent (addon.hide_credentials). A response
cannot be: the client has yet to receive it as the upstream sent it, a `Set-Cookie` and an
upstream's echo of the caller's key included. So these three are handed a copy of the flow
with the response scrubbed by the request's credentials and its own credential headers.
"""

from __future__ import annotations

import functools
import weakref

from mitmproxy import http

from .codings import DecodeError, decode_body
from .credentials import Scrubber, Secrets, scrub_headers

_SHOWN_BODY_LIMIT = 16 << 20  # a larger response body is not shown, rather than scanned
_secrets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # flow -> its request's


def remember(flow: http.HTTPFlow, secrets: Secrets | None) -> None:
    """The credentials of `flow`'s request, for its response's copy."""
    if secrets is not None:
        _secrets[flow] = secrets


def shown(flow):
    """`flow` as a printer may show it: an HTTP flow's copy with the response scrubbed."""
    if not isinstance(flow, http.HTTPFlow) or flow.response is None:
        return flow
    secrets = _secrets.get(flow) or Secrets()
    copy = flow.copy()
    response = copy.response
    for name, value in response.headers.items(multi=True):
        secrets.add_header(name, value)
    encoding, body = response.headers.get("content-encoding", ""), response.raw_content
    # No body is kept of a response streamed to the client: its headers stay as they are.
    response.headers = _headers(scrub_headers(response.headers.items(multi=True), secrets),
                                keep_coding=body is None)
    if response.trailers:
        response.trailers = _headers(scrub_headers(response.trailers.items(multi=True), secrets))
    if body:
        response.raw_content = _body(body, encoding, secrets)
    return copy


def _headers(pairs: list[tuple[str, str]], keep_coding: bool = True) -> http.Headers:
    # The body shown is decoded: it carries no coding, and its length is its own.
    return http.Headers([(name.encode(), value.encode()) for name, value in pairs
                         if keep_coding or name.lower() not in ("content-encoding", "content-length")])


def _body(body: bytes, encoding: str, secrets: Secrets) -> bytes:
    try:
        body = decode_body(body, encoding, _SHOWN_BODY_LIMIT)
    except DecodeError as error:
        return f"<body not shown: {error}>".encode()
    scrubber = Scrubber(secrets)
    return bytes(scrubber.text(scrubber.body_fields(body, "", "response body"), "response body"))


def guard(master) -> None:
    """Hand mitmproxy's printer and savers (where present) the scrubbed copy of each flow.
    Once per master: a reloaded script guards them again, which changes nothing."""
    dumper = master.addons.get("dumper")
    if dumper is not None:
        dumper.echo_flow = _with_shown(dumper.echo_flow)
    save = master.addons.get("save")
    if save is not None and not _guarded(save.save_flow):
        original = save.save_flow

        def save_flow(flow) -> None:
            original(shown(flow))
            save.active_flows.discard(flow)  # saved, as its copy

        save_flow.vcr_shown = True
        save.save_flow = save_flow
    har = master.addons.get("savehar")
    if har is not None:
        har._save_flow = _with_shown(har._save_flow)


def _guarded(method) -> bool:
    return getattr(method, "vcr_shown", False)


def _with_shown(method):
    if _guarded(method):
        return method

    @functools.wraps(method)
    def wrapper(flow, *args, **kwargs):
        return method(shown(flow), *args, **kwargs)
    wrapper.vcr_shown = True
    return wrapper
