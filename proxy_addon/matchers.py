"""Which recorded interaction answers a request, and how the nearest one differs on a miss.

By default a request matches on method, URL and body. Bodies compare as JSON values when both
parse (key order and whitespace do not matter), after `\\r\\n` becomes `\\n`; credentials (`key=`
parameters, auth headers) are never part of a match. Identical requests are answered in
recorded order, as go-vcr's used-flag does.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from .cassette import Interaction
from .codings import BodyTooLarge, undo_stored_coding
from .credentials import is_credential_header, is_credential_param, scrub_line, scrub_request

PARTS = ("method", "url", "body", "headers")
DEFAULT_PARTS = ("method", "url", "body")
_MISSING = object()
_UNPARSED = object()
NEAREST_BUDGET = 16  # recordings compared in full to name the nearest on a miss


@dataclass(frozen=True)
class IncomingRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, list[str]] = field(default_factory=dict)
    # The body as each set of rules compares it, made once however many recordings it meets.
    compared: dict = field(default_factory=dict, compare=False, repr=False)


# Values SDKs make anew on every run, normalised on both sides before bodies are compared: the
# OpenAI Agents SDK's prompt_cache_key ("agents-sdk:run:<hex>").
PRESET_NORMALIZERS = (r"agents-sdk:run:[0-9a-f]{8,}",)
NORMALIZED = "<normalized>"


@dataclass(frozen=True)
class MatchRules:
    parts: tuple[str, ...] = DEFAULT_PARTS
    ignored_fields: tuple[str, ...] = ()  # JSON paths like "user" or "metadata.session_id"
    allow_repeats: bool = False  # serve the last match again once all are used
    # Patterns whose matches in a body (recorded or sent) count as equal: a date in a system
    # prompt, a uuid in a tool argument.
    normalizers: tuple[re.Pattern, ...] = tuple(re.compile(p) for p in PRESET_NORMALIZERS)

    @classmethod
    def parse(cls, parts: str, ignored: str, allow_repeats: bool, normalize: str = "") -> "MatchRules":
        """From option values; ValueError names what is wrong. `normalize`: regular expressions,
        one per line."""
        chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
        unknown = [p for p in chosen if p not in PARTS]
        if unknown or not chosen:
            raise ValueError(f"unknown match part(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(PARTS)}")
        fields = tuple(f.strip() for f in ignored.split(",") if f.strip())
        patterns = []
        for text in [*PRESET_NORMALIZERS, *(line for line in normalize.splitlines() if line.strip())]:
            try:
                patterns.append(re.compile(text))
            except re.error as error:
                raise ValueError(f"normalizer {text!r} is not a regular expression ({error})") from None
        return cls(chosen, fields, allow_repeats, tuple(patterns))

    def normalized(self, text):
        """`text` (str or bytes) with every normalizer's matches replaced by one placeholder."""
        if isinstance(text, str):
            for pattern in self.normalizers:
                text = pattern.sub(NORMALIZED, text)
        return text


def normalized_url(url: str) -> str:
    """The URL without credential parameters (recordings hold them scrubbed, older ones not at
    all), its query parameters in a stable order."""
    parts = urlsplit(url)
    query = "&".join(sorted(pair for pair in parts.query.split("&")
                            if pair and not is_credential_param(pair.partition("=")[0])))
    netloc = parts.netloc.lower()
    host, colon, port = netloc.rpartition(":") if netloc.rpartition(":")[2].isdigit() else (netloc, "", "")
    netloc = host.rstrip(".") + colon + port  # api.openai.com. is api.openai.com
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def _as_text(body: str | bytes) -> str | bytes:
    if isinstance(body, (bytes, bytearray)):
        if body.startswith(b"--"):
            body = _without_boundary(body, b"--vcr-proxy-boundary")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    elif body.startswith("--"):
        body = _without_boundary(body, "--vcr-proxy-boundary")
    return body.replace("\r\n", "\n")


def _without_boundary(body, fixed):
    """A multipart body with its boundary (random per request) replaced by a fixed one."""
    newline = "\r\n" if isinstance(body, str) else b"\r\n"
    boundary = body.split(newline, 1)[0]
    if not 2 < len(boundary) <= 72 or (b" " if isinstance(body, bytes) else " ") in boundary:
        return body
    return body.replace(boundary, fixed)


def _json_value(text: str | bytes):
    if not text or isinstance(text, bytes):
        return _MISSING
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # 3,000 nested brackets: compared as text
        return _MISSING


