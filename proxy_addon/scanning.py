"""Where a credential may stand in a body: every candidate place, found in one linear pass.

Python's `re` tries each alternative of a pattern at each offset, so the credential patterns
cost 100 to 350 ms on a 5 MB body (an image sent as base64): 16-21x what forwarding that body
costs. RE2 runs all of them as one automaton, at several hundred MB/s whatever the body holds,
and lets other threads run meanwhile. The exact rules (credentials.py) then run only at the few
places it finds. Bytes are read as Latin-1: one byte, one character, so that offsets are bytes
and a binary body is scanned like any other.
"""

from __future__ import annotations

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.encoding = re2.Options.Encoding.LATIN1
_OPTIONS.log_errors = False


def _compile(pattern: bytes):
    return re2.compile(pattern, _OPTIONS)


# Every credential field name holds one of these words (credentials._field_rule), before its
# closing quote and the colon of a JSON member.
_FIELD_WORDS = (b"key", b"token", b"secret", b"pass", b"auth", b"credential", b"cookie",
                b"signature", b"bearer", b"session", b"private")
# A name may also spell its word with an escape (`"api_\\u006bey"`) or a character that
# lower-casing or dropping makes one (a Kelvin sign, a soft hyphen): those names are candidates
# from their first escape or non-ASCII byte.
FIELD_NAME = (rb'(?:(?i:' + b"|".join(_FIELD_WORDS) + rb')|\\u|[\x80-\xff])'
              rb'(?:[^"\\\r\n]|\\.)*"[ \t\n\r\f\v]*:')
# A query string's pair, up to its `=`, after `?`, `&`, `;`, or JSON's `\u0026`.
QUERY_NAME = rb'(?:[?&;]|\\u0026)[\w.%+*~\[\]-]{1,64}='
_BY_NAME = _compile(b"(" + FIELD_NAME + b")|" + QUERY_NAME)
_FIELD_WORD = _compile(b"(?i:" + b"|".join(_FIELD_WORDS) + b")")


def names_a_credential(data: bytes) -> bool:
    """Whether `data` holds a word that every credential's name holds."""
    return _FIELD_WORD.search(data) is not None


def by_name(data: bytes) -> tuple[list[int], list[int]]:
    """Where a credential field's member name ends (the offset of its colon's quote) and where
    a query pair's name starts, in `data`."""
    fields, queries = [], []
    for match in _BY_NAME.finditer(data):
        if match.start(1) >= 0:
            fields.append(data.rindex(b'"', match.start(), match.end()))
        else:
            start = match.start()
            queries.append(start + (1 if data[start:start + 1] in b"?&;" else 6))
    return fields, queries


@functools.lru_cache(maxsize=64)  # one per set of credential values: the same key, request after request
def _pattern(echoes: tuple[bytes, ...], shapes: tuple[bytes, ...], names: bool):
    # Not inside a longer word (credentials.KEY_SHAPES's look-behind, which RE2 does not have):
    # the character before is matched instead, and the shape is the group after it.
    pattern = b"(?:^|[^A-Za-z0-9_-])(?:" + b"|".join(b"(" + shape + b")" for shape in shapes) + b")"
    if echoes:
        # An echo is often a key shape too, and it is named as an echo: it may start one
        # character early as well, so that it is found where the shape would be.
        pattern = b"(?s:.)?(" + b"|".join(_literal(echo) for echo in echoes) + b")|" + pattern
    if names:
        pattern += b"|(" + FIELD_NAME + b")|(" + QUERY_NAME + b")"
    return _compile(pattern)


def _literal(value: bytes) -> bytes:
    return b"".join(bytes((byte,)) if 48 <= byte < 58 or 65 <= byte < 91 or 97 <= byte < 123
                    else b"\\x%02x" % byte for byte in value)


def by_value(data: bytes, echoes: tuple[bytes, ...], shapes: tuple[bytes, ...]):
    """Each place an echo (a known credential value, `echoes` longest first) or a key shape
    stands, left to right: (start, end, None) for an echo, (start, end, index in `shapes`)
    for a shape."""
    return _scan(data, echoes, shapes, False)[2]


def at_once(data: bytes, echoes: tuple[bytes, ...], shapes: tuple[bytes, ...]):
    """by_name and by_value in one pass, for a request body whose known credentials are
    `echoes`: (field quotes, query starts, places as by_value gives them, and the spans of the
    names found, in which a key shape or an echo may also stand)."""
    return _scan(data, echoes, shapes, True)


def _scan(data: bytes, echoes: tuple[bytes, ...], shapes: tuple[bytes, ...], names: bool):
    first_shape = 2 if echoes else 1
    field_group, query_group = first_shape + len(shapes), first_shape + len(shapes) + 1
    fields, queries, places, spans = [], [], [], []
    for match in _pattern(echoes, shapes, names).finditer(data):
        group = match.lastindex
        if group == field_group:
            fields.append(data.rindex(b'"', match.start(), match.end()))
            spans.append(match.span())
        elif group == query_group:
            start = match.start()
            queries.append(start + (1 if data[start:start + 1] in b"?&;" else 6))
            spans.append(match.span())
        elif group < first_shape:
            places.append((match.start(1), match.end(), None))
        else:
            places.append((match.start(group), match.end(), group - first_shape))
    return fields, queries, places + _crossing(data, places, echoes), spans


def _crossing(data: bytes, places, echoes: tuple[bytes, ...]):
    """Echoes that cross the end of a place found (a shape's letters run on into a known value,
    or two known values overlap): the scan went on from that end, past the echo's start, and
    at a place takes the value that starts first, not the longest."""
    crossing = []
    for _, end, _ in places:
        for echo in echoes:
            at = data.find(echo, max(0, end - len(echo) + 1), end - 1 + len(echo))
            if at >= 0:
                crossing.append((at, at + len(echo), None))
    return crossing


@functools.lru_cache(maxsize=64)
def _literals(echoes: tuple[bytes, ...]):
    return _compile(b"|".join(_literal(echo) for echo in echoes))


def echo_places(data: bytes, echoes: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """Where any of `echoes` (longest first) stands in `data`."""
    return [match.span() for match in _literals(echoes).finditer(data)] if echoes else []
