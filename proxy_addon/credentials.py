"""Credentials: found by name, by value and by shape, and replaced before anything is written.

- By name: headers (anything carrying authorization, api-key/apikey, a `-key`, `-token`,
  `-secret` or `-password` suffix, `auth` or `token` as a word, cookies), query parameters
  and form fields (names percent-decoded; also `key`, `token`, `sig`), and string values of
  JSON fields whose key is a credential name (`api_key`, `apiKey`, `access_token`,
  `client_secret`, `aws_secret_access_key`, `password`, ...) at any depth, in JSON bodies and in
  event streams. Never `max_tokens`, `usage.*_tokens`, logprobs' `token`, schemas (object
  values) or message text.
- By value: every value found by name (and the credential in `Bearer X`, `Basic X`, cookies) is
  replaced wherever else it appears in the interaction, percent- or JSON-encoded too, so a key
  the upstream echoes back is gone as well. Values shorter than MIN_ECHO characters are only
  replaced where they were named.
- By shape: known API key formats (OpenAI, OpenRouter, Anthropic, Google, AWS, GitHub, Slack,
  Groq, xAI, Hugging Face, JWTs), wherever they stand.

A header is dropped; a value elsewhere keeps its place, replaced by MARKER, so a cassette still
shows what was sent and a scrubbed recording matches the request that made it (incoming
requests are scrubbed the same way before matching).
"""

from __future__ import annotations

import base64
import copy
import binascii
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

MARKER = "REDACTED"
MIN_ECHO = 8

_COOKIE_HEADERS = frozenset(("cookie", "set-cookie", "cookie2", "set-cookie2"))
_NAME_WORDS = frozenset(("auth", "authorization", "token", "secret", "password", "passwd",
                         "passphrase", "credential", "credentials", "apikey", "signature",
                         "cookie"))
_NAME_SUFFIXES = ("key", "token", "secret", "password")
_PARAM_NAMES = frozenset(("key", "token", "sig", "code_verifier"))
_FIELD_SUFFIXES = ("apikey", "apitoken", "accesstoken", "refreshtoken", "idtoken", "sessiontoken",
                   "authtoken", "securitytoken", "bearertoken", "secret", "secretkey",
                   "secretaccesskey", "privatekey", "password", "passwd", "passphrase",
                   "authorization", "subscriptionkey", "credential", "credentials")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # apiKey -> api Key
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def is_credential_header(name: str) -> bool:
    lower = name.lower()
    if lower in _COOKIE_HEADERS:
        return True
    if lower.startswith("access-control-"):  # CORS: Access-Control-Allow-Credentials: true
        return False
    words = _words(name)
    joined = "".join(words)
    return (bool(words) and ("apikey" in joined or "authorization" in joined
                             or any(w in _NAME_WORDS for w in words)
                             or words[-1] in _NAME_SUFFIXES))


def is_credential_param(name: str) -> bool:
    """A query parameter or form field (name as sent, percent-decoded here)."""
    decoded = unquote_plus(name)
    return decoded.lower() in _PARAM_NAMES or is_credential_header(decoded)


