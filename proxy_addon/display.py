"""What mitmproxy's own printers, savers and log lines are given: mitmdump's flow lines,
save_stream_file and hardump get a copy of each flow with everything scrubbed that the addon
could not scrub in place, and mitmproxy's log lines lose the raw bytes they quote.

A request is scrubbed in its flow once it has been sent (addon.hide_credentials). A response
cannot be: the client has yet to receive it as the upstream sent it, a `Set-Cookie` and an
upstream's echo of the caller's key included. Nor can a WebSocket's messages, relayed as they
come. And a CONNECT that mitmproxy refuses (proxyauth's 407) never reaches the addon's request
hook. So these three are handed a copy of the flow with the response, the messages, the error
and the request's headers scrubbed by the request's credentials and the response's own.
"""

from __future__ import annotations

import functools
import logging
import re
import weakref

from mitmproxy import http
from mitmproxy.websocket import WebSocketMessage

from .codings import DecodeError, decode_body
from .credentials import Scrubber, Secrets, scrub_headers, scrub_line

_SHOWN_BODY_LIMIT = 16 << 20  # a larger response body is not shown, rather than scanned
_secrets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # flow -> its request's


def remember(flow: http.HTTPFlow, secrets: Secrets | None) -> None:
    """The credentials of `flow`'s request, for its response's copy."""
    if secrets is not None:
        _secrets[flow] = secrets


def share(flow: http.HTTPFlow, secrets: Secrets) -> None:
    """From now on `flow` is shown without `secrets` too, the very object: what its owner learns
    later (a WebSocket session's credentials, found message by message) counts as well."""
    known = _secrets.get(flow)
    if known is not None and known is not secrets:
        secrets.values |= known.values
    _secrets[flow] = secrets


def shown(flow):
    """`flow` as a printer may show it: an HTTP flow's scrubbed copy."""
    if not isinstance(flow, http.HTTPFlow):
        return flow
    secrets = _secrets.get(flow) or Secrets()
    copy = flow.copy()
    request, response = copy.request, copy.response
    # A request hide_credentials scrubbed shows MARKER where a credential was: nothing to add.
    for name, value in request.headers.items(multi=True):
        secrets.add_header(name, value)
    for message in (request, response):
        if message is not None and message.trailers:
            for name, value in message.trailers.items(multi=True):
                secrets.add_header(name, value)
    if response is not None:
        for name, value in response.headers.items(multi=True):
            secrets.add_header(name, value)
    request.path = scrub_line(request.path, secrets)
    request.headers = _headers(scrub_headers(request.headers.items(multi=True), secrets))
    if request.trailers:
        request.trailers = _headers(scrub_headers(request.trailers.items(multi=True), secrets))
    if response is not None:
        encoding, body = response.headers.get("content-encoding", ""), response.raw_content
        # No body is kept of a response streamed to the client: its headers stay as they are.
        response.headers = _headers(scrub_headers(response.headers.items(multi=True), secrets),
                                    keep_coding=body is None)
        if response.trailers:
            response.trailers = _headers(scrub_headers(response.trailers.items(multi=True), secrets))
        if body:
            response.raw_content = _body(body, encoding, secrets)
    if copy.websocket is not None:
        for message in copy.websocket.messages:
            message.content = _message(message.content, secrets)
        if copy.websocket.close_reason:
            copy.websocket.close_reason = quoted(copy.websocket.close_reason, secrets)
    if copy.error is not None:  # mitmproxy's errors quote what it refused (a bad Content-Length)
        copy.error.msg = quoted(copy.error.msg, secrets)
    return copy


def _message(content: bytes, secrets: Secrets) -> bytes:
    """A WebSocket message's content as shown: JSON credential fields, the request's
    credentials and key shapes replaced (a Realtime session.update may carry a key)."""
    scrubber = Scrubber(secrets)
    return bytes(scrubber.text(scrubber.body_fields(content, "", "websocket message"),
                               "websocket message"))


# A bytes literal in a message (`b'...'`, `b"..."`): mitmproxy quotes so the raw bytes of what it
# could not parse, a request line, a header line, a header value, headers cut off mid-way.
_BYTES_LITERAL = re.compile(r"""(?<![\w])b(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_NOT_SHOWN = "b'<not shown: raw bytes may hold a credential>'"


def quoted(text: str, secrets: Secrets | None = None) -> str:
    """One of mitmproxy's own messages as it may be shown. The raw bytes it quotes are left out:
    they are what it could not parse, so no rule can tell the credential in them (a header line
    without its colon, a header value alone); the rest loses credential parameters, known
    credentials and key shapes."""
    if "b'" in text or 'b"' in text:
        text = _BYTES_LITERAL.sub(_NOT_SHOWN, text)
    return scrub_line(text, secrets)


class _QuietFilter(logging.Filter):
    """Applies `quoted` to mitmproxy's log records, tracebacks included, before a handler
    formats them. The addon's own lines ("vcr-proxy") are scrubbed where they are made."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "vcr-proxy":
            return True
        message = record.getMessage()
        text = quoted(message)
        if text != message:
            record.msg, record.args = text, None
        if record.exc_info and not record.exc_text:
            record.exc_text = quoted(logging.Formatter().formatException(record.exc_info))
        return True


def guard_logs() -> None:
    """Put `_QuietFilter` on every handler of the root logger (mitmproxy's terminal log, its
    startup error check), where mitmproxy's records go. Again at each call, for handlers added
    since; never twice on one."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietFilter) for f in handler.filters):
            handler.addFilter(_QuietFilter())


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
    from mitmproxy import ctx

    dumper = master.addons.get("dumper")
    if dumper is not None:
        # At flow_detail 1 (mitmdump's default) a flow is its request line, scrubbed in place
        # already, and its status line: no copy is needed but for an error's text.
        dumper.echo_flow = _with_shown(dumper.echo_flow, lambda flow: ctx.options.flow_detail >= 2
                                       or flow.error is not None)
        dumper.websocket_end = _with_shown(dumper.websocket_end)
        if not _guarded(dumper._echo_message):
            # Each WebSocket message is printed as it passes (flow_detail 3 and up), the flow's
            # last one: that message alone is scrubbed, not a copy of all the flow's so far.
            echo_message = dumper._echo_message

            def _echo_message(message, flow) -> None:
                if isinstance(message, WebSocketMessage):
                    message = WebSocketMessage(message.type, message.from_client,
                                               _message(message.content, _secrets.get(flow) or Secrets()),
                                               message.timestamp)
                echo_message(message, flow)

            _echo_message.vcr_shown = True
            dumper._echo_message = _echo_message
    save = master.addons.get("save")
    if save is not None and not _guarded(save.save_flow):
        original = save.save_flow

        def save_flow(flow) -> None:
            if save.stream is None:  # no save_stream_file: nothing is written, nothing to copy
                return original(flow)
            original(shown(flow))
            save.active_flows.discard(flow)  # saved, as its copy

        save_flow.vcr_shown = True
        save.save_flow = save_flow
    har = master.addons.get("savehar")
    if har is not None:
        har._save_flow = _with_shown(har._save_flow, lambda flow: bool(ctx.options.hardump))


def _guarded(method) -> bool:
    return getattr(method, "vcr_shown", False)


def _with_shown(method, needed=lambda flow: True):
    """`method` given the scrubbed copy of each flow for which `needed(flow)` (a copy costs
    about as much as answering a replayed request)."""
    if _guarded(method):
        return method

    @functools.wraps(method)
    def wrapper(flow, *args, **kwargs):
        return method(shown(flow) if needed(flow) else flow, *args, **kwargs)
    wrapper.vcr_shown = True
    return wrapper
