"""A fast reader for the YAML that Go's yaml.v3 encoder writes for go-vcr cassettes.

PyYAML builds a node object per scalar and then the loader types each node, which made a
cassette of 50,000 interactions take 15 s to load. Go's encoder writes a small part of YAML,
always the same way: block mappings and sequences with every sibling at one column, scalars
on one line (plain, single-quoted, double-quoted with escapes), literal blocks (`|`, `|-`,
`|+`, `|4-`...), `!!binary`, and `[]` / `{}` for empty collections. This reads exactly that
part, line by line over the file's bytes, knowing the cassette's shape, and builds the same
model objects. A literal block (a streamed body of many megabytes) is cut out whole and
unindented by one `bytes.replace`, so it costs no more memory than PyYAML's copy of it.

Whatever it does not fully understand (comments, anchors, flow collections, other tags,
multi-line plain or quoted scalars, tabs outside literal blocks, odd indentation, empty
lines outside blocks, duplicate or unknown keys, a BOM, control characters, \\r, line
separators, not UTF-8...) makes it decline: `read` returns None and the caller reads the
file with PyYAML, which also gives the error messages. A value it cannot type the quick way
goes through the loader's own decoder, so that typing is Go's in both paths; and where that
decoder would fail, this declines too, so every error comes from the one place.
"""

from __future__ import annotations

import gc
import re

import yaml

from ..cassette import VERSION, Cassette, Interaction, Request, Response
from ..errors import CassetteError
from .emitter import is_utf8


class _Decline(Exception):
    """Something outside what Go writes: PyYAML reads the file instead."""


# Characters that libyaml refuses, or that Go never writes raw and that would need YAML's own
# handling: controls, the line breaks \r, U+0085, U+2028 and U+2029 (lines are \n-ended here),
# the BOM U+FEFF, U+FFFE and U+FFFF. As UTF-8, which is checked first so that each of these
# byte sequences can only be that character.
_ODD_CHARACTER = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]|\xef\xbb\xbf"
                            b"|\xef\xbf[\xbe\xbf]")
_USUAL_ASCII = b"\t\n" + bytes(range(0x20, 0x7F))
_SPACES = re.compile(b" *")
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
# A one-line plain scalar ends at ": " or " #" and loses trailing blanks; these decline.
_PLAIN_BAD = re.compile(r": |:\Z| #|\t| \Z")
_PLAIN_BAD_FIRST = frozenset(",[]{}#&*!|>'\"%@` ")
_LITERAL = re.compile(rb"\|(?:([1-9])([-+]?)|([-+])([1-9]?))?\Z")
_SINGLE_KEY = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"')
# libyaml's escapes (scanner.c), and what may not stand unescaped between double quotes: any
# other backslash is an error there, a quote would end the scalar; a decline here.
_ESCAPE_OR_ODD = re.compile(r'\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})'
                            r'|([0abtnvfre "/\\N_LP]))|["\\\t]')
_LONE_QUOTE = re.compile("(?<!')(?:'')*'(?!')")  # an odd run of quotes ends the scalar
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
            "_": "\xa0", "L": "\u2028", "P": "\u2029"}
