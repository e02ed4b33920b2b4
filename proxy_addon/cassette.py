"""The go-vcr v4 cassette ("version 2"): its data model, and its load and save.

Field for field what go-vcr's `pkg/cassette` marshals, in its struct order, with Go's zero
values as defaults (a field missing from a file reads as Go reads it). A body is a `str`
when it is UTF-8 and `bytes` when it is not (Go writes those as `!!binary`); a recorder may
also hand a long body over as UTF-8 `bytes` or `bytearray`, written as text all the same, so
that it is never held twice. Durations are integer nanoseconds, written as Go's
`time.Duration.String()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .durations import format_duration
from .serializers.emitter import (DEFAULT_LAYOUT, Fields, Layout, dump_document, dump_sequence_item,
                                  write_document, write_sequence_item)

VERSION = 2

Header = dict[str, list[str]]


@dataclass
class Request:
    proto: str = ""
    proto_major: int = 0
    proto_minor: int = 0
    content_length: int = 0
    transfer_encoding: list[str] = field(default_factory=list)
    trailer: Header = field(default_factory=dict)
    host: str = ""
    remote_addr: str = ""
    request_uri: str = ""
    body: str | bytes = ""
    form: Header = field(default_factory=dict)
    headers: Header = field(default_factory=dict)
    url: str = ""
    method: str = ""

    def to_node(self) -> Fields:
        fields: list = [
            ("proto", self.proto),
            ("proto_major", self.proto_major),
            ("proto_minor", self.proto_minor),
            ("content_length", self.content_length),
        ]
        if self.transfer_encoding:
            fields.append(("transfer_encoding", self.transfer_encoding))
        if self.trailer:
            fields.append(("trailer", self.trailer))
        fields.append(("host", self.host))
        if self.remote_addr:
            fields.append(("remote_addr", self.remote_addr))
        if self.request_uri:
            fields.append(("request_uri", self.request_uri))
        if self.body:
            fields.append(("body", self.body))
        if self.form:
            fields.append(("form", self.form))
        if self.headers:
            fields.append(("headers", self.headers))
        fields.append(("url", self.url))
        fields.append(("method", self.method))
        return Fields(fields)


@dataclass
class Response:
    proto: str = ""
    proto_major: int = 0
    proto_minor: int = 0
    transfer_encoding: list[str] = field(default_factory=list)
    trailer: Header = field(default_factory=dict)
    content_length: int = 0
    uncompressed: bool = False
    body: str | bytes = ""
    headers: Header = field(default_factory=dict)
    status: str = ""
    code: int = 0
    duration: int = 0  # nanoseconds

    def to_node(self) -> Fields:
        fields: list = [
            ("proto", self.proto),
            ("proto_major", self.proto_major),
            ("proto_minor", self.proto_minor),
        ]
        if self.transfer_encoding:
            fields.append(("transfer_encoding", self.transfer_encoding))
        if self.trailer:
            fields.append(("trailer", self.trailer))
        fields.append(("content_length", self.content_length))
        if self.uncompressed:
            fields.append(("uncompressed", True))
        fields += [
            ("body", self.body),
            ("headers", self.headers),
            ("status", self.status),
            ("code", self.code),
            ("duration", format_duration(self.duration)),
        ]
        return Fields(fields)


@dataclass
class Interaction:
    id: int = 0
    request: Request = field(default_factory=Request)
    response: Response = field(default_factory=Response)

    def to_node(self) -> Fields:
        return Fields((("id", self.id), ("request", self.request.to_node()),
                       ("response", self.response.to_node())))


@dataclass
class Cassette:
    interactions: list[Interaction] = field(default_factory=list)
    version: int = VERSION
    # How the file was indented when loaded; kept when it is written again.
    layout: Layout = field(default=DEFAULT_LAYOUT, compare=False)
    # Fields that Go ignores (and so would drop on save), as "line N: name" notes.
    ignored: list[str] = field(default_factory=list, compare=False)
    # YAML aliases Go expands when it reads the file: such a file is never what Go writes,
    # and saving it again writes every alias out in full.
    aliases: int = field(default=0, compare=False)

    def to_node(self) -> Fields:
        return Fields((("version", self.version),
                       ("interactions", [i.to_node() for i in self.interactions])))

    def dumps(self, layout: Layout | None = None) -> str:
        """The cassette as go-vcr writes it, in `layout` (default: the cassette's own)."""
        return dump_document(self.to_node(), layout or self.layout)

    def write(self, write: Callable[[bytes], object], layout: Layout | None = None) -> None:
        """`dumps()`, UTF-8 encoded and handed to `write` in pieces (long bodies in batches)."""
        write_document(self.to_node(), layout or self.layout, write)

    def next_id(self) -> int:
        return max((i.id for i in self.interactions), default=-1) + 1


def dump_interaction(interaction: Interaction, layout: Layout) -> str:
    """The text of one item of `interactions:`, as it appears in a file of that layout.

    A block sequence item's bytes do not depend on its neighbours, so a cassette can grow by
    appending this text to a file whose last item it follows.
    """
    return dump_sequence_item(interaction.to_node(), layout)


def write_interaction(interaction: Interaction, layout: Layout, write: Callable[[bytes], object]) -> None:
    """`dump_interaction`, UTF-8 encoded and handed to `write` in pieces."""
    write_sequence_item(interaction.to_node(), layout, write)


def load(path: str | Path) -> Cassette:
    """Read a cassette file; raises CassetteError with a one-line message."""
    from .serializers.loader import load_path

    return load_path(Path(path))


def loads(text: str | bytes, name: str = "<string>") -> Cassette:
    from .serializers.loader import load_text

    return load_text(text, name)
