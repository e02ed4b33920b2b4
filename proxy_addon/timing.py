"""Per-event timing of recorded streams, kept in a sidecar Go never reads.

A cassette has room for one duration per interaction (time to the response headers). Replay
with the original pacing needs the arrival time of every event, so recording writes them to
`NAME.timing.jsonl` beside `NAME.yaml`: one JSON line per interaction, appended as the
interaction is saved. A line names its interaction by id and by a hash of the body, so a
sidecar that no longer matches its cassette (re-recorded, re-saved by Go) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .files import read_regular

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass
class Timing:
    id: int
    body_hash: str
    headers_ms: float  # request start to response headers (go-vcr's duration)
    events_ms: list[float] = field(default_factory=list)  # request start to each event's end
    end_ms: float = 0.0  # request start to the end of the body

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "body": self.body_hash, "headers_ms": round(self.headers_ms, 3),
                           "events_ms": [round(t, 3) for t in self.events_ms],
                           "end_ms": round(self.end_ms, 3)}, separators=(",", ":"))


def body_hash(body: bytes | str) -> str:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return hashlib.sha256(data).hexdigest()[:16]


SIDECAR_ADVICE = "vcr-proxy keeps the cassette's event timing there: remove it"


def sidecar_path(cassette: Path) -> Path:
    return cassette.with_name(cassette.stem + ".timing.jsonl")


AWS_EVENT_STREAM = "application/vnd.amazon.eventstream"


def is_aws_event_stream(content_type: str) -> bool:
    return AWS_EVENT_STREAM in content_type.lower()


def event_ends(body: bytes, content_type: str = "") -> list[int]:
    """Byte offsets just past each event of `body`: each Server-Sent Event (a blank line ends
    it), or each frame of an AWS event stream (Bedrock's `application/vnd.amazon.eventstream`)."""
    if is_aws_event_stream(content_type):
        return frame_ends(body)
    return [match.end() for match in _EVENT_END.finditer(body)]


def frame_ends(body: bytes) -> list[int]:
    """Byte offsets just past each AWS event-stream frame. Frames are self-delimiting: each
    begins with its total length (4 bytes, big-endian; 16 at least: the 12-byte prelude and a
    4-byte checksum). A truncated or impossible frame ends the list: the rest is one block."""
    ends, offset = [], 0
    while offset + 12 <= len(body):
        total = int.from_bytes(body[offset:offset + 4], "big")
        if total < 16 or offset + total > len(body):
            break
        offset += total
        ends.append(offset)
    return ends


def event_times(body: bytes, arrivals: list[tuple[int, float]], content_type: str = "") -> list[float]:
    """When each event of `body` was complete: the arrival time of the chunk that carried its
    end. `arrivals` is (bytes received so far, time) after each chunk, in order."""
    times = []
    index = 0
    for end in event_ends(body, content_type):
        while index < len(arrivals) - 1 and arrivals[index][0] < end:
            index += 1
        times.append(arrivals[index][1] if arrivals else 0.0)
    return times


# A time past this (a week, in milliseconds) is not a recorded request's.
MAX_MS = 7 * 24 * 3600 * 1e3


def _ms(value) -> float:
    """A time from a sidecar line: a finite number from 0 to MAX_MS, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a time: {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0 <= value <= MAX_MS):
        raise ValueError(f"not a time: {value!r}")
    return value


def read_sidecar(path: Path) -> dict[int, Timing]:
    """Timings by interaction id; unreadable lines (a torn last line after a crash) skipped,
    and so are lines whose values are not what recording writes: an id that is not an integer,
    a time that is not a finite number of milliseconds from 0 to a week, events_ms not a list.
    CassetteError if something other than a regular file is there."""
    timings: dict[int, Timing] = {}
    if os.path.isdir(path):  # a folder cannot block a read: ignored, as a missing sidecar is
        return timings
    try:
        # A FIFO or a device in its place is a CassetteError (one line), not a hang.
        lines = read_regular(path, advice=SIDECAR_ADVICE).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # missing, unreadable
        return timings
    for line in lines:
        try:
            data = json.loads(line)
            if (not isinstance(data, dict) or isinstance(data["id"], bool) or not isinstance(data["id"], int)
                    or not isinstance(data["body"], str) or not isinstance(data["events_ms"], list)):
                continue
            timing = Timing(data["id"], data["body"], _ms(data["headers_ms"]),
                            [_ms(t) for t in data["events_ms"]], _ms(data["end_ms"]))
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        timings[timing.id] = timing
    return timings
