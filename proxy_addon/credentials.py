"""Credentials: found by name, by value and by shape, and replaced before anything is written.

- By name: headers, query parameters, form fields (urlencoded or multipart) and JSON fields
  whose names say they hold a credential (the rules are the README's "Never on disk"; JSON
  names that only end like one, `token` or `key`, count when the value looks like a key, so
  logprobs' `token` stays).
- By value: every value found by name is replaced wherever else it appears in the interaction,
  raw, percent-, JSON- or slash-escaped, so a key the upstream echoes back is gone as well.
  Values shorter than MIN_ECHO characters are only replaced where they were named.
- By shape: known API key formats (OpenAI, OpenRouter, Anthropic, Google, AWS, GitHub, Slack,
  Groq, xAI, Hugging Face, JWTs), wherever they stand.

A header is dropped; a value elsewhere keeps its place, replaced by MARKER, so a cassette still
shows what was sent and a scrubbed recording matches the request that made it (incoming
requests are scrubbed the same way before matching).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import functools
import gzip
import json
import re
import threading
import zlib
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from . import scanning

MARKER = "REDACTED"
_MARKER_BYTES = MARKER.encode()
MIN_ECHO = 8

_COOKIE_HEADERS = frozenset(("cookie", "set-cookie", "cookie2", "set-cookie2"))
# Headers that are credentials by their exact name, which no rule below would find: the proxy's
# own control token (control.py's X-Vcr-Control) steers the proxy; shown in a flow line, saved
# in a flow file or recorded with vcr_headers=all, it would hand that to whoever reads them.
_SECRET_HEADERS = frozenset(("x-vcr-control",))
_NAME_WORDS = frozenset(("auth", "authorization", "authorisation", "authentication", "token", "secret",
                         "password", "passwd",
                         "passphrase", "credential", "credentials", "apikey", "signature",
                         "cookie"))
_NAME_SUFFIXES = ("key", "token", "secret", "password")
_PARAM_NAMES = frozenset(("key", "token", "sig", "code", "code_verifier", "pass", "pwd", "session",
                          "sessionid", "session_id", "sid"))
# JSON field names (lower case, only letters and digits) that hold a credential whatever their
# value, wherever they appear in the name.
_FIELD_PARTS = ("apikey", "apitoken", "accesstoken", "refreshtoken", "idtoken", "sessiontoken",
                "authtoken", "securitytoken", "bearertoken", "secret", "privatekey", "password",
                "passwd", "passphrase", "subscriptionkey", "accesskey", "clientkey")
# ... and those that do only at the end of the name ("credentialType" is no credential).
_FIELD_SUFFIXES = ("authorization", "authorisation", "authentication", "credential", "credentials")
# Names that hold a credential only when the value looks like one (long, no spaces): an auth
# token does, logprobs' "token": "Hello" and a "prompt_cache_key": "user-1" do not.
_AMBIGUOUS_SUFFIXES = ("token", "key", "auth", "bearer", "session", "sessionid", "cookie")
_TOKENIZER_FIELDS = frozenset(("eostoken", "bostoken", "padtoken", "unktoken", "septoken", "clstoken",
                               "masktoken"))


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # apiKey -> api Key
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


@functools.lru_cache(maxsize=4096)  # header names repeat: this runs for every request
def is_credential_header(name: str) -> bool:
    lower = name.lower()
    if lower in _COOKIE_HEADERS or lower in _SECRET_HEADERS:
        return True
    if lower.startswith("access-control-"):  # CORS: Access-Control-Allow-Credentials: true
        return False
    words = _words(name)
    joined = "".join(words)
    return (bool(words) and ("apikey" in joined or "authorization" in joined
                             or any(w in _NAME_WORDS for w in words)
                             or words[-1] in _NAME_SUFFIXES))


@functools.lru_cache(maxsize=4096)
def is_credential_param(name: str) -> bool:
    """A query parameter or form field (name as sent, percent-decoded here)."""
    decoded = unquote_plus(name)
    return decoded.lower() in _PARAM_NAMES or is_credential_header(decoded)


def looks_secret(value: str) -> bool:
    """Long, ASCII, no spaces, letters and digits: a key, not a logprob's token or a word."""
    return (len(value) >= 16 and value.isascii() and not any(c.isspace() for c in value)
            and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


@functools.lru_cache(maxsize=4096)
def _field_rule(name: str) -> str | None:
    """"always", "if long" (see _AMBIGUOUS_SUFFIXES) or None, for a JSON field name."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    # Header names held in JSON (a gateway's config, an echo of the request) count as headers.
    if (any(part in squashed for part in _FIELD_PARTS) or squashed.endswith(_FIELD_SUFFIXES)
            or ("-" in name and is_credential_header(name))):
        return "always"
    if squashed.endswith(_AMBIGUOUS_SUFFIXES) and squashed not in _TOKENIZER_FIELDS:
        return "if long"
    return None


def is_credential_field(name: str, value: str | None = None) -> bool:
    """A JSON field whose string value (`value`, when known) is a credential."""
    rule = _field_rule(name)
    return rule == "always" or (rule == "if long" and value is not None and looks_secret(value))


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
    "OpenAI ephemeral key": r"ek_[A-Za-z0-9]{24,}",
}
_SHAPE_TEXT = "|".join(f"(?P<s{i}>{pattern})" for i, pattern in enumerate(_SHAPES.values()))
# Not inside a longer word: `task-...` is no OpenAI key.
KEY_SHAPES = re.compile(rf"(?<![A-Za-z0-9_-])(?:{_SHAPE_TEXT})")
_KEY_SHAPES_BYTES = re.compile(KEY_SHAPES.pattern.encode())
_SHAPE_NAMES = list(_SHAPES)


def shape_name(match: re.Match) -> str:
    return _SHAPE_NAMES[int(match.lastgroup[1:])]


_SHAPE_PATTERNS = tuple(pattern.encode() for pattern in _SHAPES.values())
_SMALL = 1 << 20
# A JSON string member `"name": "value"`: the value is replaced when the name is a credential.
_MEMBER = r'"((?:[^"\\\r\n]|\\.)*)"\s*:\s*"((?:[^"\\\r\n]|\\.)*)"'
_MEMBER_BYTES = re.compile(_MEMBER.encode())


class _Remembered:
    """What scrubbing found in the larger bodies seen last, by body: the aliases of one anchor
    in a cassette, and a body that matching, recording and display each scrub, are scanned
    once. Bounded in bytes, since a proxy holds it for its life."""

    def __init__(self, budget: int):
        self.budget = budget
        self.size = 0
        self.entries: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            self.entries.move_to_end(key)
            return entry[0]

    def put(self, key, value, size: int) -> None:
        with self.lock:
            if size > self.budget or key in self.entries:
                return
            self.entries[key] = (value, size)
            self.size += size
            while self.size > self.budget:
                _, (_, dropped) = self.entries.popitem(last=False)
                self.size -= dropped


_REMEMBER_FROM = 64 << 10
_REMEMBERED = _Remembered(32 << 20)


# WebSocket clients that cannot set headers (browsers) pass the credential as a subprotocol:
# after the last dot of `<...key|token|secret|auth...>.<value>` (OpenAI's
# `openai-insecure-api-key.<key>`), or as the subprotocol after a bare `token`, `bearer`...
# (Deepgram's `["token", "<key>"]`).
CREDENTIAL_SUBPROTOCOL = re.compile(
    r"(?i)^([^.]*(?:key|token|secret|auth|bearer|password)[\w-]*)\.(.+)$")
_CREDENTIAL_WORDS = frozenset(("token", "bearer", "key", "apikey", "api-key", "api_key", "auth",
                               "authorization", "access_token", "secret", "password"))


def subprotocol_credentials(value: str) -> list[str]:
    """The credentials among the subprotocols of a Sec-WebSocket-Protocol value."""
    found, after_word = [], False
    for protocol in (part.strip() for part in value.split(",")):
        if not protocol:
            continue
        match = CREDENTIAL_SUBPROTOCOL.match(protocol)
        if match:
            found.append(match.group(2))
        elif after_word:
            found.append(protocol)
        after_word = protocol.lower() in _CREDENTIAL_WORDS
    return found


class Secrets:
    """Credential values found by name in one exchange, to be replaced wherever they echo."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def copy(self) -> "Secrets":
        copied = Secrets()
        copied.values = set(self.values)
        return copied

    def add(self, value: str) -> None:
        value = value.strip()
        if not value or value == MARKER:
            return
        self.values.add(value)
        parts = value.split(None, 1)
        if len(parts) == 2:  # "Bearer X", "ApiKey X", "SSWS X": the credential is the last part
            scheme, rest = parts
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
        elif name.lower() == "sec-websocket-protocol":
            for credential in subprotocol_credentials(value):
                self.add(credential)

    def add_cookies(self, header_value: str) -> None:
        for pair in header_value.split(";"):
            name, sep, value = pair.partition("=")
            if not sep:  # a bare value: `Cookie: S`
                if pair.strip().lower() not in ("secure", "httponly", "partitioned"):
                    self.add(pair)
            elif name.strip().lower() not in ("path", "domain", "expires", "max-age", "samesite"):
                self.add(value)

    def echoes(self) -> list[str]:
        """Each value in every form it may take in a URL or a body, longest first."""
        forms = set()
        for value in self.values:
            if len(value) < MIN_ECHO:
                continue
            escaped = json.dumps(value)[1:-1]
            forms.update((value, quote(value, safe=""), quote_plus(value), escaped,
                          escaped.replace("/", "\\/")))  # JSON encoders that escape slashes
        return sorted(forms, key=len, reverse=True)


class Scrubber:
    """Scrubs the parts of one exchange, collecting credential values on the way; `found` lists
    what was changed, each as a place (never the value)."""

    def __init__(self, secrets: Secrets | None = None):
        self.secrets = secrets or Secrets()
        self.found: list[str] = []
        self._echoes: tuple[bytes, ...] | None = None

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
        # Split on `;` too, as some servers do: what might separate a pair is a separator here.
        pieces = re.split(r"([&;])", query)
        for index in range(0, len(pieces), 2):
            name, sep, value = pieces[index].partition("=")
            if sep and value != MARKER and is_credential_param(name):
                self.secrets.add(unquote_plus(value))
                self.found.append(f"{where} parameter {unquote_plus(name)}")
                pieces[index] = f"{name}={MARKER}"
            elif sep and "%" in value:
                self._nested_query(unquote_plus(value), where, 3)
        self._echoes = None
        return "".join(pieces)

    def _nested_query(self, value: str, where: str, depth: int) -> None:
        """A parameter's value that is itself a URL or query, percent-encoded (`url=https%3A
        %2F%2Fx%2F%3Fapi_key%3D...`): its credentials are collected, for the by-value step to
        replace wherever they stand."""
        if depth and "=" in value:
            for pair in re.split(r"[&;]", (value.partition("?")[2] or value).partition("#")[0]):
                name, sep, inner = pair.partition("=")
                # As long as an echo: the by-value step replaces nothing shorter.
                if (sep and unquote_plus(inner).strip() != MARKER
                        and len(unquote_plus(inner).strip()) >= MIN_ECHO and is_credential_param(name)):
                    self.secrets.add(unquote_plus(inner))
                    self.found.append(f"{where} parameter {unquote_plus(name)}")
                elif sep and "%" in inner:
                    self._nested_query(unquote_plus(inner), where, depth - 1)

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
        if len(body) < _REMEMBER_FROM or isinstance(body, bytearray):
            return self._body_fields(body, content_type, where)
        data = _as_bytes(body)  # text or bytes alike: a recording holds as text what came as bytes
        key = ("fields", data, content_type)
        remembered = _REMEMBERED.get(key)
        if remembered is None:
            # Scanned with no credential known yet, so that what it finds is all it finds,
            # whatever scrubber asks next; places are kept without `where`, added on each use.
            fresh = Scrubber()
            scrubbed = fresh._body_fields(data, content_type, "")
            remembered = (None if scrubbed is data else bytes(scrubbed), tuple(fresh.found),
                          frozenset(fresh.secrets.values))
            _REMEMBERED.put(key, remembered, len(data))
        scrubbed, found, values = remembered
        self.found += [where + place for place in found]
        if values - self.secrets.values:
            self.secrets.values |= values
            self._echoes = None
        return body if scrubbed is None else _from_bytes(scrubbed, body)

    def _body_fields(self, body, content_type: str, where: str):
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "multipart/form-data":
            return self._multipart(body, content_type, where)
        # A form is scrubbed as one whatever its Content-Type says (often none, or text/plain).
        if kind == "application/x-www-form-urlencoded" or _looks_urlencoded(body):
            return self._urlencoded(body, where)
        self._collect_json(body)
        return self._named_in_place(body, where)

    def _named_in_place(self, body, where: str):
        """JSON members whose names say they hold a credential, and the credential parameters
        of query strings quoted in the body (an upstream echoing the URL it was called with,
        `...?alt=sse&api%5Fkey=...`, whatever that URL now holds): values replaced in place and
        collected. Query pairs count only after `?`, `&` or `;` (JSON's `\\u0026` too), with
        values as long as a key: a word in prose is not a parameter."""
        data = _as_bytes(body)
        edits = self._name_edits(data, *scanning.by_name(data), where)
        if not edits:
            return body
        self._echoes = None
        return _from_bytes(_replaced(data, edits), body)

    def _name_edits(self, data: bytes, fields: list[int], queries: list[int], where: str) -> list:
        """The spans of credential values at the JSON member names (their closing quotes) and
        query pairs (their starts) scanning found; the values are collected."""
        edits = []
        for closing in fields:
            member = _MEMBER_BYTES.match(data, _opening_quote(data, closing))
            if member is None or member.end(1) != closing:
                continue
            try:  # not UTF-8 (a Latin-1 password, a stray byte): read all the same
                name = json.loads('"' + member.group(1).decode("utf-8", "replace") + '"')
                value = json.loads('"' + member.group(2).decode("utf-8", "replace") + '"')
            except ValueError:
                continue
            if value not in ("", MARKER) and is_credential_field(name, value):
                self.secrets.add(value)
                self.found.append(f"{where} field {name}")
                edits.append(member.span(2))
        for start in queries:
            pair = _QUERY_PAIR_BYTES.match(data, start)
            if pair is None:
                continue
            name, value = pair.group(1).decode("latin-1"), pair.group(2).decode("utf-8", "replace")
            if value != MARKER and is_credential_param(name):
                self.secrets.add(unquote_plus(value))
                self.found.append(f"{where} parameter {unquote_plus(name)}")
                edits.append(pair.span(2))
        return edits

    def request_body(self, body, content_type: str):
        """body_fields, then text: a JSON body (the common case, and the large one) in one pass
        over it rather than two; forms and multipart bodies as body_fields reads them."""
        kind = content_type.split(";", 1)[0].strip().lower()
        if (not body or isinstance(body, bytearray) or kind == "multipart/form-data"
                or kind == "application/x-www-form-urlencoded" or _looks_urlencoded(body)):
            return self.text(self.body_fields(body, content_type, "request body"), "body")
        if body[:2] == b"\x1f\x8b":  # gzip, as text() reads it
            return self.text(self.body_fields(body, content_type, "request body"), "body")
        self._collect_json(body)
        data = _as_bytes(body)
        echoes = self._bytes_echoes()
        known = set(self.secrets.values)
        fields, queries, places, names = scanning.at_once(data, echoes, _SHAPE_PATTERNS)
        edits = self._name_edits(data, fields, queries, "request body")
        for start, end in names:  # a key shape or an echo inside a name the scan took whole
            places += [(match.start(), match.end(), _SHAPE_NAMES.index(shape_name(match)))
                       for match in _KEY_SHAPES_BYTES.finditer(data, start, end)]
            # ... or right after it (`?jwt=eyJ...`): the scan took the `=` a shape stands after
            if (after := _KEY_SHAPES_BYTES.match(data, end)) is not None:
                places.append((after.start(), after.end(), _SHAPE_NAMES.index(shape_name(after))))
            places += [(start + at, start + end_, None)
                       for at, end_ in scanning.echo_places(data[start:end], echoes)]
        new = self.secrets.values - known
        if new:  # values found by name just now: replaced wherever else they stand in the body
            self._echoes = None
            fresh = Secrets()
            fresh.values = new
            later = tuple(dict.fromkeys(e.encode("utf-8", "surrogatepass") for e in fresh.echoes()))
            places += [(start, end, None) for start, end in scanning.echo_places(data, later)]
        if any(shape is None for _, _, shape in places):
            self.found.append("body: a credential's value")
        self.found += [f"body: {_SHAPE_NAMES[shape]}" for _, _, shape in places if shape is not None]
        edits += [(start, end) for start, end, _ in places]
        if not edits:
            return body
        return _from_bytes(_replaced(data, edits), body)

    def _collect_json(self, body) -> None:
        """Credentials in JSON shapes the in-place scan does not see (lists of values, name and
        value pairs, JSON inside strings): collected, so the by-value step replaces them."""
        if len(body) >= _SMALL or not scanning.names_a_credential(_as_bytes(body)):
            return
        text = body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")
        documents = [text] if text.lstrip()[:1] in ("{", "[") else [
            line[5:] for line in text.splitlines() if line.startswith("data:")]
        for document in documents:
            try:
                _walk_json(json.loads(document), self.secrets, 0)
            except (ValueError, RecursionError):
                continue
        self._echoes = None

    def _urlencoded(self, body, where: str):
        text = body if isinstance(body, str) else bytes(body).decode("latin-1")
        scrubbed = self.query(text.strip(), f"{where} form")
        if scrubbed == text.strip():
            return body
        return scrubbed if isinstance(body, str) else scrubbed.encode("latin-1")

    def _multipart(self, body, content_type: str, where: str):
        boundary = re.search(r'(?i)boundary="?([^";]+)"?', content_type)
        if not boundary:
            return body
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        part = re.compile(rb'(?is)(content-disposition:[^\r\n]*?\bname\*?=(?:"([^"]*)"|([^;\s]*))[^\r\n]*\r?\n'
                          rb'(?:[^\r\n]+\r?\n)*\r?\n)(.*?)(?=\r?\n--' + re.escape(boundary.group(1).encode()) + rb')')

        def replace(match: re.Match) -> bytes:
            name = unquote_plus((match.group(2) or match.group(3)).decode("utf-8", "replace"))
            name = name.split("''", 1)[-1]  # RFC 5987: name*=utf-8''api_key
            if not is_credential_param(name) or match.group(4) == MARKER.encode():
                return match.group(0)
            self.secrets.add(match.group(4).decode("utf-8", "replace"))
            self.found.append(f"{where} multipart field {name}")
            return match.group(1) + MARKER.encode()

        scrubbed = part.sub(replace, raw)
        self._echoes = None
        if scrubbed == raw:
            return body
        return scrubbed.decode("utf-8", "surrogateescape") if isinstance(body, str) else scrubbed

    # -- by value and by shape --

    def text(self, value, where: str):
        """`value` (str, bytes or bytearray) with every echoed credential and key shape replaced."""
        if not value:
            return value
        if value[:2] == b"\x1f\x8b":  # a response body kept gzip-encoded (Go did not decode it)
            return self._gzipped(value, where)
        if len(value) < _REMEMBER_FROM or isinstance(value, bytearray):
            return self._by_value(value, where)
        data = _as_bytes(value)
        key = ("values", data, self._bytes_echoes())
        remembered = _REMEMBERED.get(key)
        if remembered is None:
            before = len(self.found)
            scrubbed = self._by_value(data, "")
            remembered = (None if scrubbed is data else scrubbed, tuple(self.found[before:]))
            del self.found[before:]
            _REMEMBERED.put(key, remembered, len(data))
        scrubbed, found = remembered
        self.found += [where + place for place in found]
        return value if scrubbed is None else _from_bytes(scrubbed, value)

    def echoes_since(self, value, known: frozenset[str], where: str):
        """`value`, already scrubbed as `text` scrubs (and by name) when `known` were the values
        known, with the echoes of the values found since replaced as well."""
        if not value or not (self.secrets.values - known):
            return value
        since = Secrets()
        since.values = self.secrets.values - known
        echoes = tuple(dict.fromkeys(e.encode("utf-8", "surrogatepass") for e in since.echoes()))
        data = _as_bytes(value)
        places = scanning.echo_places(data, echoes)
        if not places:
            return value
        self.found.append(f"{where}: a credential's value")
        return _from_bytes(_replaced(data, places), value)

    def _by_value(self, value, where: str):
        data = _as_bytes(value)
        places = scanning.by_value(data, self._bytes_echoes(), _SHAPE_PATTERNS)
        if not places:
            return value
        if any(shape is None for _, _, shape in places):
            self.found.append(f"{where}: a credential's value")
        self.found += [f"{where}: {_SHAPE_NAMES[shape]}" for _, _, shape in places if shape is not None]
        return _from_bytes(_replaced(data, [(start, end) for start, end, _ in places]), value)

    def _gzipped(self, value, where: str):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            plain = decoder.decompress(bytes(value), 64 << 20)
        except zlib.error:
            plain = None
        if plain is None or decoder.unconsumed_tail:  # not gzip, or a bomb: left as it is
            return value
        scrubbed = self.text(self._named_in_place(plain, where), where)
        return value if scrubbed is plain else _same_type(gzip.compress(bytes(scrubbed), mtime=0), value)

    def _bytes_echoes(self) -> tuple[bytes, ...]:
        if self._echoes is None:
            self._echoes = tuple(dict.fromkeys(e.encode("utf-8", "surrogatepass")
                                               for e in self.secrets.echoes()))
        return self._echoes

    def header_map(self, headers: dict[str, list[str]], where: str) -> None:
        for name, values in headers.items():
            headers[name] = [self.text(self._header_url(v, f"{where} header {name}"),
                                       f"{where} header {name}") for v in values]

    def _header_url(self, value: str, where: str) -> str:
        """A URL in a header (Location: ...?code=...) loses its credential parameters."""
        if "?" not in value or "=" not in value:
            return value
        return re.sub(r"\?[^\s#]*", lambda m: "?" + self.query(m.group(0)[1:], where), value)


_QUERY_PAIR = (r"(?:(?<=[?&;])|(?<=\\u0026))([\w.%+*~\[\]-]{1,64})=([^&;\s\"'#<>\\]{"
               + str(MIN_ECHO) + ",})")
_QUERY_PAIR_BYTES = re.compile(_QUERY_PAIR.encode())
_URLENCODED = re.compile(r"[\w.%+*~\[\]-]+=[^&;\s]*(?:[&;][\w.%+*~\[\]-]+=[^&;\s]*)*\s*")


def _looks_urlencoded(body) -> bool:
    if len(body) >= _SMALL:
        return False
    text = body if isinstance(body, str) else bytes(body).decode("latin-1")
    return _URLENCODED.fullmatch(text) is not None


_VALUE_KEYS = ("value", "secret", "token", "key")


def _walk_json(node, secrets: Secrets, depth: int) -> None:
    if depth > 64:
        return
    if isinstance(node, dict):
        label = node.get("name") or node.get("key") or node.get("header")
        if isinstance(label, str) and is_credential_header(label) and isinstance(node.get("value"), str):
            secrets.add(node["value"])  # {"name": "x-api-key", "value": "..."}
        for name, value in node.items():
            if isinstance(name, str) and _field_rule(name):
                if isinstance(value, str) and is_credential_field(name, value):
                    secrets.add(value)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, str) and is_credential_field(name, item):
                            secrets.add(item)
                elif isinstance(value, dict) and _field_rule(name) == "always":
                    for key in _VALUE_KEYS:  # {"client_secret": {"value": "ek_..."}}
                        if isinstance(value.get(key), str):
                            secrets.add(value[key])
            _walk_json(value, secrets, depth + 1)
    elif isinstance(node, list):
        if len(node) == 2 and all(isinstance(item, str) for item in node) and is_credential_header(node[0]):
            secrets.add(node[1])  # [["Authorization", "Bearer ..."]]
        for item in node:
            _walk_json(item, secrets, depth + 1)
    elif isinstance(node, str) and node[:1] in ("{", "[") and len(node) < _SMALL:
        try:  # JSON inside a string: a tool call's arguments
            _walk_json(json.loads(node), secrets, depth + 1)
        except (ValueError, RecursionError):
            pass