def _drop_path(value, path: list[str]):
    if not path or not isinstance(value, dict):
        return value
    head, rest = path[0], path[1:]
    if head not in value:
        return value
    copy = dict(value)
    if rest:
        copy[head] = _drop_path(copy[head], rest)
    else:
        del copy[head]
    return copy


def _without_ignored(value, ignored: tuple[str, ...]):
    for path in ignored:
        value = _drop_path(value, path.split("."))
    return value


def first_difference(recorded, sent, path: str = "$") -> str | None:
    """The first JSON path where two values differ, with both values; None if equal."""
    if type(recorded) is not type(sent) and not (isinstance(recorded, (int, float)) and
                                                 isinstance(sent, (int, float))):
        return f"{path}: recorded {_show(recorded)}, sent {_show(sent)}"
    if isinstance(recorded, dict):
        for key in list(recorded) + [k for k in sent if k not in recorded]:
            if key not in sent:
                return f"{path}.{key}: recorded {_show(recorded[key])}, sent nothing"
            if key not in recorded:
                return f"{path}.{key}: recorded nothing, sent {_show(sent[key])}"
            found = first_difference(recorded[key], sent[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list):
        for index, (a, b) in enumerate(zip(recorded, sent)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(recorded) != len(sent):
            return f"{path}: recorded {len(recorded)} items, sent {len(sent)}"
        return None
    return None if recorded == sent else f"{path}: recorded {_show(recorded)}, sent {_show(sent)}"


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


class Matcher:
    """Compares requests with a cassette's interactions under `rules`."""

    def __init__(self, rules: MatchRules):
        self.rules = rules
        # Recorded bodies parsed once: {id(interaction): (interaction, text, json)}.
        self._bodies: dict[int, tuple] = {}
        # Per index bucket, its interactions by body text and by JSON fingerprint.
        self._by_body: dict[int, tuple] = {}
        self._urls: dict[str, str] = {}  # recorded URLs, normalized
        self._near_index: tuple | None = None  # what a miss's nearest recording is looked up in

    def key(self, method: str, url: str) -> tuple[str, str]:
        """What a request must share with a recording before its body is looked at."""
        return (method.upper() if "method" in self.rules.parts else "",
                normalized_url(url) if "url" in self.rules.parts else "")

    def index(self, interactions: list[Interaction]) -> dict[tuple[str, str], list[Interaction]]:
        """The interactions by `key`, in recorded order."""
        found: dict[tuple[str, str], list[Interaction]] = {}
        for interaction in interactions:
            found.setdefault(self.key(interaction.request.method, interaction.request.url),
                             []).append(interaction)
        return found

    def _recorded_body(self, interaction: Interaction) -> tuple:
        """A recording's body as compared: (text, JSON value), each made once, the value only
        when asked for (an index of 50,000 recordings needs their text alone)."""
        entry = self._bodies.get(id(interaction))
        if entry is None or entry[0] is not interaction:
            text = self.rules.normalized(_as_text(self._scrubbed_body(interaction)))
            entry = self._bodies[id(interaction)] = [interaction, text, _UNPARSED]
        return entry

    def _recorded_text(self, interaction: Interaction):
        return self._recorded_body(interaction)[1]

    def _recorded_json(self, interaction: Interaction):
        entry = self._recorded_body(interaction)
        if entry[2] is _UNPARSED:
            entry[2] = _json_value(entry[1])
        return entry[2]

    @staticmethod
    def _scrubbed_body(interaction: Interaction):
        """A recorded body as a recording made now would hold it (older cassettes may hold
        credentials that incoming requests no longer show)."""
        request = interaction.request
        body = request.body
        if not body:
            return body
        content_type = next((v[0] for k, v in request.headers.items()
                             if k.lower() == "content-type" and v), "")
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        if not isinstance(body, str):  # stored compressed by an older release: compared decoded
            try:
                stored = undo_stored_coding(raw)
            except BodyTooLarge:
                stored = None
            if stored is not None:
                raw = stored[1]
                try:
                    body = raw.decode("utf-8")
                except UnicodeDecodeError:  # binary: compared as bytes
                    body = raw
        _, scrubbed, _ = scrub_request(request.url, (), raw, content_type)
        if scrubbed is raw:
            return body
        return scrubbed.decode("utf-8", "surrogateescape") if isinstance(body, str) else scrubbed

    @staticmethod
    def shown_url(url: str) -> str:
        return scrub_line(url)

    def _sent_text(self, request: IncomingRequest):
        """The request's body as `_recorded_body` gives a recording's text."""
        entry = request.compared.get(self.rules)
        if entry is None:
            entry = request.compared[self.rules] = [self.rules.normalized(_as_text(request.body)),
                                                    _UNPARSED]
        return entry[0]

    def _sent_json(self, request: IncomingRequest):
        self._sent_text(request)
        entry = request.compared[self.rules]
        if entry[1] is _UNPARSED:
            entry[1] = _json_value(entry[0])
        return entry[1]

    def _fingerprint(self, text) -> str | None:
        """Equal for bodies whose JSON values compare equal once the ignored fields are dropped
        (1 and 1.0 alike); None for a body that is not JSON."""
        if not text or isinstance(text, bytes):
            return None
        try:
            value = json.loads(text, parse_float=_number)
            return json.dumps(_without_ignored(value, self.rules.ignored_fields), sort_keys=True,
                              ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            return None

    def _bucket_index(self, bucket: list[Interaction], by: str) -> dict:
        """The bucket's interactions by recorded body text ("text") or JSON fingerprint."""
        entry = self._by_body.get(id(bucket))
        if entry is None or entry[0] is not bucket:
            entry = self._by_body[id(bucket)] = (bucket, {})
        found = entry[1].get(by)
        if found is None:
            found = entry[1][by] = {}
            for interaction in bucket:
                text = self._recorded_text(interaction)
                key = text if by == "text" else self._fingerprint(text)
                if key is not None:
                    found.setdefault(key, []).append(interaction)
        return found

    def differences(self, interaction: Interaction, request: IncomingRequest) -> list[str]:
        """What differs between the recorded request and `request`, in the rules' parts."""
        recorded = interaction.request
        found = []
        if "method" in self.rules.parts and recorded.method.upper() != request.method.upper():
            found.append(f"method: recorded {recorded.method}, sent {request.method}")
        if "url" in self.rules.parts and normalized_url(recorded.url) != normalized_url(request.url):
            found.append(f"url: recorded {scrub_line(recorded.url)}, sent {scrub_line(request.url)}")
        if "body" in self.rules.parts:
            difference = self._body_difference(interaction, request)
            if difference:
                found.append(difference)
        if "headers" in self.rules.parts:
            difference = self._header_difference(recorded.headers, request.headers)
            if difference:
                found.append(difference)
        return found

    def _body_difference(self, interaction: Interaction, request: IncomingRequest) -> str | None:
        recorded = self._recorded_text(interaction)
        sent = self._sent_text(request)
        if recorded == sent:
            return None
        recorded_json, sent_json = self._recorded_json(interaction), self._sent_json(request)
        if recorded_json is not _MISSING and sent_json is not _MISSING:
            ignored = self.rules.ignored_fields
            try:
                found = first_difference(_without_ignored(recorded_json, ignored),
                                         _without_ignored(sent_json, ignored))
            except RecursionError:
                found = None if recorded_json == sent_json else "$: differs (too deeply nested to say where)"
            return f"body {found}" if found else None
        return f"body: recorded {_preview(recorded)}, sent {_preview(sent)}"

    @staticmethod
    def _header_difference(recorded: dict[str, list[str]], sent: dict[str, list[str]]) -> str | None:
        from .gohttp import canonical_header_key

        def usable(headers):
            return {canonical_header_key(k): v for k, v in headers.items()
                    if not is_credential_header(k) and k.lower() != "x-vcr-cassette"}

        def shown(values):
            # A cassette's values are quoted as they stand: one recorded before a rule existed
            # (or not by this proxy) may hold a key in a header no rule names.
            return None if values is None else [scrub_line(value) for value in values]

        recorded, sent = usable(recorded), usable(sent)
        for name in sorted(set(recorded) | set(sent)):
            if recorded.get(name) != sent.get(name):
                return f"header {name}: recorded {shown(recorded.get(name))}, sent {shown(sent.get(name))}"
        return None

    def find(self, index: dict[tuple[str, str], list[Interaction]], used: set[int],
             request: IncomingRequest) -> tuple[Interaction | None, int]:
        """The first match in recorded order whose id is not in `used` (which it joins), or the
        last match again if repeats are allowed and all are used; and how many matched.
        `index` is `self.index(interactions)`."""
        last, matched = None, 0
        for interaction in self._candidates(index.get(self.key(request.method, request.url), []), used,
                                             request):
            if self.differences(interaction, request):
                continue
            matched += 1
            if interaction.id not in used:
                used.add(interaction.id)
                return interaction, matched
            last = interaction
        return (last if self.rules.allow_repeats else None), matched

    def _candidates(self, bucket: list[Interaction], used: set[int],
                    request: IncomingRequest) -> list[Interaction]:
        """The interactions of `bucket` whose bodies may match the request's, in recorded order,
        found by an index rather than by comparing each (a cassette may hold 50,000): those of
        identical text while one of them is unused (no parsing), else those of equal JSON."""
        if "body" not in self.rules.parts or len(bucket) < 2:
            return bucket
        same = self._bucket_index(bucket, "text").get(self._sent_text(request), [])
        if any(interaction.id not in used for interaction in same):
            return same
        fingerprint = self._fingerprint(self._sent_text(request))
        if fingerprint is None:
            return same
        return self._bucket_index(bucket, "json").get(fingerprint, [])

    def nearest(self, interactions: list[Interaction], request: IncomingRequest
                ) -> tuple[Interaction, list[str]] | None:
        """The recorded interaction closest to `request`, and what differs. Within a budget: at
        most NEAREST_BUDGET candidates, found by index (_near_candidates), are compared in full,
        so that a miss costs much the same against 50,000 recordings as against 50. Found once
        per request (the proxy may look for it off its event loop first)."""
        known = request.compared.get(("nearest", self.rules))
        if known is not None and known[0] is interactions:
            return known[1]
        found = self._nearest(interactions, request)
        request.compared[("nearest", self.rules)] = (interactions, found)
        return found

    def _nearest(self, interactions: list[Interaction], request: IncomingRequest
                 ) -> tuple[Interaction, list[str]] | None:
        if len(interactions) > NEAREST_BUDGET:
            interactions = self._near_candidates(interactions, request)
        best = None
        for interaction in interactions:
            found = self.differences(interaction, request)
            score = (not any(f.startswith("method") for f in found),
                     not any(f.startswith("url") for f in found), -len(found))
            if best is None or score > best[0]:
                best = (score, interaction, found)
        return None if best is None else (best[1], best[2])

    def _near_candidates(self, interactions: list[Interaction], request: IncomingRequest
                         ) -> list[Interaction]:
        """At most NEAREST_BUDGET recordings likely nearest to `request`, found by index: of
        those with its method and URL, the ones whose bodies sort next to its body, and next
        to it read backwards (neighbours in sorted order share the longest start, or end); if
        none has its method and URL, those whose method and URL are closest."""
        if self._near_index is None or self._near_index[0] is not interactions:
            self._near_index = (interactions, self.index(interactions), {})
        _, index, sorted_bodies = self._near_index
        bucket = index.get(self.key(request.method, request.url))
        if not bucket:
            method, url = request.method.upper(), normalized_url(request.url)
            return sorted(interactions, reverse=True, key=lambda interaction: (
                interaction.request.method.upper() == method,
                _shared_ends(self._normalized_url(interaction.request.url), url)))[:NEAREST_BUDGET]
        sent = self._sent_text(request)
        found: dict[int, Interaction] = {}
        for backwards in (False, True):
            key = (id(bucket), type(sent), backwards)
            if key not in sorted_bodies:
                pairs = sorted(((text[::-1] if backwards else text), number)
                               for number, interaction in enumerate(bucket)
                               if type(text := self._recorded_text(interaction)) is type(sent))
                sorted_bodies[key] = ([text for text, _ in pairs], [bucket[n] for _, n in pairs])
            texts, members = sorted_bodies[key]
            at = bisect.bisect_left(texts, sent[::-1] if backwards else sent)
            side = NEAREST_BUDGET // 4
            for interaction in members[max(0, at - side):at + side]:
                found[id(interaction)] = interaction
        # Most alike first: of recordings that differ as much, the first compared is named.
        return sorted(found.values(), reverse=True, key=lambda interaction: _shared_ends(
            self._recorded_text(interaction), sent)) or bucket[:NEAREST_BUDGET]

    def _normalized_url(self, url: str) -> str:
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) > 100_000:
                self._urls.clear()
            found = self._urls[url] = normalized_url(url)
        return found


def _shared_ends(a, b) -> int:
    """How many characters `a` and `b` share at their start and at their end (each found by
    halving, comparing slices in C rather than characters in Python); 0 for text and bytes."""
    if type(a) is not type(b):
        return 0
    def shared(x, y) -> int:
        low, high = 0, min(len(x), len(y))
        while low < high:
            middle = (low + high + 1) // 2
            if x[:middle] == y[:middle]:
                low = middle
            else:
                high = middle - 1
        return low

    start = shared(a, b)
    return start + shared(a[start:][::-1], b[start:][::-1])


def _number(text: str) -> int | float:
    """A JSON number as `==` compares it: 1.0 is 1."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _preview(body: str | bytes) -> str:
    if isinstance(body, bytes):
        return f"<{len(body)} bytes>"
    text = json.dumps(body, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
