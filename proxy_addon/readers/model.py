"""The reading of one exchange, whatever its API: the conversation's parts (messages, tool
calls, usage, timings) and the helpers every family's reader shares."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..inspection import Usage

# What json.loads raises on a bad document: 100,000 nested brackets give a RecursionError.
JSON_ERRORS = (ValueError, RecursionError)


def as_list(value: Any) -> list:
    """A list field as a list; any other JSON type (a number, a string, an object) as empty."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def hashable(key: Any) -> Any:
    """An index or item id usable as a dict key, whatever JSON type the body gave it."""
    return key if isinstance(key, (str, int, float, type(None))) else json.dumps(key, sort_keys=True)


@dataclass
class ToolCall:
    name: str
    id: str = ""
    arguments: Any = None  # the parsed JSON; None with `raw` kept when it is not JSON
    raw: str = ""

    def call(self) -> str:
        """`name(arguments)`, arguments as compact JSON."""
        if self.arguments is None and self.raw:
            return f"{self.name}({self.raw})"
        shown = json.dumps(self.arguments if self.arguments is not None else {}, ensure_ascii=False)
        return f"{self.name}({shown})"


@dataclass
class Message:
    role: str
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""  # on a tool result: the call it answers

    def key(self) -> tuple:
        return (self.role, self.text, tuple(c.call() for c in self.tool_calls), self.tool_call_id)


@dataclass
class Timings:
    """From the NAME.timing.jsonl sidecar; milliseconds from the request's start."""
    headers_ms: float
    end_ms: float
    events: int  # events the sidecar timed
    event_ms: list[float] = field(default_factory=list)
    first_token_ms: float | None = None
    tokens_per_second: float | None = None

    @property
    def stream_ms(self) -> float:
        return max(0.0, self.end_ms - self.headers_ms)


@dataclass
class Exchange:
    family: str = ""  # "" when the shape is unknown
    model: str = ""
    streamed: bool = False
    messages: list[Message] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    error: str = ""  # the API's error message, for an error body
    problems: list[str] = field(default_factory=list)  # malformed events, one line each
    events: int = 0  # events in the response stream
    first_event: int | None = None  # index of the first event that carried output
    timing: Timings | None = None

    def to_json(self) -> dict:
        from dataclasses import asdict

        data = asdict(self)
        data["usage"] = {"input_tokens": self.usage.input, "output_tokens": self.usage.output,
                         "cached_tokens": self.usage.cached, "reasoning_tokens": self.usage.reasoning}
        if self.timing:
            data["timing"].pop("event_ms")
            data["timing"]["stream_ms"] = round(self.timing.stream_ms, 3)
        del data["first_event"]
        return data


def body_text(body: str | bytes) -> str | None:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return None


def preview(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def error_message(value: Any) -> str:
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("type") or error.get("code") or "")
            raw = as_dict(error.get("metadata")).get("raw")  # OpenRouter: the provider's own error
            if isinstance(raw, str) and raw and raw not in message:
                message = f"{message}: {raw}" if message else raw
            return message
        if isinstance(error, str):
            return error
        if isinstance(value.get("message"), str):
            return value["message"]
    return ""


def parts_text(content: Any, text_keys=("text",)) -> str:
    """Text of a content that is a string or a list of typed parts; other parts as [type]."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content, ensure_ascii=False)
    pieces = []
    for part in content:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict):
            for key in text_keys:
                if isinstance(part.get(key), str):
                    pieces.append(part[key])
                    break
            else:
                kind = part.get("type") or next(iter(part), "part")
                if kind not in ("tool_use", "tool_result", "function_call", "function_call_output"):
                    pieces.append(f"[{kind}]")
    return "\n".join(pieces)


def _arguments(raw: Any) -> tuple[Any, str]:
    """(parsed arguments, raw text); a string that is not JSON stays raw."""
    if isinstance(raw, str):
        if not raw.strip():
            return {}, raw
        try:
            return json.loads(raw), raw
        except JSON_ERRORS:
            return None, raw
    return raw, json.dumps(raw, ensure_ascii=False)


def tool_call(name: Any, id: Any, raw: Any) -> ToolCall:
    arguments, text = _arguments(raw)
    return ToolCall(str(name or ""), str(id or ""), arguments, text)


class Output:
    """Assembles the answer, noting the first event that carried any of it."""

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self.calls: dict[Any, dict] = {}  # key -> {"name", "id", "args"}
        self.current: dict[Any, Any] = {}  # an index reused by a later call -> that call's key

    def seen(self, index: int | None) -> None:
        if self.exchange.first_event is None and index is not None:
            self.exchange.first_event = index

    def text(self, index, value: Any) -> None:
        if isinstance(value, str) and value:
            self.exchange.text += value
            self.seen(index)

    def reasoning(self, index, value: Any) -> None:
        if isinstance(value, str) and value:
            self.exchange.reasoning += value
            self.seen(index)

    def entry(self, key) -> dict:
        key = self.current.get(hashable(key), hashable(key))
        return self.calls.setdefault(key, {"name": "", "id": "", "args": ""})

    def call(self, index, key, name=None, id=None, args=None) -> None:
        key = hashable(key)
        entry = self.entry(key)
        if id and entry["id"] and entry["id"] != id:
            # A new call under an index already used (parallel calls all at index 0, or no
            # index at all): the SDKs start a new call on a new id.
            self.current[key] = (key, len(self.calls))
            entry = self.entry(key)
        if name:
            entry["name"] = str(name)
        if id:
            entry["id"] = id
        if isinstance(args, str):
            # Partial JSON appends; after a whole `input` object the deltas replace it.
            entry["args"] = (entry["args"] + args) if isinstance(entry["args"], str) else args
        elif args is not None:
            entry["args"] = args
        self.seen(index)

    def finish(self) -> None:
        self.exchange.tool_calls.extend(tool_call(c["name"], c["id"], c["args"])
                                        for c in self.calls.values())


def number(block: dict, *keys: str) -> int:
    for key in keys:
        value = block
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return max(0, int(value))
    return 0

