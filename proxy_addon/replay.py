"""Serving recorded interactions: cassettes kept fresh from disk, and the plan of a replayed
response (when its headers and each of its events are due); paced.py sends a plan."""

from __future__ import annotations

import functools
import logging
import os
import threading

from mitmproxy.net import encoding

from . import collector
from dataclasses import dataclass, field
from pathlib import Path

from .cassette import Cassette, Interaction, load
from .codings import DEFAULT_MAX_BODY, DecodeError, codings, decode_body
from .errors import CassetteError
from .matchers import IncomingRequest, Matcher
from .timing import Timing, body_hash, event_ends, read_sidecar, sidecar_path

log = logging.getLogger("vcr-proxy")

TIMINGS = ("none", "duration", "events")


class ReplayCassette:
    """A cassette served from disk: reloaded when the file changes; a change that does not
    load is reported once and the previous contents keep serving."""

    def __init__(self, path: Path):
        self.path = path
        self.cassette: Cassette | None = None
        self.timings: dict[int, Timing] = {}
        self.used: set[int] = set()  # ids already replayed
        self.finding = threading.Lock()
        self.index: dict | None = None
        self.indexed_by: Matcher | None = None
        self.stamp: tuple | None = None
        self.failed_stamp: tuple | None = None
        self.error: CassetteError | None = None  # why the file on disk does not load

    def _stamp(self) -> tuple | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def needs_refresh(self) -> bool:
        stamp = self._stamp()
        return stamp != self.stamp and stamp != self.failed_stamp

    def refresh(self) -> None:
        """Load the file if it changed since the last look (blocking: call off the loop)."""
        stamp = self._stamp()
        if stamp is None:
            self.cassette, self.stamp = None, None
            return
        if stamp in (self.stamp, self.failed_stamp):
            return
        try:
            cassette = load(self.path)
        except CassetteError as error:
            self.failed_stamp, self.error = stamp, error
            still = "; still serving the previous contents" if self.cassette else ""
            log.error(f"vcr-proxy: {error}{still}")
            return
        self.cassette, self.stamp, self.failed_stamp, self.error = cassette, stamp, None, None
        collector.settle()
        self.index = None
        try:
            self.timings = read_sidecar(sidecar_path(self.path))
        except CassetteError as error:  # a FIFO or a device there: refused, never waited on
            self.timings = {}
            log.error(f"vcr-proxy: {error}; replaying {self.path.name} without its event timing")
        self.used &= {i.id for i in cassette.interactions}

    def find(self, matcher: Matcher, request: IncomingRequest) -> tuple[Interaction | None, int]:
        # A large request is matched in a thread, the others on the event loop: one at a time,
        # so that no recording is served twice.
        with self.finding:
            if self.cassette is None:
                return None, 0
            if self.index is None or self.indexed_by is not matcher:
                self.index, self.indexed_by = matcher.index(self.cassette.interactions), matcher
            return matcher.find(self.index, self.used, request)

    def timing_for(self, interaction: Interaction) -> Timing | None:
        timing = self.timings.get(interaction.id)
        if timing and timing.body_hash == body_hash(interaction.response.body):
            return timing
        return None


def body_bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body


@functools.lru_cache(maxsize=32)
def wire_body(body: bytes, content_encoding: str) -> bytes:
    """The bytes a recorded body goes out as, under its Content-Encoding header (if any).

    go-vcr keeps what the client's transport handed over: a body its client asked to have
    compressed (an Accept-Encoding of its own) stays compressed in the cassette, header and all,
    and goes out as it is, as go-vcr replays it; compressed again, a client read the compressed
    bytes as the body. A body kept decoded under such a header (edited by hand, or converted from
    another tool's cassette) is compressed as the header says. (vcr-proxy records bodies decoded
    and drops the header, as Go's transport does when it decodes.)"""
    stages = [coding for coding in codings(content_encoding) if coding != "identity"]
    if not stages:
        return body
    try:
        decode_body(body, content_encoding, DEFAULT_MAX_BODY, "recorded body")
        return body
    except DecodeError:
        pass
    try:
        for coding in reversed(stages):
            body = encoding.encode(body, coding)
    except ValueError:  # a coding mitmproxy cannot write: as recorded
        pass
    return body


def split_events(body: bytes, content_type: str = "") -> list[bytes]:
    """The body cut after each event (timing.event_ends), so that every event is its own chunk."""
    chunks, start = [], 0
    for end in event_ends(body, content_type):
        chunks.append(body[start:end])
        start = end
    if start < len(body) or not chunks:
        chunks.append(body[start:])
    return chunks


@dataclass
class Plan:
    """How to send one recorded response: when its headers go, and when each chunk goes
    (seconds after the request started)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    chunks: list[bytes]
    started: float  # time.time() of the request's start
    headers_at: float = 0.0
    chunk_at: list[float] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    cut: bool = False  # close the connection after the chunks, the body unfinished


def make_plan(interaction: Interaction, timing: Timing | None, mode: str, speed: float,
              started: float, headers: list[tuple[str, str]]) -> Plan:
    response = interaction.response
    coded = ", ".join(value for name, values in response.headers.items()
                      if name.lower() == "content-encoding" for value in values)
    if any(coding != "identity" for coding in codings(coded)):
        chunks = [wire_body(body_bytes(response.body), coded)]  # its events are not its bytes' cuts
    else:
        chunks = split_events(body_bytes(response.body), " ".join(response.headers.get("Content-Type", [])))
    reason = response.status.partition(" ")[2]
    plan = Plan(response.code, reason, headers, chunks, started)
    if mode == "none":
        plan.chunk_at = [0.0] * len(chunks)
        return plan
    duration = response.duration / 1e9
    if mode == "events" and timing is not None:
        plan.headers_at = timing.headers_ms / 1e3 / speed
        times = [t / 1e3 / speed for t in timing.events_ms]
        end = timing.end_ms / 1e3 / speed
        # A trailing chunk after the last event (if any) goes when the body ended.
        plan.chunk_at = (times + [end] * len(chunks))[:len(chunks)]
        return plan
    plan.headers_at = duration / speed
    plan.chunk_at = [plan.headers_at] * len(chunks)
    return plan
