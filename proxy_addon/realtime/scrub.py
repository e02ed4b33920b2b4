"""Credentials out of a realtime session, by the rules of credentials.py: the handshake's
headers (by the `vcr_headers` policy, credential headers dropped), its URL's `key=` and other
credential parameters, credentials passed as subprotocols (OpenAI's browser clients send
`openai-insecure-api-key.<key>` and `openai-insecure-ephemeral-key.<ek_...>`), and in every
message JSON credential fields, the session's known credentials wherever they echo, and key
shapes. Scrubbing the incoming side the same way lets a scrubbed recording match its client."""

from __future__ import annotations

from collections.abc import Iterable

from .. import filters
from ..credentials import CREDENTIAL_SUBPROTOCOL, MARKER, Scrubber, Secrets

# Hop-by-hop and per-connection WebSocket headers: nothing a replay needs, noise in a recording.
_HANDSHAKE_HEADERS = frozenset(("sec-websocket-key", "sec-websocket-accept", "sec-websocket-version",
                                "sec-websocket-extensions", "sec-websocket-protocol", "upgrade",
                                "connection"))


def subprotocol_list(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def collect(secrets: Secrets, url: str, headers: Iterable[tuple[str, str]]) -> Secrets:
    """Add the handshake's credentials to `secrets`: credential headers, subprotocols, URL
    parameters."""
    headers = list(headers)
    for name, value in headers:
        if name.lower() != "sec-websocket-protocol":
            secrets.add_header(name, value)
    # All offered at once, however many header lines carry them (`token` on one, the key on
    # the next is still a key): credentials.subprotocol_credentials.
    offered = ", ".join(subprotocol_list(v for n, v in headers if n.lower() == "sec-websocket-protocol"))
    if offered:
        secrets.add_header("Sec-WebSocket-Protocol", offered)
    Scrubber(secrets).url(url)
    return secrets


def subprotocols(values: list[str], secrets: Secrets) -> list[str]:
    scrubber = Scrubber(secrets)
    shown = []
    for protocol in values:
        found = CREDENTIAL_SUBPROTOCOL.match(protocol)
        if found:
            protocol = f"{found.group(1)}.{MARKER}"
        shown.append(scrubber.text(protocol, "subprotocol"))
    return shown


def url(value: str, secrets: Secrets) -> str:
    scrubber = Scrubber(secrets)
    return scrubber.text(scrubber.url(value), "url")


def headers(pairs: Iterable[tuple[str, str]], policy: str, secrets: Secrets,
            response: bool = False) -> dict[str, list[str]]:
    pairs = [(n, v) for n, v in pairs if n.lower() not in _HANDSHAKE_HEADERS]
    kept = (filters.response_headers(pairs, policy, decoded=True) if response
            else filters.request_headers(pairs, policy))
    result: dict[str, list[str]] = {}
    for name, value in kept:
        result.setdefault(name, []).append(value)
    scrubber = Scrubber(secrets)
    scrubber.headers(result, "handshake")
    scrubber.header_map(result, "handshake")
    return result


def message(data: str | bytes, secrets: Secrets) -> str | bytes:
    """A message as it may be written: JSON credential fields by name (their values then join
    `secrets`), known credentials by value, key shapes. Binary stays bytes: unchanged unless it
    holds a credential as text (Gemini Live sends its JSON in binary frames)."""
    scrubber = Scrubber(secrets)
    if isinstance(data, str):
        return scrubber.text(scrubber.body_fields(data, "", "message"), "message")
    scrubbed = scrubber.text(scrubber.body_fields(bytes(data), "", "message"), "message")
    return bytes(scrubbed)
