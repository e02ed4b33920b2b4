"""The realtime sidecar: `NAME.realtime.jsonl` beside the cassette `NAME.yaml`.

One JSON object per line (UTF-8, no line breaks inside a line), appended as sessions go, so a
crash keeps every line written before it; a torn last line is skipped when read. Lines of
several sessions may interleave (two sessions at once); each names its session by `session`,
an integer unique in the file, given in the order the sessions opened. Keys come in the order
shown, so `grep '"type":"open"'` lists the sessions.

    {"type":"open","session":0,"format":1,"url":"wss://api.openai.com/v1/realtime?model=m",
     "at":"2025-06-01T12:00:00.000Z","handshake_ms":81.2,"subprotocols":["realtime"],
     "protocol":"realtime","request_headers":{"User-Agent":["..."]},"status":101,
     "response_headers":{}}
    {"type":"message","session":0,"from":"server","ms":85.0,"text":"{\"type\":\"session.created\",...}"}
    {"type":"message","session":0,"from":"client","ms":90.3,"binary":"AAECAw=="}
    {"type":"close","session":0,"ms":5012.7,"code":1000,"reason":"","by":"client"}

- `open`: the handshake, written once it succeeded. `url` is the public URL (`wss://`), its
  credential parameters (Gemini's `key=`) `REDACTED`; `at` the UTC time the session opened;
  `handshake_ms` the time from the upgrade request to the `101`; `subprotocols` what the client
  offered (credentials carried as subprotocols, OpenAI's `openai-insecure-api-key.<key>`,
  `REDACTED` after the dot) and `protocol` what the server chose (null: none); headers as a
  cassette records them (the `vcr_headers` policy, credential headers dropped).
- `message`: one whole WebSocket message. `from` is `client` or `server`; `ms` the time since
  the session opened (the 101), in milliseconds; a text message as `text`, a binary one as
  `binary` (standard base64, byte for byte). JSON credential fields, the session's credentials
  wherever they echo, and key shapes are `REDACTED` (text, and binary that holds them as text).
- a refused handshake (the upstream answered the upgrade with another status, 401 or 403): its
  `open` line alone, with that `status`, its response headers, and its body as `body` (text)
  or `body_binary` (base64), scrubbed like a message; it has no messages and no close.
- `close`: the closing handshake: `code` (null when none was given or the connection dropped),
  `reason`, `by` (`client` or `server`). A session with no close line was cut off (a crash).

Readers ignore lines of unknown `type`, unknown keys, and lines whose values recording would not
write (text that is not Unicode, headers that are not HTTP's, a close code no endpoint may send,
`ms` beyond a week); `format` is 1. A sidecar is read where it is, never through a symlink.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CassetteError
from ..files import open_regular

FORMAT = 1
SUFFIX = ".realtime.jsonl"
ADVICE = "vcr-proxy keeps the cassette's realtime sessions there: remove it"
MAX_MS = 7 * 24 * 3600 * 1e3  # a week: no recorded session is longer


def sidecar_path(cassette: Path) -> Path:
    return cassette.with_name(cassette.stem + SUFFIX)


def _dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Message:
    from_client: bool
    ms: float
    data: str | bytes  # str: a text message; bytes: a binary one

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)


@dataclass
class Close:
    ms: float
    code: int | None
    reason: str
    by_client: bool


@dataclass
class Session:
    id: int
    url: str
    at: str = ""
    handshake_ms: float = 0.0
    subprotocols: list[str] = field(default_factory=list)
    protocol: str | None = None
    request_headers: dict[str, list[str]] = field(default_factory=dict)
    status: int = 101
    response_headers: dict[str, list[str]] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    close: Close | None = None
    body: str | bytes = ""  # a refused handshake's response body

    @property
    def refused(self) -> bool:
        return self.status != 101

    def open_line(self) -> str:
        data = {"type": "open", "session": self.id, "format": FORMAT, "url": self.url,
                "at": self.at, "handshake_ms": round(self.handshake_ms, 3),
                "subprotocols": self.subprotocols, "protocol": self.protocol,
                "request_headers": self.request_headers, "status": self.status,
                "response_headers": self.response_headers}
        if self.refused and self.body:
            if isinstance(self.body, str):
                data["body"] = self.body
            else:
                data["body_binary"] = base64.b64encode(self.body).decode("ascii")
        return _dumps(data)

    @property
    def client_messages(self) -> list[Message]:
        return [m for m in self.messages if m.from_client]


def message_line(session: int, message: Message) -> str:
    data = {"type": "message", "session": session, "from": "client" if message.from_client else "server",
            "ms": round(message.ms, 3)}
    if message.is_text:
        data["text"] = message.data
    else:
        data["binary"] = base64.b64encode(message.data).decode("ascii")
    return _dumps(data)


def close_line(session: int, close: Close) -> str:
    return _dumps({"type": "close", "session": session, "ms": round(close.ms, 3), "code": close.code,
                   "reason": close.reason, "by": "client" if close.by_client else "server"})


def _ms(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    value = float(value)
    if not (math.isfinite(value) and 0 <= value <= MAX_MS):
        raise ValueError(value)
    return value


def _text(value) -> str:
    """A string that can be sent: a lone surrogate (`"\\ud800"` in JSON) cannot be."""
    if not isinstance(value, str):
        raise ValueError(value)
    value.encode("utf-8")  # UnicodeEncodeError is a ValueError
    return value


def sendable_close_code(code: int) -> bool:
    """A close code an endpoint may send (RFC 6455 7.4: not 1004-1006, 1015, 1016-2999)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _headers(value) -> dict[str, list[str]]:
    """Header names that are HTTP tokens, values with no line break nor control character: what
    the player sends in its handshake cannot be split into other headers."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and _TOKEN.fullmatch(k) and isinstance(v, list)
            and all(isinstance(i, str) and _FIELD_VALUE.fullmatch(i) for i in v)
            for k, v in value.items()):
        raise ValueError(value)
    for values in value.values():
        for item in values:
            _text(item)
    return value


def _lines(data: bytes) -> Iterator[str]:
    """The lines of a sidecar's bytes, one at a time (a large file is not held twice), each
    decoded on its own: a line that is not UTF-8 (recording never writes one) is skipped alone."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        try:
            yield data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            pass
        start = end + 1


