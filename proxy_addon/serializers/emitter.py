"""A YAML writer that produces the bytes of Go's gopkg.in/yaml.v3 encoder.

It covers what Go's encoder writes for plain data (structs, maps, slices, strings, ints, bools,
nil) in block style, and follows yaml.v3's emitter (emitterc.go) step for step where the bytes
depend on it: indentation (`yaml_emitter_increase_indent`, with the compact-sequence variant of
newer releases), scalar analysis and style choice (`yaml_emitter_analyze_scalar`,
`yaml_emitter_select_scalar_style`), and the writers for each style. Lines are never folded:
yaml.v3 sets no width limit.

The input is a tree of Python values:
- `Fields`: a Go struct, written in the given order (omitted fields already left out);
- `dict`: a Go map, written in Go's key order;
- `list`: a slice; `str`: a string; `bytes` (or `bytearray`): a Go string's bytes, written
  as text when they are UTF-8 and as `!!binary` when not;
- `bool`, `int`, and `None` (a nil pointer).

`dump_document` returns the text; `write_document` and `write_sequence_item` hand the bytes
to a `write` callable instead, and write a long block scalar in batches, so writing a body of
many megabytes needs memory for a batch, not for a second copy of the body.
"""

from __future__ import annotations

import base64
import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .goresolve import plain_is_string
from .keyorder import go_sorted


class Fields(tuple):
    """A Go struct: an ordered tuple of (name, value) pairs."""

    __slots__ = ()


@dataclass(frozen=True)
class Layout:
    """How a file indents: yaml.v3's indent width, and whether sequences are compact."""

    name: str
    indent: int
    compact_sequences: bool


INDENT4 = Layout("indent4", 4, False)
INDENT4_COMPACT = Layout("indent4-compact", 4, True)
INDENT2_COMPACT = Layout("indent2-compact", 2, True)
INDENT2 = Layout("indent2", 2, False)  # yaml.v3 with Indent(2): a few of the seed's files
LAYOUTS = {layout.name: layout for layout in (INDENT4, INDENT4_COMPACT, INDENT2_COMPACT, INDENT2)}
DEFAULT_LAYOUT = INDENT4_COMPACT

_BREAKS = "\r\n\x85\u2028\u2029"
_SURROGATES = re.compile("[\ud800-\udfff]")
_LINE_START = re.compile("^(?=[^\n])", re.MULTILINE)
_BIG = 1 << 20  # a scalar this long is written in batches of about this size
# The UTF-8 forms of what decides a long multi-line value's style (see _big_literal).
_LINE_START_BYTES = re.compile(b"^(?=[^\n])", re.MULTILINE)
_SPECIAL_BYTES = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xef\xbb\xbf|\xef\xbf[\xbe\xbf]"
                            b"|[\xf0-\xf4]")
_SPACE_BREAK_BYTES = re.compile(b" (?:[\r\n]|\xc2\x85)")
_LINE_SEPARATORS_BYTES = re.compile(b"\xe2\x80[\xa8\xa9]")
# Anything that is not a printable character to yaml.v3, plus tab and the line breaks: a string
# without any of these needs no escaping and no multi-line handling.
_UNUSUAL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\U00010000-\U0010ffff]")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff\U00010000-\U0010ffff]")
_BREAK_SPACE = re.compile("[\r\n\x85\u2028\u2029] ")
_SPACE_BREAK = re.compile(" [\r\n\x85\u2028\u2029]")
_INNER_INDICATOR = re.compile("[:](?:[ \t]|\\Z)|[ \t\r\n\x85\u2028\u2029\x00]#")
_LEADING_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
_LEADING_INDICATORS_BYTES = frozenset("#,[]{}&*!|>'\"%@`".encode())
_TO_ESCAPE = re.compile('["\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\U00010000-\U0010ffff]')
_NAMED_ESCAPES = {
    "\x00": "\\0", "\x07": "\\a", "\x08": "\\b", "\t": "\\t", "\n": "\\n", "\x0b": "\\v",
    "\x0c": "\\f", "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\", "\x85": "\\N",
    "\xa0": "\\_", "\u2028": "\\L", "\u2029": "\\P",
}

