"""Reading cassettes: PyYAML's C parser builds the node tree; the typing is Go's.

The nodes are decoded the way yaml.v3 decodes them into go-vcr's structs (a plain `0` is an
int, `duration` must be a Go duration string, `!!binary` holds base64, a duplicate key is an
error), but where Go would fail deep inside a test, this names the file, the line and the fix.

A file laid out as Go writes it is read by fastload.py instead, line by line and typed by
the same decoder (a 50,000-interaction cassette in about 1 s rather than 15 s); anything it
does not fully understand, every error included, comes here.

Aliases: the composer shares aliased nodes, so composing costs what the file's size does; the
decoding that follows is bounded as Go's is, by yaml.v3's own alias budget (aliases.py), and
a file Go would refuse for excessive aliasing is refused here with its line.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import yaml

from ..cassette import VERSION, Cassette, Interaction, Request, Response
from ..durations import DurationError, parse_duration
from ..errors import CassetteError
from ..files import CASSETTE_ADVICE, read_regular
from .aliases import count_aliases
from .emitter import DEFAULT_LAYOUT, LAYOUTS, Layout
from .fastload import REQUEST_FIELDS as _REQUEST_FIELDS
from .fastload import RESPONSE_FIELDS as _RESPONSE_FIELDS
from .fastload import read as read_go_yaml
from .goresolve import BOOL, FLOAT, INT, NULL, STR, resolve

try:  # libyaml's parser; everything read as text, typed below the way Go types it
    from yaml import CBaseLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import BaseLoader as _BaseLoader

_DEFAULT_TAGS = {yaml.ScalarNode: yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG,
                 yaml.SequenceNode: yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                 yaml.MappingNode: yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG}


class _Loader(_BaseLoader):
    """BaseLoader with its resolver's answer given in one lookup: with no implicit or path
    resolvers it gives each untagged node its kind's default tag, but its general search ran
    for every node and took a third of a small cassette's load (profiled in bench/suite.py)."""

    def resolve(self, kind, value, implicit):
        return _DEFAULT_TAGS[kind]

    def descend_resolver(self, current_node, current_index):
        pass

    def ascend_resolver(self):
        pass

_BINARY = "tag:yaml.org,2002:binary"
_TYPED_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
               "tag:yaml.org,2002:null"}
_OLD_BOOLS = {"y": True, "Y": True, "yes": True, "Yes": True, "YES": True, "on": True,
              "On": True, "ON": True, "n": False, "N": False, "no": False, "No": False,
              "NO": False, "off": False, "Off": False, "OFF": False}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_FIRST_ITEM = re.compile(rb"^interactions:[ \t]*\r?\n(?:[ \t]*(?:#.*)?\r?\n)*( *)- ", re.M)


def load_path(path: Path) -> Cassette:
    try:
        # A FIFO or a device where the cassette should be is refused, never waited on.
        data = read_regular(path, advice=CASSETTE_ADVICE)
    except FileNotFoundError:
        raise CassetteError(path, "no such cassette file") from None
    except OSError as error:
        raise CassetteError(path, f"cannot read: {error.strerror}") from None
    return load_text(data, str(path))


def load_text(text: str | bytes, name: str) -> Cassette:
    data = text.encode("utf-8") if isinstance(text, str) else text
    cassette = read_go_yaml(data, _Decoder(name))
    if cassette is None:
        cassette = _compose_and_decode(data, name)
    cassette.layout = detect_layout(data) or DEFAULT_LAYOUT
    return cassette