def parse(text: str | Iterable[str]) -> list[Session]:
    """The sessions of a sidecar's text (or its lines), in the order they opened."""
    sessions: dict[int, Session] = {}
    for line in text.splitlines() if isinstance(text, str) else text:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                continue
            kind, number = data.get("type"), _id(data.get("session"))
            if kind == "open":
                if number in sessions or not isinstance(data["url"], str):
                    continue
                subprotocols = data.get("subprotocols") or []
                protocol = data.get("protocol")
                if (not isinstance(subprotocols, list) or not all(isinstance(s, str) for s in subprotocols)
                        or not (protocol is None or (isinstance(protocol, str) and _TOKEN.fullmatch(protocol)))):
                    continue
                status = data.get("status", 101)
                if isinstance(status, bool) or not isinstance(status, int) or not (
                        status == 101 or 200 <= status <= 599):
                    continue
                body: str | bytes = ""
                if isinstance(data.get("body"), str):
                    body = _text(data["body"])
                elif isinstance(data.get("body_binary"), str):
                    body = base64.b64decode(data["body_binary"], validate=True)
                sessions[number] = Session(
                    number, _text(data["url"]), _text(str(data.get("at", ""))), _ms(data.get("handshake_ms", 0)),
                    subprotocols, protocol, _headers(data.get("request_headers", {})),
                    status, _headers(data.get("response_headers", {})), body=body)
                continue
            session = sessions.get(number)
            if session is None or session.close is not None:
                continue
            if kind == "message":
                if data["from"] not in ("client", "server"):
                    continue
                if isinstance(data.get("text"), str):
                    payload: str | bytes = _text(data["text"])
                elif isinstance(data.get("binary"), str):
                    payload = base64.b64decode(data["binary"], validate=True)
                else:
                    continue
                session.messages.append(Message(data["from"] == "client", _ms(data["ms"]), payload))
            elif kind == "close":
                code = data.get("code")
                if code is not None and (isinstance(code, bool) or not isinstance(code, int)
                                         or not sendable_close_code(code)):
                    continue
                reason = _text(data.get("reason") or "")
                if data.get("by") not in ("client", "server"):
                    continue
                session.close = Close(_ms(data["ms"]), code, reason, data["by"] == "client")
        except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
            continue
    return sorted(sessions.values(), key=lambda s: s.id)


def read(path: Path) -> list[Session]:
    """The sessions recorded in the sidecar at `path` ([] if there is none); CassetteError if
    something other than a regular file is there (a FIFO is refused, never waited on), or a
    symlink (recording never writes through one, so what it leads to is no recording)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return []
    try:
        descriptor = open_regular(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), advice=ADVICE)
    except FileNotFoundError:
        return []
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CassetteError(path, "is a symlink; vcr-proxy reads a cassette's realtime sessions "
                                "only from the file beside it: " + ADVICE.split(": ", 1)[1]) from None
        raise
    with os.fdopen(descriptor, "rb") as stream:
        data = stream.read()
    return parse(_lines(data))