def is_credential_field(name: str) -> bool:
    """A JSON field whose string value is a credential."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    # Header names held in JSON (a gateway's config, an echo of the request) count as headers.
    return (squashed.endswith(_FIELD_SUFFIXES) or squashed in ("cookie", "setcookie")
            or ("-" in name and is_credential_header(name)))


# Shapes of API keys and tokens, named for the findings `vcr-proxy check` prints.
_SHAPES = {
    "OpenRouter key": r"sk-or-v1-[0-9a-f]{32,}",
    "Anthropic key": r"sk-ant-(?:api|admin|oat|ort)\d\d-[A-Za-z0-9_-]{20,}",
    "OpenAI key": r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{32,}",
    "Google API key": r"AIza[0-9A-Za-z_-]{35}",
    "Google OAuth token": r"ya29\.[0-9A-Za-z_-]{20,}",
    "AWS access key id": r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    "GitHub token": r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    "Slack token": r"xox[abposr]-[A-Za-z0-9-]{10,}",
    "xAI key": r"xai-[A-Za-z0-9]{40,}",
    "Groq key": r"gsk_[A-Za-z0-9]{40,}",
    "Hugging Face token": r"hf_[A-Za-z0-9]{30,}",
    "JWT": r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
}
_SHAPE_TEXT = "|".join(f"(?P<s{i}>{pattern})" for i, pattern in enumerate(_SHAPES.values()))
# Not inside a longer word: `task-...` is no OpenAI key.
KEY_SHAPES = re.compile(rf"(?<![A-Za-z0-9_-])(?:{_SHAPE_TEXT})")
_KEY_SHAPES_BYTES = re.compile(KEY_SHAPES.pattern.encode())
_SHAPE_NAMES = list(_SHAPES)


def shape_name(match: re.Match) -> str:
    return _SHAPE_NAMES[int(match.lastgroup[1:])]


# A JSON string member `"name": "value"`: the value is replaced when the name is a credential.
_MEMBER = r'"((?:[^"\\\r\n]|\\.)*)"\s*:\s*"((?:[^"\\\r\n]|\\.)*)"'
_MEMBER_TEXT = re.compile(_MEMBER)
_MEMBER_BYTES = re.compile(_MEMBER.encode())
# Cheap test before the member scan: a quoted name ending like a credential, then a string.
_MAYBE_FIELD = re.compile(rb'(?i)(?:key|token|secret|passw(?:or)?d|passphrase|authorization|'
                          rb'credentials?)"\s*:\s*"')


class Secrets:
    """Credential values found by name in one exchange, to be replaced wherever they echo."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> None:
        value = value.strip()
        if not value or value == MARKER:
            return
        self.values.add(value)
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token", "key", "bot", "digest"):
            self.add(rest)
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    return
                self.add(password)

    def add_header(self, name: str, value: str) -> None:
        """A header's value, if the header carries a credential."""
        if name.lower() in _COOKIE_HEADERS:
            self.add_cookies(value)
        elif is_credential_header(name):
            self.add(value)

    def add_cookies(self, header_value: str) -> None:
        for pair in header_value.split(";"):
            name, sep, value = pair.partition("=")
            if sep and name.strip().lower() not in ("path", "domain", "expires", "max-age",
                                                    "samesite"):
                self.add(value)

    def echoes(self) -> list[str]:
        """Each value in every form it may take in a URL or a body, longest first."""
        forms = set()
        for value in self.values:
            if len(value) < MIN_ECHO:
                continue
            forms.update((value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]))
        return sorted(forms, key=len, reverse=True)