PLAIN, SINGLE, DOUBLE, LITERAL = "plain", "single", "double", "literal"
_BINARY_TAG = "!!binary"


def _escape(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return "\\x%02X" % code
    if code <= 0xFFFF:
        return "\\u%04X" % code
    return "\\U%08X" % code


def _escape_match(match: re.Match) -> str:
    return _escape(match.group())


def _go_base64(data: bytes) -> str:
    """yaml.v3's encodeBase64: 70-character lines, each ending in a newline when there are two
    or more lines' worth (encoded length 70 or more)."""
    encoded = base64.b64encode(data).decode("ascii")
    if len(encoded) < 70:
        return encoded
    return "".join(encoded[i:i + 70] + "\n" for i in range(0, len(encoded), 70))


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A string ready to write: its text, tag, and what yaml.v3's analysis allows."""

    text: str | bytes  # bytes: a long UTF-8 value (see _big_literal)
    tag: str
    style: str
    multiline: bool = False


def _prepare(value: str | bytes, simple_key: bool) -> _Scalar:
    """encode.go `stringv` and the emitter's style selection."""
    tag = ""
    if isinstance(value, (bytes, bytearray)):
        if len(value) >= _BIG and not simple_key:
            big = _big_literal(value) if b"\n" in value else _big_line(value)
            if big is not None:
                return big
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            tag, value = _BINARY_TAG, _go_base64(value)
    elif not value.isascii() and _SURROGATES.search(value):  # lone surrogates: not a valid Go string either
        tag, value = _BINARY_TAG, _go_base64(value.encode("utf-8", "surrogatepass"))
    if "\n" in value:
        requested = LITERAL
    elif tag or plain_is_string(value):
        requested = PLAIN
    else:
        requested = DOUBLE
    style, multiline = _analyze(value, requested, simple_key)
    return _Scalar(value, tag, style, multiline)


def is_utf8(data: bytes) -> bool:
    """Checked a megabyte at a time: decoding a large body whole would hold it twice."""
    if data.isascii():
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), _BIG):
            decoder.decode(data[start:start + _BIG])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _big_literal(data: bytes) -> _Scalar | None:
    """A long UTF-8 value written as a literal block straight from its bytes, or None when
    it needs the general path (not UTF-8, no line break, or not literal after analysis).

    Decoding a body of many megabytes to text would hold it twice. Its style only depends
    on the conditions under which yaml.v3 refuses a literal block for a multi-line value
    (`_analyze` with LITERAL requested): a trailing space, a space before a break, a special
    character; U+2028 and U+2029 are left to the general path, which writes them one by one.
    """
    if b"\n" not in data or not is_utf8(data):
        return None
    if (data.endswith(b" ") or _SPACE_BREAK_BYTES.search(data) or _special(data)
            or not data.isascii() and _LINE_SEPARATORS_BYTES.search(data)):
        return None
    return _Scalar(data, "", LITERAL, True)


_ASCII_PLAIN = bytes(range(0x20, 0x7F)) + b"\t\n"


def _special(data: bytes) -> bool:
    """Whether UTF-8 `data` holds a special character (`_SPECIAL`): in ASCII, a control other
    than tab and newline, looked for a batch at a time in C (the regular expression took 16 ms
    a MB; translate makes an output as long as its input)."""
    if data.isascii():
        return any(data[start:start + _BIG].translate(None, _ASCII_PLAIN)
                   for start in range(0, len(data), _BIG))
    return _SPECIAL_BYTES.search(data) is not None


# A value starting with one of these may read back as another type than a string (resolve).
_RESOLVE_HINTS = frozenset(b"+-.0123456789yYnNtTfFoO~")
_INNER_INDICATOR_BYTES = re.compile(rb":(?:[ \t]|\Z)|[ \t]#")