# Integers as Go writes them, which resolve to themselves (no leading 0, which is octal; no
# '+' or '_'; too short to leave int64).
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\Z")
# time.Duration.String() and the like: a unit after each number, no sign, no bare dot.
_DURATION = re.compile(r"(?:[0-9]{1,12}(?:\.[0-9]{1,12})?(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+\Z")
_DURATION_PART = re.compile(r"([0-9]+)(?:\.([0-9]+))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_INT64_MAX = (1 << 63) - 1
_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_BINARY = "tag:yaml.org,2002:binary"
_STR = "tag:yaml.org,2002:str"
_LONGEST_KEY = 1000  # libyaml's simple keys end at 1024 characters
_CACHED_LENGTH = 64  # typed values of texts this short are remembered: they repeat
_REMEMBERED_LINE = 256  # and so are lines this short (a longer one is a body)
_NEWLINE, _SPACE, _TAB, _COLON = 10, 32, 9, 58

# The fields of go-vcr's structs and how each is typed (the loader's decoder methods).
REQUEST_FIELDS = {
    "proto": "string", "proto_major": "integer", "proto_minor": "integer",
    "content_length": "integer", "transfer_encoding": "strings", "trailer": "header",
    "host": "string", "remote_addr": "string", "request_uri": "string", "body": "string",
    "form": "header", "headers": "header", "url": "string", "method": "string",
}
RESPONSE_FIELDS = {
    "proto": "string", "proto_major": "integer", "proto_minor": "integer",
    "transfer_encoding": "strings", "trailer": "header", "content_length": "integer",
    "uncompressed": "boolean", "body": "string", "headers": "header", "status": "string",
    "code": "integer", "duration": "duration",
}
_SCALARS = frozenset(("string", "integer", "boolean", "duration"))
# The same, by the bytes of the names as they stand in a file.
_FIELDS = {Request: {name.encode(): (name, kind) for name, kind in REQUEST_FIELDS.items()},
           Response: {name.encode(): (name, kind) for name, kind in RESPONSE_FIELDS.items()}}
_REQUIRED = {Request: ("url", "method"), Response: ("code",)}


_NOT_KNOWN = object()


class _Mark:
    """Where a node starts, for the decoder's messages (which are never shown from here)."""

    line = 0


def read(data: bytes, decoder) -> Cassette | None:
    """The cassette in `data`, or None when it is not plainly what Go writes.

    `decoder` is the loader's (its `integer`, `boolean`, `duration` and `string` take a
    scalar node): values this reader cannot type at once are handed to it.
    """
    if not data.endswith(b"\n"):  # Go ends the file with a line break
        return None
    if data.isascii():
        if data.translate(None, _USUAL_ASCII):  # what is left is odd
            return None
    elif not is_utf8(data) or _ODD_CHARACTER.search(data):
        return None
    # The reader makes millions of objects and no cycles: the collector's passes over them
    # would only cost time (a third of the whole, measured on 50,000 interactions).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Reader(data, decoder).cassette()
    except _Decline:
        return None
    finally:
        if collecting:
            gc.enable()


def go_duration(text: str) -> int | None:
    """`durations.parse_duration` for the plain durations Go writes (one or more parts of up
    to 12 digits each, no sign), with its arithmetic; None for anything else."""
    if text == "0s":
        return 0
    if not _DURATION.match(text):
        return None
    total = 0
    for whole, fraction, unit in _DURATION_PART.findall(text):
        scale = _UNITS[unit]
        total += int(whole) * scale
        if fraction:
            value = int(fraction)
            if value > 0:
                total += int(float(value) * (float(scale) / 10 ** len(fraction)))
    return total if total <= _INT64_MAX else None


def _plain_ok(text: str) -> bool:
    """Whether `text`, alone after a key or a dash, is a one-line plain scalar of that text."""
    if not text:
        return False
    first = text[0]
    if first in _PLAIN_BAD_FIRST:
        return False
    if first in "-?:" and (len(text) == 1 or text[1] == " "):
        return False
    return _PLAIN_BAD.search(text) is None


def _one_line(data: bytes, start: int) -> bool:
    """Whether the scalar at `start` is all on its line (an empty literal block can be too,
    but the same header may have lines below it elsewhere)."""
    return data[start:start + 1] != b"|" and not data.startswith(b"!!binary |", start)


def _unescape(match: re.Match) -> str:
    simple = match.group(4)
    if simple is not None:
        return _ESCAPES[simple]
    digits = match.group(1) or match.group(2) or match.group(3)
    if digits is None:  # a quote, a tab, or a backslash that escapes nothing
        raise _Decline
    code = int(digits, 16)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        raise _Decline
    return chr(code)


def _double_quoted(inner: str) -> str:
    """The value of "inner" on one line, or a decline if it is not that."""
    if "\\" not in inner and '"' not in inner and "\t" not in inner:
        return inner
    return _ESCAPE_OR_ODD.sub(_unescape, inner)


def _single_quoted(inner: str) -> str:
    if "'" in inner:
        if _LONE_QUOTE.search(inner):
            raise _Decline
        inner = inner.replace("''", "'")
    if "\t" in inner:
        raise _Decline
    return inner


class _Reader:
    """Reads `data` by positions: each method takes where its node starts (a line's start, or
    a scalar's first byte) and returns where the next line starts, with what it read."""

    def __init__(self, data: bytes, decoder):
        self.data = data
        self.size = len(data)
        self.decoder = decoder
        self.typed_cache: dict = {}
        # Most lines repeat (`proto_major: 1`, `- application/json`): what one of them holds
        # is remembered, keyed by the line's bytes, which fix its column too.
        self.known_fields: dict = {}
        self.known_keys: dict = {}
        self.known_items: dict = {}
        self.block_ends: dict = {}
        # The decoder remembers a !!binary value by its node's id(): the nodes made here
        # must outlive the read, or a new node could reuse an id and get an old value.
        self.nodes: list = []

    def column(self, at: int) -> int:
        return _SPACES.match(self.data, at).end() - at

    # Structure ---------------------------------------------------------------------------

    def cassette(self) -> Cassette:
        data, size = self.data, self.size
        at = 4 if data.startswith(b"---\n") else 0
        if not data.startswith(b"version: 2\n", at):
            raise _Decline
        at += 11
        if data.startswith(b"interactions: []\n", at) and at + 17 == size:
            return Cassette(interactions=[], version=VERSION, ignored=[])
        if not data.startswith(b"interactions:\n", at) or at + 14 >= size:
            raise _Decline
        at += 14
        column = self.column(at)
        dash = b" " * column + b"- "
        interactions = []
        ids = set()
        while at < size:
            if not data.startswith(dash, at):
                raise _Decline
            at, interaction = self.interaction(at, column + 2)
            if interaction.id in ids:
                raise _Decline
            ids.add(interaction.id)
            interactions.append(interaction)
        return Cassette(interactions=interactions, version=VERSION, ignored=[])

    def interaction(self, at: int, column: int) -> tuple[int, Interaction]:
        data, size = self.data, self.size
        pad = b" " * column
        found: dict = {}
        while True:  # the first key shares its line with the dash
            key_at = at + column
            end = data.find(b"\n", key_at)
            if data.startswith(b"id: ", key_at, end):
                if "id" in found:
                    raise _Decline
                at, found["id"] = self.scalar("integer", key_at + 4, end, column)
            elif end - key_at == 8 and data.startswith(b"request:", key_at):
                if "request" in found:
                    raise _Decline
                at, found["request"] = self.struct(end + 1, column, Request)
            elif end - key_at == 9 and data.startswith(b"response:", key_at):
                if "response" in found:
                    raise _Decline
                at, found["response"] = self.struct(end + 1, column, Response)
            else:
                raise _Decline
            if at >= size or not data.startswith(pad, at):
                break
            if data[at + column] in (_SPACE, _NEWLINE):
                raise _Decline
        if len(found) != 3:
            raise _Decline
        return at, Interaction(id=found["id"], request=found["request"], response=found["response"])

    def struct(self, at: int, parent: int, cls):
        data, size = self.data, self.size
        column = self.column(at)
        if column <= parent:
            raise _Decline
        pad = b" " * column
        fields = _FIELDS[cls]
        known = self.known_fields.get((cls, column))  # line -> (name, value)
        if known is None:
            known = self.known_fields[cls, column] = {}
        values: dict = {}
        while at < size:
            end = data.find(b"\n", at)
            line = data[at:end] if end - at <= _REMEMBERED_LINE else None
            hit = known.get(line)
            if hit is not None:
                name = hit[0]
                if name in values:
                    raise _Decline
                values[name] = hit[1]
                at = end + 1
                continue
            if not data.startswith(pad, at):
                break
            key_at = at + column
            if data[key_at] in (_SPACE, _NEWLINE):
                raise _Decline
            colon = data.find(b": ", key_at, end)
            if colon >= 0:
                name, kind = fields.get(data[key_at:colon], (None, None))
                if name is None or name in values:
                    raise _Decline
                if kind in _SCALARS:
                    at, values[name] = self.scalar(kind, colon + 2, end, column)
                    if line is not None and _one_line(data, colon + 2):
                        known[line] = (name, values[name])
                elif data[colon + 2:end] == (b"[]" if kind == "strings" else b"{}"):
                    values[name] = [] if kind == "strings" else {}
                    at = end + 1
                else:
                    raise _Decline
            elif data[end - 1] == _COLON:
                name, kind = fields.get(data[key_at:end - 1], (None, None))
                if name is None or name in values:
                    raise _Decline
                if kind == "header":
                    at, values[name] = self.header(end + 1, column)
                elif kind == "strings":
                    at, values[name] = self.sequence(end + 1, column)
                else:
                    raise _Decline
            else:
                raise _Decline
        for name in _REQUIRED[cls]:
            if name not in values:
                raise _Decline
        return at, cls(**values)

    def header(self, at: int, parent: int) -> tuple[int, dict[str, list[str]]]:
        """A map of names to lists of strings (http.Header, url.Values)."""
        data, size = self.data, self.size
        column = self.column(at)
        if column <= parent:
            raise _Decline
        pad = b" " * column
        known = self.known_keys.get(column)  # line -> (name, text after ": " or None)
        if known is None:
            known = self.known_keys[column] = {}
        result: dict[str, list[str]] = {}
        while at < size:
            end = data.find(b"\n", at)
            line = data[at:end]
            hit = known.get(line)
            if hit is not None:
                name, value = hit
            elif not line.startswith(pad):
                break
            elif len(line) == column or line[column] == _SPACE:
                raise _Decline
            else:
                name, value = self.key(line[column:].decode("utf-8"))
                if len(line) <= _REMEMBERED_LINE:
                    known[line] = (name, value)
            if name in result:
                raise _Decline
            if value is None:
                at, result[name] = self.sequence(end + 1, column)
            elif value == "[]":
                result[name] = []
                at = end + 1
            else:
                raise _Decline
        return at, result

    def key(self, rest: str) -> tuple[str, str | None]:
        """A map key as a header name, and the text after ": " (None after a bare ":")."""
        first = rest[0]
        if first == "'" or first == '"':
            match = (_SINGLE_KEY if first == "'" else _DOUBLE_KEY).match(rest)
            if match is None:
                raise _Decline
            end = match.end()
            name = (_single_quoted if first == "'" else _double_quoted)(match.group(1))
        else:
            end = rest.find(": ")
            if end < 0:
                end = len(rest) - 1
                if rest[end] != ":":
                    raise _Decline
            name = rest[:end]
            if not _plain_ok(name):
                raise _Decline
            if name in _NULLS:
                name = ""
        if end > _LONGEST_KEY:
            raise _Decline
        after = rest[end:]
        if after == ":":
            return name, None
        if after[:2] != ": ":
            raise _Decline
        return name, after[2:]

    def sequence(self, at: int, parent: int) -> tuple[int, list[str]]:
        """A block sequence of strings; its dashes may sit at the column of its key."""
        data, size = self.data, self.size
        column = self.column(at)
        if column < parent:
            raise _Decline
        dash = b" " * column + b"- "
        known = self.known_items.get(column)  # line -> value
        if known is None:
            known = self.known_items[column] = {}
        items: list[str] = []
        while at < size:
            end = data.find(b"\n", at)
            line = data[at:end] if end - at <= _REMEMBERED_LINE else None
            hit = known.get(line, _NOT_KNOWN)
            if hit is not _NOT_KNOWN:
                items.append(hit)
                at = end + 1
            elif data.startswith(dash, at):
                item_at = at + column + 2
                at, item = self.scalar("string", item_at, end, column)
                if line is not None and _one_line(data, item_at):
                    known[line] = item
                items.append(item)
            else:
                break
        if not items:
            raise _Decline
        return at, items

    # Scalars -----------------------------------------------------------------------------

    def scalar(self, kind: str, start: int, end: int, parent: int):
        """The typed value of the scalar from `start` to `end` (a line's break), which follows a
        key or a dash of column `parent`, and where the next line starts."""
        data = self.data
        first = data[start:start + 1]
        tag = None
        if first == b"'":
            if end - start < 2 or data[end - 1] != 0x27:
                raise _Decline
            style, value = "'", _single_quoted(data[start + 1:end - 1].decode("utf-8"))
            end += 1
        elif first == b'"':
            if end - start < 2 or data[end - 1] != 0x22:
                raise _Decline
            style, value = '"', _double_quoted(data[start + 1:end - 1].decode("utf-8"))
            end += 1
        elif first == b"|":
            style = "|"
            end, value = self.literal(data[start:end], parent, end + 1)
        elif first == b"!":
            if not data.startswith(b"!!binary ", start, end):
                raise _Decline
            tag, start = _BINARY, start + 9
            if data[start:start + 1] == b"|":
                style = "|"
                end, value = self.literal(data[start:end], parent, end + 1)
            else:
                style, value = None, data[start:end].decode("utf-8")
                if not _plain_ok(value):
                    raise _Decline
                end += 1
        else:
            style, value = None, data[start:end].decode("utf-8")
            if not _plain_ok(value):
                raise _Decline
            end += 1
        return end, self.typed(kind, style, tag, value)

    def literal(self, header: bytes, parent: int, start: int) -> tuple[int, str]:
        """A literal block: `header` ends the line before `start`, where its lines begin."""
        match = _LITERAL.match(header)
        if match is None:
            raise _Decline
        data, size = self.data, self.size
        digit = match.group(1) or match.group(4)
        chomping = match.group(2) or match.group(3)
        if digit:
            column = parent + int(digit)
        else:
            # The first line with text sets the indentation (libyaml refuses a tab right
            # after its spaces); when it is not deeper than the parent, the block is empty.
            first = start
            while first < size and data[first] == _NEWLINE:
                first += 1
            if first >= size:
                raise _Decline
            column = self.column(first)
            if data[first + column] in (_NEWLINE, _TAB):
                raise _Decline
            column = max(column, parent + 1)
        # The block ends before the first line that has text and less indentation.
        ends = self.block_ends.get(column)
        if ends is None:
            ends = self.block_ends[column] = re.compile(b"\n(?!\n| {%d})" % column)
        stop = ends.search(data, start - 1).start() + 1
        if stop >= size:  # Go never ends a file with a block: a body is followed by other fields
            raise _Decline
        if data.find(b" \n", start, stop) >= 0:  # never written by Go; YAML makes these subtle
            raise _Decline
        last = stop - 1  # the last byte of text, found back past the empty lines
        while last >= start and data[last] == _NEWLINE:
            last -= 1
        if last < start:  # no line of text: only the empty lines are kept, and only by "+"
            return stop, "\n" * (stop - start) if chomping == b"+" else ""
        # Every line with text starts with the indentation, and each but the first (unless
        # empty lines come before it) follows a line break: one replace takes them all off.
        begin = start if data[start] == _NEWLINE else start + column
        finish = last + 1 if chomping == b"-" else stop if chomping == b"+" else last + 2
        block = data[begin:finish].replace(b"\n" + b" " * column, b"\n")
        return stop, block.decode("utf-8")

    def typed(self, kind: str, style: str | None, tag: str | None, value: str):
        """What the loader's decoder makes of the scalar, the quick way where it is plain."""
        if tag is None:
            if kind == "string":
                return "" if style is None and value in _NULLS else value
            if style is None:
                if kind == "integer":
                    if _INT.match(value):
                        return int(value)
                elif kind == "duration":
                    duration = go_duration(value)
                    if duration is not None:
                        return duration
                elif value == "true" and kind == "boolean":
                    return True
                elif value == "false" and kind == "boolean":
                    return False
        if len(value) > _CACHED_LENGTH:
            return self.decode(kind, style, tag, value)
        key = (kind, style, tag, value)
        try:
            return self.typed_cache[key]
        except KeyError:
            result = self.typed_cache[key] = self.decode(kind, style, tag, value)
            return result

    def decode(self, kind: str, style: str | None, tag: str | None, value: str):
        node = yaml.ScalarNode(tag or _STR, value, _Mark, _Mark, style)
        self.nodes.append(node)
        try:
            return getattr(self.decoder, kind)(node, kind)
        except CassetteError:
            raise _Decline from None