class Scrubber:
    """Scrubs the parts of one exchange, collecting credential values on the way; `found` lists
    what was changed, each as a place (never the value)."""

    def __init__(self, secrets: Secrets | None = None):
        self.secrets = secrets or Secrets()
        self.found: list[str] = []
        self._echoes: list[str] | None = None
        self._echo_bytes: list[bytes] | None = None

    # -- by name; collects values --

    def headers(self, headers: dict[str, list[str]], where: str) -> None:
        """Drops credential headers from a header map in place."""
        for name in [n for n in headers if is_credential_header(n)]:
            self.header_values(name, headers.pop(name))
            self.found.append(f"{where} header {name}")

    def header_values(self, name: str, values: Iterable[str]) -> None:
        for value in values:
            self.secrets.add_header(name, value)
        self._echoes = None

    def query(self, query: str, where: str) -> str:
        if not query:
            return query
        pairs = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            if sep and value != MARKER and is_credential_param(name):
                self.secrets.add(unquote_plus(value))
                self.found.append(f"{where} parameter {unquote_plus(name)}")
                pair = f"{name}={MARKER}"
            pairs.append(pair)
        self._echoes = None
        return "&".join(pairs)

    def url(self, url: str, where: str = "request url") -> str:
        parts = urlsplit(url)
        if not parts.query:
            return url
        query = self.query(parts.query, where)
        return url if query == parts.query else urlunsplit(parts._replace(query=query))

    def form(self, form: dict[str, list[str]], where: str = "request form") -> None:
        for name in list(form):
            if is_credential_param(name) and any(v != MARKER for v in form[name]):
                for value in form[name]:
                    self.secrets.add(value)
                form[name] = [MARKER] * len(form[name])
                self.found.append(f"{where} field {name}")
        self._echoes = None

    def body_fields(self, body, content_type: str, where: str):
        """Credential fields of a urlencoded, multipart or JSON body (or event stream)."""
        if not body:
            return body
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            return self._urlencoded(body, where)
        if kind == "multipart/form-data":
            return self._multipart(body, content_type, where)
        return self._json_fields(body, where)

    def _urlencoded(self, body, where: str):
        text = body if isinstance(body, str) else bytes(body).decode("latin-1")
        scrubbed = self.query(text.strip(), f"{where} form")
        if scrubbed == text.strip():
            return body
        return scrubbed if isinstance(body, str) else scrubbed.encode("latin-1")

    def _multipart(self, body, content_type: str, where: str):
        boundary = re.search(r'boundary="?([^";]+)"?', content_type)
        if not boundary:
            return body
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        part = re.compile(rb'(?is)(content-disposition:[^\r\n]*?\bname="([^"]*)"[^\r\n]*\r?\n'
                          rb'(?:[^\r\n]+\r?\n)*\r?\n)(.*?)(?=\r?\n--' + re.escape(boundary.group(1).encode()) + rb')')

        def replace(match: re.Match) -> bytes:
            name = match.group(2).decode("utf-8", "replace")
            if not is_credential_param(name) or match.group(3) == MARKER.encode():
                return match.group(0)
            self.secrets.add(match.group(3).decode("utf-8", "replace"))
            self.found.append(f"{where} multipart field {name}")
            return match.group(1) + MARKER.encode()

        scrubbed = part.sub(replace, raw)
        self._echoes = None
        if scrubbed == raw:
            return body
        return scrubbed.decode("utf-8", "surrogateescape") if isinstance(body, str) else scrubbed

    def _json_fields(self, body, where: str):
        is_text = isinstance(body, str)
        probe = body.encode("utf-8", "surrogateescape") if is_text else body
        if not _MAYBE_FIELD.search(probe):
            return body
        member = _MEMBER_TEXT if is_text else _MEMBER_BYTES
        marker = MARKER if is_text else MARKER.encode()
        changed = False

        def replace(match: re.Match):
            nonlocal changed
            name, value = match.group(1), match.group(2)
            try:
                name_text = json.loads(f'"{name if is_text else name.decode("utf-8", "replace")}"')
                value_text = json.loads(f'"{value if is_text else value.decode("utf-8", "replace")}"')
            except ValueError:
                return match.group(0)
            if not is_credential_field(name_text) or value_text in ("", MARKER):
                return match.group(0)
            self.secrets.add(value_text)
            self.found.append(f"{where} field {name_text}")
            changed = True
            offset = match.start(0)
            whole = match.group(0)
            return whole[:match.start(2) - offset] + marker + whole[match.end(2) - offset:]

        scrubbed = member.sub(replace, body)
        self._echoes = None
        return _same_type(scrubbed, body) if changed else body

    # -- by value and by shape --

    def text(self, value, where: str):
        """`value` (str, bytes or bytearray) with every echoed credential and key shape replaced."""
        if not value:
            return value
        if isinstance(value, str):
            scrubbed = value
            for echo in self._text_echoes():
                scrubbed = scrubbed.replace(echo, MARKER)
            if scrubbed != value:
                self.found.append(f"{where}: a credential's value")
            return self._shapes(scrubbed, KEY_SHAPES, MARKER, where)
        scrubbed = value
        for echo in self._bytes_echoes():
            if echo in scrubbed:
                scrubbed = scrubbed.replace(echo, MARKER.encode())
        if scrubbed is not value:
            self.found.append(f"{where}: a credential's value")
        return _same_type(self._shapes(scrubbed, _KEY_SHAPES_BYTES, MARKER.encode(), where), value)

    def _shapes(self, value, pattern: re.Pattern, marker, where: str):
        if pattern.search(value) is None:
            return value

        def replace(match: re.Match):
            self.found.append(f"{where}: {shape_name(match)}")
            return marker

        return pattern.sub(replace, value)

    def _text_echoes(self) -> list[str]:
        if self._echoes is None:
            self._echoes = self.secrets.echoes()
            self._echo_bytes = [e.encode("utf-8", "surrogateescape") for e in self._echoes]
        return self._echoes

    def _bytes_echoes(self) -> list[bytes]:
        self._text_echoes()
        return self._echo_bytes

    def header_map(self, headers: dict[str, list[str]], where: str) -> None:
        for name, values in headers.items():
            headers[name] = [self.text(v, f"{where} header {name}") for v in values]