def _big_line(data: bytes) -> _Scalar | None:
    """A long UTF-8 value of one line (a JSON body with an image as base64) written plain or
    single-quoted straight from its bytes, or None when it needs the general path.

    Decoding it to text, then joining and encoding that text to write it, held the body four
    times over. Its style follows from `_prepare` and `_analyze` without the text: starting with
    no resolve hint, a long value reads back as a string, so plain is requested; with no line
    break, tab or special character (all of them `_SPECIAL_BYTES` or tested here), only a space
    at either end or an indicator (`_has_block_indicator`) makes it single-quoted.
    """
    if data[0] in _RESOLVE_HINTS or not is_utf8(data):
        return None
    if (b"\t" in data or _special(data)
            or not data.isascii() and _LINE_SEPARATORS_BYTES.search(data)):
        return None  # \r and U+0085, the other line breaks, are special characters
    quoted = (data[0] in _LEADING_INDICATORS_BYTES or data[0] == 0x20 or data[-1] == 0x20
              or (data[0] == 0x3F and data[1] in b" \t")  # "? "
              or _INNER_INDICATOR_BYTES.search(data) is not None)
    return _Scalar(data, "", SINGLE if quoted else PLAIN)


_CONTINUATION = bytes(range(0x80, 0xC0))

# Field names, header names and common values repeat in every interaction.
_CACHED_LENGTH = 256
_prepare_cached = lru_cache(maxsize=8192)(_prepare)


def _analyze(text: str, requested: str, simple_key: bool) -> tuple[str, bool]:
    """The style yaml.v3 writes `text` in, given the style its encoder asked for."""
    if not text:
        # Empty: plain is allowed in block context (but not as a simple key); no block style.
        if requested == PLAIN:
            return (SINGLE if simple_key else PLAIN), False
        return (DOUBLE if requested == LITERAL else requested), False
    first, last = text[0], text[-1]
    leading_space, trailing_space = first == " ", last == " "
    if text.isascii():  # most bodies: byte methods in C, not a character class per character
        controls = text.encode("ascii").translate(None, _PRINTABLE_ASCII)
        unusual = bool(controls)
        special = bool(controls.translate(None, b"\t\n"))
        tabs = b"\t" in controls
        line_breaks = b"\n" in controls or b"\r" in controls
        break_space = line_breaks and ("\n " in text or "\r " in text)
        space_break = line_breaks and (" \n" in text or " \r" in text)
    elif unusual := _UNUSUAL.search(text) is not None:
        special = _SPECIAL.search(text) is not None
        tabs = "\t" in text
        line_breaks = any(b in text for b in _BREAKS)
        break_space = line_breaks and _BREAK_SPACE.search(text) is not None
        space_break = line_breaks and _SPACE_BREAK.search(text) is not None
    else:
        special = tabs = line_breaks = False
        break_space = space_break = False
    style = requested
    if simple_key and line_breaks:
        style = DOUBLE
    if style == PLAIN:
        plain_ok = not (leading_space or trailing_space or unusual or _has_block_indicator(text))
        if not plain_ok:
            style = SINGLE
    if style == SINGLE and (break_space or space_break or tabs or special):
        style = DOUBLE
    if style == LITERAL and (trailing_space or space_break or special or simple_key):
        style = DOUBLE
    return style, line_breaks


def _has_block_indicator(text: str) -> bool:
    first = text[0]
    if first in _LEADING_INDICATORS:
        return True
    if text[:3] in ("---", "..."):
        return True
    if first in "?-" and (len(text) == 1 or text[1] in " \t"):
        return True
    return _INNER_INDICATOR.search(text) is not None


