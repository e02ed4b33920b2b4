"""What Go's net/http does to a request and response before go-vcr records them."""

from __future__ import annotations

from urllib.parse import unquote_plus

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# net/http's StatusText.
STATUS_TEXT = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request URI Too Long", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a teapot",
    421: "Misdirected Request", 422: "Unprocessable Entity", 423: "Locked",
    424: "Failed Dependency", 425: "Too Early", 426: "Upgrade Required",
    428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    510: "Not Extended", 511: "Network Authentication Required",
}


def canonical_header_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: `content-type` -> `Content-Type`; keys with bytes
    outside the HTTP token set are left as they are."""
    if not key or any(c not in _TOKEN for c in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def status_line(code: int, reason: str | None, http_version: str) -> str:
    """Go's Response.Status: the wire's status line over HTTP/1.x, Go's own text over HTTP/2."""
    if http_version.startswith("HTTP/1") and reason:
        return f"{code} {reason}"
    return f"{code} {STATUS_TEXT.get(code, '')}"


def proto_numbers(http_version: str) -> tuple[str, int, int]:
    """("HTTP/2.0", 2, 0) for what mitmproxy calls "HTTP/2.0" or "HTTP/2"."""
    if http_version.upper().startswith("HTTP/2"):
        return "HTTP/2.0", 2, 0
    if http_version.upper().startswith("HTTP/3"):
        return "HTTP/3.0", 3, 0
    if http_version == "HTTP/1.0":
        return "HTTP/1.0", 1, 0
    return "HTTP/1.1", 1, 1


def parse_query(query: str) -> dict[str, list[str]]:
    """url.ParseQuery: `&`-separated pairs; a pair with `;` or a bad escape is skipped."""
    values: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        try:
            key, value = _unescape(key), _unescape(value)
        except ValueError:
            continue
        values.setdefault(key, []).append(value)
    return values


def _unescape(text: str) -> str:
    # Go rejects a '%' not followed by two hex digits, where Python would keep it.
    index = text.find("%")
    while index != -1:
        if len(text) < index + 3 or any(c not in "0123456789abcdefABCDEF" for c in text[index + 1:index + 3]):
            raise ValueError(text)
        index = text.find("%", index + 3)
    return unquote_plus(text, errors="surrogateescape")


def parse_form(method: str, query: str, content_type: str, body: bytes) -> dict[str, list[str]]:
    """Request.ParseForm: an urlencoded POST, PUT or PATCH body's values, then the query's."""
    form: dict[str, list[str]] = {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    if method in ("POST", "PUT", "PATCH") and media_type == "application/x-www-form-urlencoded":
        form = parse_query(body.decode("utf-8", "replace"))
    for key, values in parse_query(query).items():
        form.setdefault(key, []).extend(values)
    return form