def _compose_and_decode(data: bytes, name: str) -> Cassette:
    try:
        root = yaml.compose(data, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        raise CassetteError(name, f"not valid YAML: {problem}; fix the file or re-record it",
                            mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise CassetteError(name, f"not valid YAML: {detail}; fix the file or re-record it") from None
    except RecursionError:
        raise CassetteError(name, "not valid YAML: nested too deeply to be a cassette") from None
    aliases = count_aliases(data, name)
    cassette = _Decoder(name).cassette(root)
    cassette.aliases = aliases
    return cassette


def detect_layout(data: bytes) -> Layout | None:
    """The layout of a file, read from where its first interaction and its fields start."""
    match = _FIRST_ITEM.search(data)
    if not match:
        return None
    dash = len(match.group(1))
    nested = re.compile(rb"\n( *)(?:request|response):[ \t]*\r?\n( *)\S").search(data, match.end())
    if not nested:
        return None
    field_column = len(nested.group(2))
    for best in range(2, 10):
        for compact in (False, True):
            if (best - 2 if compact else best) != dash:
                continue
            if best * ((dash + 2 + best) // best) == field_column:
                return _layout(best, compact)
    return None


def _layout(indent: int, compact: bool) -> Layout:
    name = f"indent{indent}" + ("-compact" if compact else "")
    return LAYOUTS.get(name) or Layout(name, indent, compact)


def _is_plain(node: yaml.ScalarNode) -> bool:
    return not node.style


def _is_null(node) -> bool:
    """An unquoted `~`, `null` or nothing: Go leaves the field at its zero value."""
    return isinstance(node, yaml.ScalarNode) and _is_plain(node) and resolve(node.value)[0] == NULL


class _Decoder:
    """Turns composed nodes into the model, failing with the line of the offending node."""

    def __init__(self, name: str):
        self.name = name
        self.ignored: list[str] = []
        self.binaries: dict[int, str | bytes] = {}

    def fail(self, node, problem: str):
        raise CassetteError(self.name, problem, node.start_mark.line + 1 if node else None)

    # Structure ---------------------------------------------------------------------------

    def fields(self, node, what: str, known: frozenset[str]) -> dict:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what}: expected a mapping, found {self._describe(node)}")
        found: dict = {}
        lines: dict = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.fail(key, f"{what}: a key must be a plain name")
            name = key.value
            if name in lines:
                self.fail(key, f"{what}: duplicate key {name!r} (first at line {lines[name]})")
            lines[name] = key.start_mark.line + 1
            if name in known:
                found[name] = value
            else:
                self.ignored.append(f"line {key.start_mark.line + 1}: unknown field {name!r} in {what}")
        return found

    def cassette(self, root) -> Cassette:
        if root is None:
            raise CassetteError(self.name, "empty file, not a cassette; delete it or re-record")
        found = self.fields(root, "cassette", frozenset(("version", "interactions")))
        if "version" not in found:
            self.fail(root, "no 'version' field: not a go-vcr cassette")
        version = self.integer(found["version"], "version")
        if version == 1:
            self.fail(found["version"], "version 1 cassette (go-vcr v1/v2 format), which go-vcr v4 "
                      "refuses; delete it and re-record")
        if version != VERSION:
            self.fail(found["version"], f"unsupported cassette version {version} (expected 2)")
        if "interactions" not in found:
            self.fail(root, "no 'interactions' field; add 'interactions: []' or re-record")
        interactions = []
        ids: dict[int, int] = {}
        for item in self.sequence(found["interactions"], "interactions"):
            interaction = self.interaction(item, len(interactions))
            line = item.start_mark.line + 1
            if interaction.id in ids:
                self.fail(item, f"duplicate interaction id {interaction.id} (first at line "
                          f"{ids[interaction.id]}); renumber the ids 0, 1, 2...")
            ids[interaction.id] = line
            interactions.append(interaction)
        return Cassette(interactions=interactions, version=version, ignored=self.ignored)

    def sequence(self, node, what: str) -> list:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what}: expected a list, found {self._describe(node)}")
        return node.value

    def interaction(self, node, index: int) -> Interaction:
        what = f"interaction #{index}"
        if _is_null(node):
            self.fail(node, f"{what} is empty (null); remove it")
        found = self.fields(node, what, _INTERACTION_FIELDS)
        for required in ("id", "request", "response"):
            if required not in found:
                self.fail(node, f"{what}: missing field '{required}'")
        return Interaction(
            id=self.integer(found["id"], f"{what} id"),
            request=self.struct(found["request"], Request, _REQUEST_FIELDS, f"{what} request"),
            response=self.struct(found["response"], Response, _RESPONSE_FIELDS, f"{what} response"),
        )

    def struct(self, node, cls, spec: dict, what: str):
        found = self.fields(node, what, frozenset(spec))
        values = {}
        for name, value in found.items():
            kind = spec[name]
            values[name] = getattr(self, kind)(value, f"{what} {name}")
        for name in _REQUIRED.get(cls, ()):
            if name not in found:
                self.fail(node, f"{what}: missing field '{name}'")
        return cls(**values)

    # Scalars -----------------------------------------------------------------------------

    def _describe(self, node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return repr(text)

    def _scalar(self, node, what: str) -> yaml.ScalarNode:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what}: expected a value, found {self._describe(node)}")
        return node

    def _typed(self, node) -> tuple[str, object]:
        """The tag and value yaml.v3 resolves a scalar to."""
        if _is_plain(node) or node.tag in _TYPED_TAGS:
            return resolve(node.value)
        return STR, node.value

    def string(self, node, what: str) -> str | bytes:
        node = self._scalar(node, what)
        if node.tag == _BINARY:
            # An aliased !!binary body is decoded once and shared, as its node is.
            cached = self.binaries.get(id(node))
            if cached is None:
                cached = self.binaries[id(node)] = self._binary(node, what)
            return cached
        if _is_null(node):
            return ""
        return node.value

    def _binary(self, node, what: str) -> str | bytes:
        try:
            data = base64.b64decode(re.sub(r"[\r\n]", "", node.value), validate=True)
        except (binascii.Error, ValueError):
            self.fail(node, f"{what}: !!binary value is not valid base64")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data

    def integer(self, node, what: str) -> int:
        node = self._scalar(node, what)
        tag, value = self._typed(node)
        if tag == NULL:
            return 0
        if tag == FLOAT and value == value and abs(value) != float("inf"):
            value, tag = int(value), INT
        if tag == INT and _INT64[0] <= value <= _INT64[1]:
            return value
        if not _is_plain(node) and resolve(node.value)[0] == INT:
            self.fail(node, f"{what}: expected an integer, found the quoted string "
                      f"{self._describe(node)}; remove the quotes")
        self.fail(node, f"{what}: expected an integer, found {self._describe(node)}")

    def boolean(self, node, what: str) -> bool:
        node = self._scalar(node, what)
        tag, value = self._typed(node)
        if tag == NULL:
            return False
        if tag == BOOL:
            return value
        if tag == STR and _is_plain(node) and node.value in _OLD_BOOLS:
            return _OLD_BOOLS[node.value]
        self.fail(node, f"{what}: expected true or false, found {self._describe(node)}")

    def duration(self, node, what: str) -> int:
        node = self._scalar(node, what)
        tag, _ = self._typed(node)
        if tag == NULL:
            return 0
        if tag != STR:
            self.fail(node, f"{what}: {node.value!r} has no unit; Go needs a duration like "
                      f"'{node.value}s' or '0s'")
        try:
            return parse_duration(node.value)
        except DurationError as error:
            self.fail(node, f"{what}: Go refuses {node.value!r} ({error}); write e.g. '1.5s'")

    def strings(self, node, what: str) -> list[str]:
        return [self.string(item, what) for item in self.sequence(node, what)]

    def header(self, node, what: str) -> dict[str, list[str]]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what}: expected a mapping of names to lists, found {self._describe(node)}")
        result: dict[str, list[str]] = {}
        lines: dict[str, int] = {}
        for key, value in node.value:
            name = self.string(key, what)
            if not isinstance(name, str):
                self.fail(key, f"{what}: a name must be UTF-8 text")
            if name in lines:
                self.fail(key, f"{what}: duplicate key {name!r} (first at line {lines[name]})")
            lines[name] = key.start_mark.line + 1
            result[name] = self.strings(value, f"{what} {name}")
        return result


_INTERACTION_FIELDS = frozenset(("id", "request", "response"))
# Fields whose absence means the file was not written by go-vcr and cannot be replayed.
_REQUIRED = {Request: ("url", "method"), Response: ("code",)}
