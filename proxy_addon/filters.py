"""What of an exchange may reach the disk: credentials never, other headers by policy."""

from __future__ import annotations

import re
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


# Shapes of the major providers' API keys, as they appear in headers, URLs or bodies.
KEY_SHAPES = re.compile("|".join((
    r"sk-or-v1-[0-9a-f]{32,}",  # OpenRouter
    r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{20,}",  # Anthropic
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}",  # OpenAI
    r"AIza[0-9A-Za-z_-]{35}",  # Google
    r"xai-[A-Za-z0-9]{40,}",  # xAI
    r"gsk_[A-Za-z0-9]{40,}",  # Groq
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
)))
REDACTED = "REDACTED"


def _texts(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def credential_findings(cassette) -> list[str]:
    """Where a cassette holds something that looks like a credential, one note each."""
    found = []
    for interaction in cassette.interactions:
        where = f"interaction #{interaction.id}"
        for side, message in (("request", interaction.request), ("response", interaction.response)):
            for field_name in ("headers", "trailer"):
                for name, values in getattr(message, field_name).items():
                    if name.lower() in CREDENTIAL_HEADERS:
                        found.append(f"{where} {side} header {name}")
                    elif any(KEY_SHAPES.search(v) for v in values):
                        found.append(f"{where} {side} header {name} holds an API key")
            if KEY_SHAPES.search(_texts(message.body)):
                found.append(f"{where} {side} body holds an API key")
        request = interaction.request
        if redact_url(request.url) != request.url or KEY_SHAPES.search(request.url):
            found.append(f"{where} request url has a key parameter")
        if any(is_credential_param(k) for k in request.form):
            found.append(f"{where} request form has a key parameter")
    return found


def redact_cassette(cassette) -> bool:
    """Scrub credentials from `cassette` in place; whether anything changed."""
    changed = False

    def scrub(text):
        nonlocal changed
        if isinstance(text, bytes):
            return text
        cleaned = KEY_SHAPES.sub(REDACTED, text)
        changed |= cleaned != text
        return cleaned

    for interaction in cassette.interactions:
        request = interaction.request
        for message in (request, interaction.response):
            for field_name in ("headers", "trailer"):
                header = getattr(message, field_name)
                for name in list(header):
                    if name.lower() in CREDENTIAL_HEADERS:
                        del header[name]
                        changed = True
                    else:
                        header[name] = [scrub(v) for v in header[name]]
            message.body = scrub(message.body)
        url = scrub(redact_url(request.url))
        changed |= url != request.url
        request.url = url
        for name in [k for k in request.form if is_credential_param(k)]:
            del request.form[name]
            changed = True
    return changed