def _as_bytes(value) -> bytes | bytearray:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def _from_bytes(scrubbed: bytes, original):
    """`scrubbed` in the type of `original`: text stays text, bytes stay bytes."""
    if isinstance(original, str):
        return scrubbed.decode("utf-8", "surrogatepass")
    return _same_type(scrubbed, original)


def _opening_quote(data, closing: int) -> int:
    """Where the JSON string that `closing` ends begins (quotes escaped inside are skipped)."""
    start = data.rfind(b'"', 0, closing)
    while start > 0 and _escaped(data, start):
        start = data.rfind(b'"', 0, start)
    return start


def _escaped(data, index: int) -> bool:
    backslashes = 0
    while index - backslashes > 0 and data[index - backslashes - 1] == 0x5C:
        backslashes += 1
    return backslashes % 2 == 1


def _replaced(data, spans: list[tuple[int, int]]) -> bytes:
    """`data` with each span replaced by MARKER; spans that overlap are replaced as one, so that
    no part of the longer is left."""
    pieces, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            if end > last:
                last = end
            continue
        pieces += (data[last:start], _MARKER_BYTES)
        last = end
    pieces.append(data[last:])
    return b"".join(pieces)


def _same_type(scrubbed, original):
    """bytes stay bytes (binary), a bytearray stays a bytearray (a long UTF-8 text body)."""
    if type(scrubbed) is type(original):
        return scrubbed
    return bytearray(scrubbed) if isinstance(original, bytearray) else bytes(scrubbed)


