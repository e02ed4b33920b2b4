"""What of an exchange may reach the disk: credentials never, other headers by policy."""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Never written, whatever the header policy (compared in lower case).
CREDENTIAL_HEADERS = frozenset((
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "cookie", "set-cookie", "x-vcr-cassette",
))
# Query parameters that carry keys (Gemini's `?key=`).
CREDENTIAL_PARAMS = frozenset(("key", "api_key", "api-key", "apikey", "access_token"))
# Request headers a Go client carries outside its header map, or that belong to one hop.
REQUEST_CONNECTION_HEADERS = frozenset((
    "host", "content-length", "transfer-encoding", "connection", "proxy-connection",
    "keep-alive", "te", "trailer", "upgrade",
))
# Go's transport moves a response's Transfer-Encoding into its own field.
RESPONSE_CONNECTION_HEADERS = frozenset(("transfer-encoding",))
# Dropped as Go's transport drops them when it decodes a compressed body for the caller.
DECODED_BODY_HEADERS = frozenset(("content-encoding", "content-length"))

HEADER_POLICIES = ("minimal", "all")
MINIMAL_REQUEST_HEADERS = frozenset(("accept", "content-type", "user-agent"))
MINIMAL_RESPONSE_HEADERS = frozenset(("content-type",))

def is_credential_param(name: str) -> bool:
    return name.lower() in CREDENTIAL_PARAMS


def redact_query(query: str) -> str:
    """The query without credential parameters, the rest byte for byte as sent."""
    kept = [pair for pair in query.split("&")
            if pair and not is_credential_param(unquote_plus(pair.partition("=")[0]))]
    return "&".join(kept)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=redact_query(parts.query)))


def request_headers(headers: list[tuple[str, str]], policy: str) -> list[tuple[str, str]]:
    """The request headers a recording keeps under `policy` (names as sent)."""
    return [(name, value) for name, value in headers
            if _keep(name.lower(), policy, MINIMAL_REQUEST_HEADERS, REQUEST_CONNECTION_HEADERS)]


def response_headers(headers: list[tuple[str, str]], policy: str,
                     decoded: bool) -> list[tuple[str, str]]:
    dropped = RESPONSE_CONNECTION_HEADERS | (DECODED_BODY_HEADERS if decoded else frozenset())
    return [(name, value) for name, value in headers
            if _keep(name.lower(), policy, MINIMAL_RESPONSE_HEADERS, dropped)]


def _keep(lower: str, policy: str, minimal: frozenset[str], dropped: frozenset[str]) -> bool:
    if lower in CREDENTIAL_HEADERS or lower.startswith(":"):
        return False
    if policy == "minimal":
        return lower in minimal
    return lower not in dropped