class _Writer:
    """The emitter's output and the state yaml.v3 keeps about it."""

    __slots__ = ("parts", "spill", "column", "whitespace", "indention", "best", "compact")

    def __init__(self, layout: Layout, spill: Callable[[bytes], object] | None = None):
        self.parts: list[str] = []
        # Where long scalars go as they are written, rather than into `parts`.
        self.spill = spill
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.best = layout.indent
        self.compact = layout.compact_sequences

    def flush(self) -> None:
        """Hand what is written so far to `spill` (when there is one)."""
        if self.spill is not None and self.parts:
            self.spill("".join(self.parts).encode("utf-8"))
            self.parts.clear()

    def put_long(self, piece: str | bytes) -> None:
        """Write one batch of a long scalar."""
        if self.spill is None:
            self.parts.append(piece if isinstance(piece, str) else piece.decode("utf-8"))
        else:
            self.flush()
            self.spill(piece if isinstance(piece, (bytes, bytearray)) else piece.encode("utf-8"))

    # yaml_emitter_increase_indent (with the compact-sequence variant)
    def deeper(self, indent: int, flow: bool, in_sequence: bool, compact: bool = False) -> int:
        if indent < 0:
            return self.best if flow else 0
        if in_sequence:
            return indent + 2
        new = self.best * ((indent + self.best) // self.best)
        return new - 2 if compact else new

    def put_break(self) -> None:
        self.parts.append("\n")
        self.column = 0
        self.indention = True

    def write_indent(self, indent: int) -> None:
        if indent < 0:
            indent = 0
        self.end_line(indent)
        if self.column < indent:
            self.parts.append(" " * (indent - self.column))
            self.column = indent
        self.whitespace = True

    def end_line(self, indent: int) -> None:
        """The line break yaml.v3 writes before a node at `indent`, when one is due."""
        if not self.indention or self.column > indent or (self.column == indent and not self.whitespace):
            self.put_break()

    def write_indicator(self, indicator: str, need_whitespace: bool, is_whitespace: bool,
                        is_indention: bool) -> None:
        if need_whitespace and not self.whitespace:
            self.parts.append(" ")
            self.column += 1
        self.parts.append(indicator)
        self.column += len(indicator)
        self.whitespace = is_whitespace
        self.indention = self.indention and is_indention

    # Nodes ------------------------------------------------------------------------------

    def node(self, value, indent: int, in_sequence: bool, mapping_context: bool) -> None:
        if isinstance(value, (str, bytes, bytearray)):
            self.string(value, indent, in_sequence, simple_key=False)
        elif isinstance(value, Fields):
            self.mapping(value, indent, in_sequence)
        elif isinstance(value, dict):
            self.mapping([(k, value[k]) for k in go_sorted(value)], indent, in_sequence)
        elif isinstance(value, list):
            self.sequence(value, indent, in_sequence, mapping_context)
        elif isinstance(value, bool):
            self.plain("true" if value else "false")
        elif isinstance(value, int):
            self.plain(str(value))
        elif value is None:
            self.plain("null")
        else:
            raise TypeError(f"cannot write {type(value).__name__} as YAML")

    def mapping(self, items, indent: int, in_sequence: bool) -> None:
        if not items:
            self.write_indicator("{", True, True, False)
            self.write_indicator("}", False, False, False)
            return
        indent = self.deeper(indent, False, in_sequence)
        for key, value in items:
            self.write_indent(indent)
            scalar = self.prepare(key, simple_key=True)
            if not scalar.multiline and len(scalar.text.encode()) + len(scalar.tag) <= 128:
                self.scalar(scalar, indent, in_sequence=False)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, True)
                self.scalar(self.prepare(key, simple_key=False), indent, in_sequence=False)
                self.write_indent(indent)
                self.write_indicator(":", True, False, True)
            self.node(value, indent, in_sequence=False, mapping_context=True)

    def sequence(self, items: list, indent: int, in_sequence: bool, mapping_context: bool) -> None:
        if not items:
            self.write_indicator("[", True, True, False)
            self.write_indicator("]", False, False, False)
            return
        compact = self.compact and mapping_context and (self.column == 0 or not self.indention)
        indent = self.deeper(indent, False, in_sequence, compact)
        for item in items:
            self.write_indent(indent)
            self.write_indicator("-", True, False, True)
            self.node(item, indent, in_sequence=True, mapping_context=False)

    # Scalars ----------------------------------------------------------------------------

    def prepare(self, value: str | bytes, simple_key: bool) -> _Scalar:
        if isinstance(value, str) and len(value) <= _CACHED_LENGTH:
            return _prepare_cached(value, simple_key)
        return _prepare(value, simple_key)

    def string(self, value: str | bytes, indent: int, in_sequence: bool, simple_key: bool) -> None:
        self.scalar(self.prepare(value, simple_key), indent, in_sequence)

    def scalar(self, scalar: _Scalar, indent: int, in_sequence: bool) -> None:
        if scalar.tag:
            if not self.whitespace:
                self.parts.append(" ")
                self.column += 1
            self.parts.append(scalar.tag)
            self.column += len(scalar.tag)
            self.whitespace = False
            self.indention = False
        indent = self.deeper(indent, True, in_sequence)
        style, text = scalar.style, scalar.text
        if style == PLAIN:
            self.plain(text)
        elif style == SINGLE:
            self.single_quoted(text, indent)
        elif style == DOUBLE:
            self.double_quoted(text)
        else:
            self.literal(text, indent)

    def plain(self, text: str | bytes) -> None:
        if text and not self.whitespace:
            self.parts.append(" ")
            self.column += 1
        if isinstance(text, str):
            self.parts.append(text)
            self.column += len(text)
        else:  # a long line as UTF-8 bytes (see _big_line)
            self._put_line(text, quote=False)
        if text:
            self.whitespace = False
        self.indention = False

    def _put_line(self, data: bytes, quote: bool) -> None:
        """A long one-line value's UTF-8 bytes, in batches cut between characters (`quote`:
        its single quotes doubled, as in a single-quoted scalar)."""
        start, size = 0, len(data)
        while start < size:
            end = min(start + _BIG, size)
            while end < size and data[end] & 0xC0 == 0x80:  # not inside a character
                end -= 1
            piece = data[start:end]
            if quote:
                piece = piece.replace(b"'", b"''")
            self.put_long(piece)
            # Characters, not bytes, as for text (nothing follows on the line anyway).
            self.column += (len(piece) if piece.isascii()
                            else len(piece.translate(None, _CONTINUATION)))
            start = end

    def single_quoted(self, text: str | bytes, indent: int) -> None:
        if not isinstance(text, str):  # a long line as UTF-8 bytes (see _big_line)
            self.write_indicator("'", True, False, False)
            self._put_line(text, quote=True)
            self._close_quote("'")
            return
        if "\u2028" in text or "\u2029" in text:
            self.write_indicator("'", True, False, False)
            self._single_quoted_with_breaks(text, indent)
            self._close_quote("'")
        else:
            self._quoted("'", text.replace("'", "''"))

    def _quoted(self, quote: str, body: str) -> None:
        """A quoted scalar whose (escaped) body holds no line break."""
        self.write_indicator(quote, True, False, False)
        self.parts.append(body)
        self.column += len(body)
        self._close_quote(quote)

    def _close_quote(self, quote: str) -> None:
        self.write_indicator(quote, False, False, False)
        self.whitespace = False
        self.indention = False

    def _single_quoted_with_breaks(self, text: str, indent: int) -> None:
        # Only U+2028 and U+2029 reach here: other breaks are never single-quoted.
        breaks = False
        for char in text:
            if char in _BREAKS:
                self.parts.append(char)
                self.column = 0
                self.indention = True
                breaks = True
            else:
                if breaks:
                    self.write_indent(indent)
                self.parts.append("''" if char == "'" else char)
                self.column += 1
                self.indention = False
                breaks = False

    def double_quoted(self, text: str) -> None:
        if text[:1] == "\ufeff":
            # yaml.v3 tests for a byte order mark at the start of the whole value, not at
            # each character, so a value that starts with one has every character escaped.
            self._quoted('"', "".join(_escape(c) for c in text))
        else:
            self._quoted('"', _TO_ESCAPE.sub(_escape_match, text))

    def literal(self, text: str | bytes, indent: int) -> None:
        # A long value may arrive as UTF-8 bytes (see _big_literal): its ends, decoded, give
        # the indicators; its lines are indented batch by batch without decoding the rest.
        head = text if isinstance(text, str) else text[:4].decode("utf-8", "ignore")
        tail = text if isinstance(text, str) else text[-8:].decode("utf-8", "ignore")
        self.write_indicator("|", True, False, False)
        if head[0] == " " or head[0] in _BREAKS:
            self.write_indicator(str(self.best), False, False, False)
        if tail[-1] not in _BREAKS:
            self.write_indicator("-", False, False, False)
        elif len(text) == 1 or tail[-2] in _BREAKS:
            self.write_indicator("+", False, False, False)
        self.whitespace = True
        if isinstance(text, str) and ("\u2028" in text or "\u2029" in text):
            self._literal_with_breaks(text, indent)
            return
        # Every line that has text gets the block's indentation; empty lines stay empty.
        if len(text) < _BIG:
            pad = " " * indent
            lines = text.split("\n")
            parts = self.parts
            if lines[0]:
                parts.append("\n")
            for number, line in enumerate(lines):
                if number:
                    parts.append("\n")
                if line:
                    parts.append(pad)
                    parts.append(line)
            last = lines[-1]
        else:
            last = self._long_literal_lines(text, indent)
        if last:
            self.column = indent + len(last)
            self.indention = False
        else:
            self.column = 0
            self.indention = True

    def _long_literal_lines(self, text: str | bytes, indent: int) -> str | bytes:
        """Indent a long block's lines in batches of whole lines (a regular expression
        substitution per batch: less memory than a list of pieces per line); returns the
        last line."""
        newline, start, size = ("\n", 0, len(text)) if isinstance(text, str) else (b"\n", 0, len(text))
        pattern = _LINE_START if isinstance(text, str) else _LINE_START_BYTES
        pad = " " * indent if isinstance(text, str) else b" " * indent
        if text[:1] != newline:
            self.parts.append("\n")
        while start < size:
            end = text.find(newline, start + _BIG)
            end = size if end < 0 else end + 1
            self.put_long(pattern.sub(pad, text[start:end]))
            start = end
        last = text[text.rfind(newline) + 1:]
        return last

    def _literal_with_breaks(self, text: str, indent: int) -> None:
        breaks = True
        for char in text:
            if char in _BREAKS:
                if char == "\n":
                    self.put_break()
                else:
                    self.parts.append(char)
                    self.column = 0
                    self.indention = True
                breaks = True
            else:
                if breaks:
                    self.write_indent(indent)
                self.parts.append(char)
                self.column += 1
                self.indention = False
                breaks = False