def _content_type(headers: dict[str, list[str]]) -> str:
    return next((v[0] for k, v in headers.items() if k.lower() == "content-type" and v), "")


def scrub_interaction(interaction, secrets: Secrets | None = None,
                      request_scrubbed_of: frozenset[str] | None = None) -> list[str]:
    """Scrub a cassette's interaction in place; what changed, one place each (no values).

    `secrets`: values already known to be credentials (from headers not recorded).
    `request_scrubbed_of`: the request body is already scrubbed (by name, of key shapes and of
    these values' echoes: request_view.py), and is scrubbed here only of the values found since
    (in the response), not scanned twice."""
    scrubber = Scrubber(secrets)
    request, response = interaction.request, interaction.response
    scrubber.headers(request.headers, "request")
    scrubber.headers(request.trailer, "request trailer")
    scrubber.headers(response.headers, "response")
    scrubber.headers(response.trailer, "response trailer")
    request.url = scrubber.url(request.url)
    scrubber.form(request.form)
    compressed = _stored_coding(request, scrubber)
    scrubbed = request_scrubbed_of is not None and compressed is None
    body = request.body if scrubbed else scrubber.body_fields(
        compressed[1] if compressed else request.body, _content_type(request.headers),
        "request body")
    response.body = scrubber.body_fields(response.body, "", "response body")
    request.url = scrubber.text(request.url, "request url")
    if scrubbed:
        body = scrubber.echoes_since(body, request_scrubbed_of, "request body")
    else:
        body = scrubber.text(body, "request body")
    if compressed is None:
        request.body = body
    elif body is not compressed[1]:
        # Stored as a recording stores such a body now: decoded, its coding in a header; never
        # scrubbed inside the compressed bytes (that breaks them) nor compressed again.
        request.body = body
        request.headers["Content-Encoding"] = [compressed[0]]
    response.body = scrubber.text(response.body, "response body")
    for name, values in request.form.items():
        request.form[name] = [scrubber.text(v, f"request form field {name}") for v in values]
    for where, header in (("request", request.headers), ("request trailer", request.trailer),
                          ("response", response.headers), ("response trailer", response.trailer)):
        scrubber.header_map(header, where)
    if scrubber.found:  # a body that changed length says so, as Go would read it
        for message in (request, response):
            if message.content_length > 0:
                message.content_length = _length(message.body)
    return scrubber.found


