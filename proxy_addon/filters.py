"""What of an exchange may reach the disk: credentials never (see credentials.py), other headers
by policy."""

from __future__ import annotations

from .credentials import Scrubber, is_credential_header, is_credential_param  # noqa: F401

# Request headers a Go client carries outside its header map, that belong to one hop, or that
# only steer this proxy.
REQUEST_CONNECTION_HEADERS = frozenset((
    "host", "content-length", "transfer-encoding", "connection", "proxy-connection",
    "keep-alive", "te", "trailer", "upgrade", "x-vcr-cassette", "x-vcr-fault",
))
# Go's transport moves a response's Transfer-Encoding into its own field.
# X-Vcr-Proxy is this proxy's note to the client (recorded/replayed from where).
RESPONSE_CONNECTION_HEADERS = frozenset(("transfer-encoding", "x-vcr-proxy"))
# Dropped as Go's transport drops them when it decodes a compressed body for the caller.
DECODED_BODY_HEADERS = frozenset(("content-encoding", "content-length"))

HEADER_POLICIES = ("minimal", "all")
# Content-Encoding: a request body is recorded decoded; the header says how it was sent.
MINIMAL_REQUEST_HEADERS = frozenset(("accept", "content-type", "user-agent", "content-encoding"))
# X-Amzn-Errortype: Bedrock (and AWS's other REST JSON APIs) name an error's type only there, and
# boto3 and the AWS SDK for JavaScript raise their exception by it (ValidationException,
# ThrottlingException); without it a replayed error is a bare ClientError "400".
# X-Should-Retry: the openai and anthropic SDKs retry an error or not by it; without it a
# recorded 5xx the API said not to retry is retried on replay, and the retry is a miss.
MINIMAL_RESPONSE_HEADERS = frozenset(("content-type", "x-amzn-errortype", "x-should-retry"))


def redact_url(url: str) -> str:
    """The URL with each credential parameter's value replaced by the marker, the rest byte for
    byte as sent."""
    return Scrubber().url(url)


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
    if lower.startswith(":") or is_credential_header(lower):
        return False
    if policy == "minimal":
        return lower in minimal
    return lower not in dropped
