"""yaml.v3's alias budget, applied before a cassette is decoded.

yaml.v3 counts every node it decodes into go-vcr's structs and every node it decodes again
through an alias, and fails with "document contains excessive aliasing" once (decode.go,
`unmarshal`) more than 100 aliased decodes make up more than a set share of more than 1000
decodes: 99% up to 400,000 decodes, falling linearly to 10% at 4,000,000. This module counts
the same way, on the same struct shapes and in the same order, so that a file Go refuses is
refused here too, after about as much work as Go does (a bomb stops early, whatever it would
expand to), and a file Go accepts is accepted.

The composed node tree cannot tell an alias from its anchor (both are the same node), so the
count walks the parser's events; that second parse is only paid by files that may hold an
anchor at all (`may_have_anchors`).
"""

from __future__ import annotations

import re

import yaml

from ..errors import CassetteError

try:
    from yaml import CBaseLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import BaseLoader as _Loader

# An anchor property (`&name`) can only follow the start of a line, a space or tab, or a flow
# indicator; a body's "a&b" in a URL cannot be one. A false alarm only costs the exact count.
# `&name` where YAML may start an anchor: found by its `&` first (a literal is searched fast;
# the character before it is checked by hand), since most files have none.
_ANCHOR = re.compile(rb"&[^\s\[\]{},]")
_BEFORE_ANCHOR = frozenset(b" \t\r\n[]{},:?-")

_LOW, _HIGH = 400_000, 4_000_000


def may_have_anchors(data: bytes) -> bool:
    return any(match.start() == 0 or data[match.start() - 1] in _BEFORE_ANCHOR
               for match in _ANCHOR.finditer(data))


def allowed_alias_ratio(decodes: int) -> float:
    """decode.go's allowedAliasRatio."""
    if decodes <= _LOW:
        return 0.99
    if decodes >= _HIGH:
        return 0.10
    return 0.99 - 0.89 * ((decodes - _LOW) / (_HIGH - _LOW))


class _Node:
    __slots__ = ("kind", "value", "plain", "tag", "line", "target")

    def __init__(self, kind: str, value=None, plain: bool = False, tag=None, line: int = 0, target=None):
        self.kind, self.value, self.plain, self.tag, self.line, self.target = kind, value, plain, tag, line, target


def _tree(data: bytes) -> _Node | None:
    """The document's nodes from the parser's events, aliases kept as alias nodes."""
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    root = None
    for event in yaml.parse(data, Loader=_Loader):
        if isinstance(event, yaml.ScalarEvent):
            node = _Node("S", event.value, not event.style, event.tag, event.start_mark.line + 1)
        elif isinstance(event, yaml.AliasEvent):
            node = _Node("A", line=event.start_mark.line + 1, target=anchors.get(event.anchor))
            node.value = event.anchor
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            node = _Node("Q" if isinstance(event, yaml.SequenceStartEvent) else "M", [],
                         line=event.start_mark.line + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            stack.pop()
            continue
        else:
            continue
        anchor = getattr(event, "anchor", None)
        if anchor is not None and node.kind != "A":
            anchors[anchor] = node
        if stack:
            stack[-1].value.append(node)
        else:
            root = node
        if node.kind in "QM":
            stack.append(node)
    return root


# The shapes yaml.v3 decodes into: a struct is its fields' shapes, "map" is http.Header
# (map[string][]string), "list" is []string, "scalar" anything else.
_REQUEST = {name: "scalar" for name in ("proto", "proto_major", "proto_minor", "content_length",
                                        "host", "remote_addr", "request_uri", "body", "url", "method")}
_REQUEST.update(transfer_encoding="list", trailer="map", form="map", headers="map")
_RESPONSE = {name: "scalar" for name in ("proto", "proto_major", "proto_minor", "content_length",
                                         "uncompressed", "body", "status", "code", "duration")}
_RESPONSE.update(transfer_encoding="list", trailer="map", headers="map")
_INTERACTION = {"id": "scalar", "request": _REQUEST, "response": _RESPONSE}
_CASSETTE = {"version": "scalar", "interactions": ("items", _INTERACTION)}


class _Excessive(Exception):
    pass


class _Counter:
    def __init__(self):
        self.decodes = 1  # the document node
        self.aliased = 0
        self.depth = 0
        self.expanding: set[int] = set()
        self.alias_line = 0  # the outermost alias being expanded
        self.alias_nodes = 0

    def visit(self, node: _Node, shape) -> None:
        self.decodes += 1
        if self.depth:
            self.aliased += 1
        if (self.aliased > 100 and self.decodes > 1000
                and self.aliased / self.decodes > allowed_alias_ratio(self.decodes)):
            raise _Excessive
        if node.kind == "A":
            target = node.target
            if target is None or id(target) in self.expanding:
                return  # Go's own errors for these ("unknown anchor", "contains itself")
            self.alias_nodes += 1
            if not self.depth:
                self.alias_line = node.line
            self.expanding.add(id(target))
            self.depth += 1
            try:
                self.visit(target, shape)
            finally:
                self.depth -= 1
                self.expanding.discard(id(target))
            return
        if node.kind == "S":
            return  # a scalar, or a null for any shape: nothing below it
        if isinstance(shape, dict):
            if node.kind == "M" and not self._duplicate_keys(node):
                pairs = node.value
                for index in range(0, len(pairs) - 1, 2):
                    key = pairs[index]
                    self.visit(key, "scalar")
                    name = self._key_name(key)
                    if name in shape:
                        self.visit(pairs[index + 1], shape[name])
        elif shape == "map":
            if node.kind == "M" and not self._duplicate_keys(node):
                pairs = node.value
                for index in range(0, len(pairs) - 1, 2):
                    self.visit(pairs[index], "scalar")
                    if self._key_name(pairs[index]) is not None:
                        self.visit(pairs[index + 1], "list")
        elif shape == "list":
            if node.kind == "Q":
                for item in node.value:
                    self.visit(item, "scalar")
        elif isinstance(shape, tuple):  # ("items", struct)
            if node.kind == "Q":
                for item in node.value:
                    self.visit(item, shape[1])

    @staticmethod
    def _key_name(key: _Node) -> str | None:
        while key is not None and key.kind == "A":
            key = key.target
        if key is None or key.kind != "S":
            return None
        return key.value

    @staticmethod
    def _duplicate_keys(node: _Node) -> bool:
        keys = [(key.kind, key.value) for key in node.value[0::2] if key.kind in "SA"]
        return len(keys) != len(set(keys))


def count_aliases(data: bytes, name: str) -> int:
    """How many aliases Go expands when it decodes this cassette (0 for a file without
    anchors); CassetteError if Go refuses the document for excessive aliasing.

    Errors of any other kind are left to the loader, which reports them better.
    """
    if not may_have_anchors(data):
        return 0
    try:
        root = _tree(data)
    except (yaml.YAMLError, RecursionError, IndexError):
        return 0
    if root is None:
        return 0
    counter = _Counter()
    try:
        counter.visit(root, _CASSETTE)
    except _Excessive:
        raise CassetteError(name, f"document contains excessive aliasing ({counter.aliased:,} of "
                            f"{counter.decodes:,} nodes decoded through aliases), which Go's "
                            "yaml.v3 refuses; replace the aliases (*name) with the values or "
                            "re-record", counter.alias_line or None) from None
    except RecursionError:
        return counter.alias_nodes
    return counter.alias_nodes