def dump_document(root, layout: Layout = DEFAULT_LAYOUT) -> str:
    """The text go-vcr writes for `root`: "---\\n" and yaml.v3's document."""
    writer = _Writer(layout)
    writer.parts.append("---\n")
    _document(writer, root)
    return "".join(writer.parts)


def write_document(root, layout: Layout, write: Callable[[bytes], object]) -> None:
    """`dump_document`, UTF-8 encoded and handed to `write` in pieces."""
    writer = _Writer(layout, spill=write)
    writer.parts.append("---\n")
    _document(writer, root)
    writer.flush()


def _document(writer: _Writer, root) -> None:
    writer.node(root, -1, in_sequence=False, mapping_context=False)
    writer.write_indent(0)


def dump_sequence_item(node, layout: Layout) -> str:
    """The text of one item of a block sequence that is the value of a top-level key, as it
    appears in a document of that layout: its lines, up to where the next item would start.

    An item's bytes do not depend on its neighbours, so a document whose last key holds
    that sequence can grow by appending this text.
    """
    writer = _Writer(layout)
    _sequence_item(writer, node)
    return "".join(writer.parts)


def write_sequence_item(node, layout: Layout, write: Callable[[bytes], object]) -> None:
    """`dump_sequence_item`, UTF-8 encoded and handed to `write` in pieces."""
    writer = _Writer(layout, spill=write)
    _sequence_item(writer, node)
    writer.flush()


def _sequence_item(writer: _Writer, node) -> None:
    # The writer's state after "key:" and the line break before the first item, which
    # is where every item starts (the spaces before its "-" belong to the item).
    indent = writer.deeper(0, False, False, writer.compact)
    writer.sequence([node], 0, in_sequence=False, mapping_context=True)
    writer.end_line(indent)