def _same_type(scrubbed, original):
    """bytes stay bytes (binary), a bytearray stays a bytearray (a long UTF-8 text body)."""
    if type(scrubbed) is type(original):
        return scrubbed
    return bytearray(scrubbed) if isinstance(original, bytearray) else bytes(scrubbed)


def _content_type(headers: dict[str, list[str]]) -> str:
    return next((v[0] for k, v in headers.items() if k.lower() == "content-type" and v), "")


def scrub_interaction(interaction, secrets: Secrets | None = None) -> list[str]:
    """Scrub a cassette's interaction in place; what changed, one place each (no values).

    `secrets`: values already known to be credentials (from headers not recorded)."""
    scrubber = Scrubber(secrets)
    request, response = interaction.request, interaction.response
    scrubber.headers(request.headers, "request")
    scrubber.headers(request.trailer, "request trailer")
    scrubber.headers(response.headers, "response")
    scrubber.headers(response.trailer, "response trailer")
    request.url = scrubber.url(request.url)
    scrubber.form(request.form)
    request.body = scrubber.body_fields(request.body, _content_type(request.headers), "request body")
    response.body = scrubber.body_fields(response.body, "", "response body")
    request.url = scrubber.text(request.url, "request url")
    request.body = scrubber.text(request.body, "request body")
    response.body = scrubber.text(response.body, "response body")
    for name, values in request.form.items():
        request.form[name] = [scrubber.text(v, f"request form field {name}") for v in values]
    for where, header in (("request", request.headers), ("request trailer", request.trailer),
                          ("response", response.headers), ("response trailer", response.trailer)):
        scrubber.header_map(header, where)
    return scrubber.found


def request_secrets(headers: Iterable[tuple[str, str]], url: str, body: bytes,
                    content_type: str) -> Secrets:
    """The credentials a request carries by name (headers, query, form, JSON fields)."""
    scrubber = Scrubber()
    for name, value in headers:
        scrubber.secrets.add_header(name, value)
    scrubber.url(url)
    scrubber.body_fields(body, content_type, "request body")
    return scrubber.secrets


def scrub_request(url: str, headers: Iterable[tuple[str, str]], body: bytes,
                  content_type: str) -> tuple[str, bytes, Secrets]:
    """An incoming request's URL and body as a recording of it holds them, and its secrets."""
    scrubber = Scrubber()
    for name, value in headers:
        scrubber.secrets.add_header(name, value)
    url = scrubber.url(url)
    body = scrubber.body_fields(body, content_type, "request body")
    return scrubber.text(url, "url"), scrubber.text(body, "body"), scrubber.secrets


def scrub_line(text: str, secrets: Secrets | None = None) -> str:
    """A log line or error message without credentials: URLs' credential parameters, the
    exchange's known values, and key shapes."""
    scrubber = Scrubber(secrets)
    text = re.sub(r"[?&][^\s\"']*", lambda m: m.group(0)[0] + scrubber.query(m.group(0)[1:], ""),
                  text)
    return scrubber.text(text, "")


def cassette_findings(cassette) -> list[str]:
    """Where a cassette holds a credential (what `redact` would change), one place each."""
    found: list[str] = []
    for interaction in cassette.interactions:
        places = scrub_interaction(copy.deepcopy(interaction))
        found += [f"interaction #{interaction.id} {place}" for place in dict.fromkeys(places)]
    return found


def redact_cassette(cassette) -> bool:
    """Scrub every interaction of `cassette` in place; whether anything changed."""
    changed = False
    for interaction in cassette.interactions:
        changed |= bool(scrub_interaction(interaction))
    return changed
