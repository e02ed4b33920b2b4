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
- `list`: a slice; `str`: a string; `bytes`: a Go string that may not be UTF-8;
- `bool`, `int`, and `None` (a nil pointer).
"""

from __future__ import annotations

import base64
import re
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
_BIG = 1 << 20
# Anything that is not a printable character to yaml.v3, plus tab and the line breaks: a string
# without any of these needs no escaping and no multi-line handling.
_UNUSUAL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\U00010000-\U0010ffff]")
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff\U00010000-\U0010ffff]")
_BREAK_SPACE = re.compile("[\r\n\x85\u2028\u2029] ")
_SPACE_BREAK = re.compile(" [\r\n\x85\u2028\u2029]")
_INNER_INDICATOR = re.compile("[:](?:[ \t]|\\Z)|[ \t\r\n\x85\u2028\u2029\x00]#")
_LEADING_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
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

    text: str
    tag: str
    style: str
    multiline: bool = False


def _prepare(value: str | bytes, simple_key: bool) -> _Scalar:
    """encode.go `stringv` and the emitter's style selection."""
    tag = ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            tag, value = _BINARY_TAG, _go_base64(value)
    elif _SURROGATES.search(value):  # lone surrogates: not a valid Go string either
        tag, value = _BINARY_TAG, _go_base64(value.encode("utf-8", "surrogatepass"))
    if "\n" in value:
        requested = LITERAL
    elif tag or plain_is_string(value):
        requested = PLAIN
    else:
        requested = DOUBLE
    style, multiline = _analyze(value, requested, simple_key)
    return _Scalar(value, tag, style, multiline)


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
    unusual = _UNUSUAL.search(text) is not None
    first, last = text[0], text[-1]
    leading_space, trailing_space = first == " ", last == " "
    if unusual:
        special = _SPECIAL.search(text) is not None
        tabs = "\t" in text
        line_breaks = any(b in text for b in _BREAKS)
        leading_break, trailing_break = first in _BREAKS, last in _BREAKS
        break_space = line_breaks and _BREAK_SPACE.search(text) is not None
        space_break = line_breaks and _SPACE_BREAK.search(text) is not None
    else:
        special = tabs = line_breaks = leading_break = trailing_break = False
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

    __slots__ = ("parts", "column", "whitespace", "indention", "best", "compact")

    def __init__(self, layout: Layout):
        self.parts: list[str] = []
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.best = layout.indent
        self.compact = layout.compact_sequences

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
        if not self.indention or self.column > indent or (self.column == indent and not self.whitespace):
            self.put_break()
        if self.column < indent:
            self.parts.append(" " * (indent - self.column))
            self.column = indent
        self.whitespace = True

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
        if isinstance(value, (str, bytes)):
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

    def plain(self, text: str) -> None:
        if text and not self.whitespace:
            self.parts.append(" ")
            self.column += 1
        self.parts.append(text)
        self.column += len(text)
        if text:
            self.whitespace = False
        self.indention = False

    def single_quoted(self, text: str, indent: int) -> None:
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

    def literal(self, text: str, indent: int) -> None:
        self.write_indicator("|", True, False, False)
        if text[0] == " " or text[0] in _BREAKS:
            self.write_indicator(str(self.best), False, False, False)
        if text[-1] not in _BREAKS:
            self.write_indicator("-", False, False, False)
        elif len(text) == 1 or text[-2] in _BREAKS:
            self.write_indicator("+", False, False, False)
        self.whitespace = True
        if "\u2028" in text or "\u2029" in text:
            self._literal_with_breaks(text, indent)
            return
        # Every line that has text gets the block's indentation; empty lines stay empty.
        pad = " " * indent
        if len(text) < _BIG:
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
        else:  # one substitution, not a list of lines and pieces: less memory, more time
            indented = _LINE_START.sub(pad, text)
            self.parts.append(indented if text[0] == "\n" else "\n" + indented)
        last = text[text.rfind("\n") + 1:]
        if last:
            self.column = indent + len(last)
            self.indention = False
        else:
            self.column = 0
            self.indention = True

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
    writer.node(root, -1, in_sequence=False, mapping_context=False)
    writer.write_indent(0)
    return "".join(["---\n", *writer.parts])