def _stored_coding(request, scrubber: Scrubber) -> tuple[str, str | bytes] | None:
    """A request body an older release stored compressed, as (coding, text, or bytes if it is
    not UTF-8); None for any other. One too large to decode is replaced: what cannot be read
    cannot be shown to hold no key."""
    from .codings import BodyTooLarge, undo_stored_coding

    if not isinstance(request.body, (bytes, bytearray)):
        return None
    try:
        found = undo_stored_coding(request.body)  # a bytearray as it is: no copy
    except BodyTooLarge as error:
        scrubber.found.append(f"request body: {error.args[0].split(';')[0]}, so it cannot be "
                              "checked for credentials")
        request.body = MARKER
        return None
    if found is None:
        return None
    try:
        return found[0], found[1].decode("utf-8")
    except UnicodeDecodeError:  # binary (protobuf, msgpack): scrubbed as bytes, key shapes too
        return found


def _length(body) -> int:
    return len(body.encode("utf-8", "surrogatepass")) if isinstance(body, str) else len(body)


def _by_name(url: str, headers: Iterable[tuple[str, str]], body: bytes, content_type: str):
    """A request's URL and body with credentials replaced by name, and the scrubber that holds
    the values found."""
    scrubber = Scrubber()
    for name, value in headers:
        scrubber.secrets.add_header(name, value)
    return scrubber, scrubber.url(url), scrubber.body_fields(body, content_type, "request body")


def request_secrets(headers: Iterable[tuple[str, str]], url: str, body: bytes,
                    content_type: str) -> Secrets:
    """The credentials a request carries by name (headers, query, form, JSON fields)."""
    return _by_name(url, headers, body, content_type)[0].secrets


def scrub_request(url: str, headers: Iterable[tuple[str, str]], body: bytes,
                  content_type: str) -> tuple[str, bytes, Secrets]:
    """An incoming request's URL and body as a recording of it holds them, and its secrets."""
    scrubber = Scrubber()
    for name, value in headers:
        scrubber.secrets.add_header(name, value)
    url = scrubber.url(url)
    body = scrubber.request_body(body, content_type)
    return scrubber.text(url, "url"), body, scrubber.secrets


def scrub_headers(headers: Iterable[tuple[str, str]], secrets: Secrets) -> list[tuple[str, str]]:
    """Request headers as they may be shown: a credential header's value becomes MARKER (its
    place kept), any other value loses the known credentials and key shapes it holds."""
    scrubber = Scrubber(secrets)
    shown = [(name, MARKER if is_credential_header(name) else value) for name, value in headers]
    # One look at all the other values at once: most requests' hold nothing to replace, and this
    # runs for every request mitmdump shows.
    joined = "\n".join(value for _, value in shown)
    if "?" not in joined and scrubber.text(joined, "") is joined:
        return shown
    return [(name, value if value == MARKER and is_credential_header(name)
             else scrubber.text(scrubber._header_url(value, ""), "")) for name, value in shown]


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
        places = scrub_interaction(_scratch_copy(interaction))
        found += [f"interaction #{interaction.id} {place}" for place in dict.fromkeys(places)]
    return found


def _scratch_copy(interaction):
    """A copy of `interaction` that scrubbing may change: its containers copied, its strings
    and bytes (immutable) shared. copy.deepcopy took most of `check`'s time on 50,000."""
    def fresh(value):
        if isinstance(value, dict):
            return {key: fresh(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fresh(item) for item in value]
        return value

    def copied(message):
        clone = object.__new__(type(message))  # a dataclass without slots: its fields as they are
        clone.__dict__.update((name, fresh(value)) for name, value in message.__dict__.items())
        return clone

    return dataclasses.replace(interaction, request=copied(interaction.request),
                               response=copied(interaction.response))


def redact_cassette(cassette) -> bool:
    """Scrub every interaction of `cassette` in place; whether anything changed."""
    changed = False
    for interaction in cassette.interactions:
        changed |= bool(scrub_interaction(interaction))
    return changed
