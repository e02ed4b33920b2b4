"""One reading of an LLM exchange: what was asked and what the model answered.

From an interaction's request and response (streamed or not) it finds the API family and
assembles the conversation: the request's model, messages and offered tools; the response's
text, reasoning, tool calls, finish reason and usage, put together from the stream's events the
way the provider's SDK would. Plain Python on purpose, so that `show`, `report` and `diff` can
read cassettes without the proxy.

A shape it does not know gives `family == ""` (callers fall back to the raw bodies); an event
that does not parse is listed in `problems`, never raised.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .cassette import Cassette, Interaction
from .inspection import Usage, is_streamed
from .timing import Timing, body_hash, read_sidecar, sidecar_path

OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
FAMILY_NAMES = {OPENAI_CHAT: "OpenAI chat completions", OPENAI_RESPONSES: "OpenAI Responses",
                ANTHROPIC: "Anthropic messages", GEMINI: "Gemini generateContent"}

# The same boundaries timing.event_ends counts, so that event i here is events_ms[i] there.
_EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(r"\r\n|\r|\n")
# What json.loads raises on a bad document: 100,000 nested brackets give a RecursionError.
JSON_ERRORS = (ValueError, RecursionError)


def _list(value: Any) -> list:
    """A list field as a list; any other JSON type (a number, a string, an object) as empty."""
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _hashable(key: Any) -> Any:
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


# ---------------------------------------------------------------------------------------------
# Bodies into JSON events


def _text(body: str | bytes) -> str | None:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _preview(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def sse_events(body: str, problems: list[str]) -> list[tuple[int, str, Any]]:
    """(block index, event name, JSON data) for each data event of a Server-Sent Events body."""
    events = []
    for index, block in enumerate(_EVENT_END.split(body)):
        name, data = "", []
        for line in _LINE.split(block):
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                name = line[6:].strip()
        if not data:
            continue
        payload = "\n".join(data)
        if payload.strip() == "[DONE]":
            continue
        try:
            events.append((index, name, json.loads(payload)))
        except JSON_ERRORS:
            problems.append(f"event {index}: not JSON: {_preview(payload)}")
    return events


def aws_events(body: bytes, problems: list[str]) -> list[tuple[int, str, Any]]:
    """The JSON payloads of an AWS event stream (Bedrock); a `{"bytes": base64}` chunk is opened
    to the provider's event it carries."""
    events, offset, index = [], 0, 0
    while offset + 12 <= len(body):
        total, headers_length = struct.unpack_from(">II", body, offset)
        if total < 16 or offset + total > len(body):
            problems.append(f"event {index}: truncated event-stream frame at byte {offset}")
            break
        headers = _aws_headers(body[offset + 12:offset + 12 + headers_length])
        payload = body[offset + 12 + headers_length:offset + total - 4]
        offset += total
        try:
            value = json.loads(payload)
            if isinstance(value, dict) and isinstance(value.get("bytes"), str):
                value = json.loads(base64.b64decode(value["bytes"]))
        except JSON_ERRORS:
            problems.append(f"event {index}: not JSON: {_preview(payload.decode('utf-8', 'replace'))}")
            index += 1
            continue
        if headers.get(":message-type") == "exception":
            value = {"type": "error", "error": {"type": headers.get(":exception-type", ""),
                                                "message": _error_message(value) or str(value)}}
        events.append((index, headers.get(":event-type", ""), value))
        index += 1
    if offset < len(body):
        problems.append(f"{len(body) - offset} bytes after the last event-stream frame")
    return events


def _aws_headers(data: bytes) -> dict[str, str]:
    """The string headers of one frame; a malformed header ends the reading (what was read stays)."""
    try:
        return _aws_header_values(data)
    except (IndexError, struct.error):
        return {}


def _aws_header_values(data: bytes) -> dict[str, str]:
    headers, at = {}, 0
    while at < len(data):
        length = data[at]
        name = data[at + 1:at + 1 + length].decode("utf-8", "replace")
        at += 1 + length
        kind = data[at]
        at += 1
        if kind == 7:  # string; the only type Bedrock sends in these headers
            size = struct.unpack_from(">H", data, at)[0]
            headers[name] = data[at + 2:at + 2 + size].decode("utf-8", "replace")
            at += 2 + size
        else:
            break
    return headers


def response_events(interaction: Interaction, problems: list[str]) -> tuple[list, bool]:
    """The response's JSON documents as (index, name, value) events, and whether it streamed."""
    body = interaction.response.body
    content_type = " ".join(interaction.response.headers.get("Content-Type", [])).lower()
    if isinstance(body, (bytes, bytearray)) and ("amazon.eventstream" in content_type
                                                 or _text(body) is None):
        return aws_events(bytes(body), problems), True
    text = _text(body)
    if text is None or not text.strip():
        return [], False
    stripped = text.lstrip()
    # An event stream starts with a field name, never with JSON: a JSON body labelled
    # text/event-stream is read as the JSON it is.
    if not re.match(r"(data|event|id|retry)?:", stripped):
        try:
            value = json.loads(stripped)
        except RecursionError:
            problems.append(f"response body is JSON nested too deeply to read: {_preview(text)}")
            return [], False
        except ValueError:
            pass
        else:
            if isinstance(value, list):  # streamGenerateContent without alt=sse: one JSON array
                return [(None, "", v) for v in value], True
            if not isinstance(value, dict):
                problems.append(f"response body is JSON {_preview(json.dumps(value), 40)}, not an object")
                return [], False
            return [(None, "", value)], False
    if "event-stream" in content_type or re.search(r"^data:", text, re.M):
        return sse_events(text, problems), True
    if interaction.response.code >= 400:
        return [], False  # an error page (a proxy's HTML 502): read_exchange shows it as the error
    problems.append(f"response body is neither JSON nor an event stream: {_preview(text)}")
    return [], False


def _json_body(body: str | bytes) -> Any:
    text = _text(body)
    if text is None:
        return None
    try:
        return json.loads(text)
    except JSON_ERRORS:
        return None


def _error_message(value: Any) -> str:
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("type") or error.get("code") or "")
            raw = _dict(error.get("metadata")).get("raw")  # OpenRouter: the provider's own error
            if isinstance(raw, str) and raw and raw not in message:
                message = f"{message}: {raw}" if message else raw
            return message
        if isinstance(error, str):
            return error
        if isinstance(value.get("message"), str):
            return value["message"]
    return ""


# ---------------------------------------------------------------------------------------------
# Which API


def family_of(interaction: Interaction, request: Any, events: list) -> str:
    path = unquote(urlsplit(interaction.request.url).path)
    if path.endswith("/chat/completions"):
        return OPENAI_CHAT
    if path.endswith("/responses"):
        return OPENAI_RESPONSES
    if (path.endswith("/messages") or "/invoke" in path and "anthropic" in path
            or re.search(r":(stream)?rawPredict$", path) and "anthropic" in path):
        return ANTHROPIC
    if re.search(r":(stream)?[Gg]enerateContent$", path):
        return GEMINI
    if isinstance(request, dict) and "anthropic_version" in request:
        return ANTHROPIC
    first = events[0][2] if events else None
    if isinstance(first, dict):
        if "choices" in first and isinstance(request, dict) and "messages" in request:
            return OPENAI_CHAT
        if "candidates" in first:
            return GEMINI
        if first.get("type") in ("message", "message_start"):
            return ANTHROPIC
    return ""


def _model_from_path(url: str) -> str:
    path = unquote(urlsplit(url).path)
    if "/models/" in path:  # Gemini, Vertex: models/NAME:generateContent
        return path.split("/models/", 1)[1].split(":", 1)[0].split("/", 1)[0]
    if "/model/" in path:  # Bedrock: model/ID/invoke, the ID may hold a colon
        return path.split("/model/", 1)[1].split("/", 1)[0]
    return ""


# ---------------------------------------------------------------------------------------------
# Requests


def _parts_text(content: Any, text_keys=("text",)) -> str:
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


def _tool_call(name: Any, id: Any, raw: Any) -> ToolCall:
    arguments, text = _arguments(raw)
    return ToolCall(str(name or ""), str(id or ""), arguments, text)


def _chat_request(request: dict, exchange: Exchange) -> None:
    for item in _list(request.get("messages")):
        if not isinstance(item, dict):
            continue
        message = Message(str(item.get("role", "")), _parts_text(item.get("content")),
                          tool_call_id=str(item.get("tool_call_id") or ""))
        for call in _list(item.get("tool_calls")):
            if isinstance(call, dict):
                function = _dict(call.get("function"))
                message.tool_calls.append(_tool_call(function.get("name"), call.get("id"),
                                                     function.get("arguments")))
        exchange.messages.append(message)
    for tool in _list(request.get("tools")):
        if isinstance(tool, dict):
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            exchange.tools.append(str(function.get("name") or tool.get("type") or "?"))


def _responses_request(request: dict, exchange: Exchange) -> None:
    if isinstance(request.get("instructions"), str):
        exchange.messages.append(Message("system", request["instructions"]))
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in _list(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            exchange.messages.append(Message("assistant", tool_calls=[_tool_call(
                item.get("name"), item.get("call_id"), item.get("arguments"))]))
        elif kind == "function_call_output":
            exchange.messages.append(Message("tool", _parts_text(item.get("output")),
                                             tool_call_id=str(item.get("call_id") or "")))
        elif kind == "message" or "role" in item:
            exchange.messages.append(Message(str(item.get("role", "")),
                                             _parts_text(item.get("content"))))
        elif kind != "reasoning":
            exchange.messages.append(Message("input", f"[{kind}]"))
    for tool in _list(request.get("tools")):
        if isinstance(tool, dict):
            exchange.tools.append(str(tool.get("name") or tool.get("type") or "?"))


def _anthropic_request(request: dict, exchange: Exchange) -> None:
    if request.get("system"):
        exchange.messages.append(Message("system", _parts_text(request["system"])))
    for item in _list(request.get("messages")):
        if not isinstance(item, dict):
            continue
        role, content = str(item.get("role", "")), item.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        message = Message(role, _parts_text([b for b in blocks if not isinstance(b, dict)
                                             or b.get("type") not in ("thinking", "redacted_thinking")]))
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                message.tool_calls.append(_tool_call(block.get("name"), block.get("id"),
                                                     block.get("input")))
            elif block.get("type") == "tool_result":
                exchange.messages.append(Message("tool", _parts_text(block.get("content")),
                                                 tool_call_id=str(block.get("tool_use_id") or "")))
        if message.text or message.tool_calls:
            exchange.messages.append(message)
    for tool in _list(request.get("tools")):
        if isinstance(tool, dict):
            exchange.tools.append(str(tool.get("name") or tool.get("type") or "?"))


def _gemini_request(request: dict, exchange: Exchange) -> None:
    system = request.get("systemInstruction") or request.get("system_instruction")
    if isinstance(system, dict):
        exchange.messages.append(Message("system", _parts_text(system.get("parts"))))
    for item in _list(request.get("contents")):
        if not isinstance(item, dict):
            continue
        role = "assistant" if item.get("role") == "model" else str(item.get("role") or "user")
        message = Message(role)
        texts = []
        for part in _list(item.get("parts")):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                message.tool_calls.append(_tool_call(call.get("name"), call.get("id"), call.get("args")))
            elif isinstance(part.get("functionResponse"), dict):
                answer = part["functionResponse"]
                exchange.messages.append(Message("tool", json.dumps(answer.get("response"),
                                                                    ensure_ascii=False),
                                                 tool_call_id=str(answer.get("id") or answer.get("name") or "")))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
            elif not part.get("thought"):
                texts.append(f"[{next((k for k in part if k != 'thoughtSignature'), 'part')}]")
        message.text = "\n".join(texts)
        if message.text or message.tool_calls:
            exchange.messages.append(message)
    for tool in _list(request.get("tools")):
        if isinstance(tool, dict):
            declarations = tool.get("functionDeclarations") or tool.get("function_declarations")
            if isinstance(declarations, list):
                exchange.tools.extend(str(d.get("name", "?")) for d in declarations if isinstance(d, dict))
            else:
                exchange.tools.extend(str(k) for k in tool)


# ---------------------------------------------------------------------------------------------
# Responses


class _Output:
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
        key = self.current.get(_hashable(key), _hashable(key))
        return self.calls.setdefault(key, {"name": "", "id": "", "args": ""})

    def call(self, index, key, name=None, id=None, args=None) -> None:
        key = _hashable(key)
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
        self.exchange.tool_calls.extend(_tool_call(c["name"], c["id"], c["args"])
                                        for c in self.calls.values())


def _number(block: dict, *keys: str) -> int:
    for key in keys:
        value = block
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return max(0, int(value))
    return 0


def _chat_usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    return Usage(_number(block, "prompt_tokens", "input_tokens"),
                 _number(block, "completion_tokens", "output_tokens"),
                 _number(block, "prompt_tokens_details.cached_tokens", "prompt_cache_hit_tokens"),
                 _number(block, "completion_tokens_details.reasoning_tokens"))


def _chat_response(events: list, exchange: Exchange) -> None:
    output = _Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        exchange.model = exchange.model or str(value.get("model") or "")
        found = _chat_usage(value.get("usage"))
        if found:
            exchange.usage = found
        if value.get("error"):  # OpenRouter: an error in the stream of a 200
            exchange.error = _error_message(value) or _preview(json.dumps(value.get("error")), 200)
        for choice in _list(value.get("choices")):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                exchange.finish_reason = str(choice["finish_reason"])
            part = choice.get("delta") if "delta" in choice else choice.get("message")
            if not isinstance(part, dict):
                continue
            output.reasoning(index, part.get("reasoning_content") or part.get("reasoning"))
            output.text(index, part.get("content") if isinstance(part.get("content"), str)
                        else _parts_text(part.get("content")) if part.get("content") else None)
            for number, call in enumerate(_list(part.get("tool_calls"))):
                if isinstance(call, dict):
                    function = _dict(call.get("function"))
                    output.call(index, call.get("index", number), function.get("name"), call.get("id"),
                                function.get("arguments"))
    output.finish()


def _responses_usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    return Usage(_number(block, "input_tokens"), _number(block, "output_tokens"),
                 _number(block, "input_tokens_details.cached_tokens"),
                 _number(block, "output_tokens_details.reasoning_tokens"))


def _responses_final(response: dict, exchange: Exchange, output: _Output, index, texts: bool) -> None:
    """A whole response object: the non-streamed body, or a stream's last event."""
    exchange.model = str(response.get("model") or exchange.model)
    status = str(response.get("status") or "")
    details = response.get("incomplete_details")
    exchange.finish_reason = (str(details.get("reason")) if isinstance(details, dict)
                              and details.get("reason") else status)
    found = _responses_usage(response.get("usage"))
    if found:
        exchange.usage = found
    if isinstance(response.get("error"), dict):
        exchange.error = _error_message(response)
    if not texts:
        return
    for item in _list(response.get("output")):
        _responses_item(item, output, index)


def _responses_item(item: Any, output: _Output, index) -> None:
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for part in _list(item.get("content")):
            if isinstance(part, dict):
                output.text(index, part.get("text") if part.get("type") == "output_text"
                            else part.get("refusal"))
    elif kind == "reasoning":
        output.reasoning(index, _parts_text(item.get("summary")))
    elif kind == "function_call":
        output.call(index, item.get("id") or item.get("call_id"), item.get("name"),
                    item.get("call_id"), item.get("arguments"))


def _responses_response(events: list, exchange: Exchange) -> None:
    output = _Output(exchange)
    streamed = any(isinstance(v, dict) and str(v.get("type", "")).startswith("response.")
                   for _, _, v in events)
    if not streamed:
        for index, _, value in events:
            if isinstance(value, dict):
                _responses_final(value, exchange, output, index, texts=True)
        output.finish()
        return
    saw_text = set()
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        kind = str(value.get("type", ""))
        if kind == "response.output_text.delta":
            output.text(index, value.get("delta"))
            saw_text.add(_hashable(value.get("item_id")))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            output.reasoning(index, value.get("delta"))
            saw_text.add(_hashable(value.get("item_id")))
        elif kind == "response.output_item.added" and isinstance(value.get("item"), dict):
            item = value["item"]
            if item.get("type") == "function_call":
                output.call(index, item.get("id"), item.get("name"), item.get("call_id"))
        elif kind == "response.function_call_arguments.delta":
            output.call(index, value.get("item_id"), args=value.get("delta"))
        elif kind == "response.output_item.done" and isinstance(value.get("item"), dict):
            item = value["item"]
            if item.get("type") == "function_call":
                entry = output.entry(item.get("id"))
                entry.update(name=item.get("name") or entry["name"],
                             id=item.get("call_id") or entry["id"],
                             args=item.get("arguments") if item.get("arguments") is not None
                             else entry["args"])
            elif _hashable(item.get("id")) not in saw_text:  # a whole item with no deltas before it
                _responses_item(item, output, index)
        elif kind in ("response.completed", "response.incomplete", "response.failed",
                      "response.created") and isinstance(value.get("response"), dict):
            _responses_final(value["response"], exchange, output, index, texts=False)
        elif kind == "error":
            exchange.error = str(value.get("message") or _error_message(value))
    output.finish()


def _anthropic_usage(block: Any, previous: Usage) -> Usage:
    if not isinstance(block, dict):
        return previous
    # message_delta repeats the counts cumulatively; a missing one keeps what message_start said.
    return Usage(_number(block, "input_tokens") or previous.input,
                 _number(block, "output_tokens") or previous.output,
                 _number(block, "cache_read_input_tokens") or previous.cached,
                 previous.reasoning)


def _anthropic_block(block: Any, output: _Output, index, key) -> None:
    if not isinstance(block, dict):
        return
    kind = block.get("type")
    if kind == "text":
        output.text(index, block.get("text"))
    elif kind == "thinking":
        output.reasoning(index, block.get("thinking"))
    elif kind in ("tool_use", "server_tool_use"):
        output.call(index, key, block.get("name"), block.get("id"),
                    block.get("input") if block.get("input") not in ({}, None) else None)


def _anthropic_response(events: list, exchange: Exchange) -> None:
    output = _Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        if kind == "message":  # the whole non-streamed answer
            exchange.model = str(value.get("model") or "")
            for number, block in enumerate(_list(value.get("content"))):
                _anthropic_block(block, output, index, number)
            exchange.finish_reason = str(value.get("stop_reason") or "")
            exchange.usage = _anthropic_usage(value.get("usage"), exchange.usage)
        elif kind == "message_start" and isinstance(value.get("message"), dict):
            exchange.model = str(value["message"].get("model") or "")
            exchange.usage = _anthropic_usage(value["message"].get("usage"), exchange.usage)
        elif kind == "content_block_start":
            _anthropic_block(value.get("content_block"), output, index, value.get("index"))
        elif kind == "content_block_delta" and isinstance(value.get("delta"), dict):
            delta = value["delta"]
            if delta.get("type") == "text_delta":
                output.text(index, delta.get("text"))
            elif delta.get("type") == "thinking_delta":
                output.reasoning(index, delta.get("thinking"))
            elif delta.get("type") == "input_json_delta":
                output.call(index, value.get("index"), args=delta.get("partial_json"))
        elif kind == "message_delta":
            delta = value.get("delta") if isinstance(value.get("delta"), dict) else {}
            exchange.finish_reason = str(delta.get("stop_reason") or exchange.finish_reason)
            exchange.usage = _anthropic_usage(value.get("usage"), exchange.usage)
        elif kind == "error":
            exchange.error = _error_message(value)
    output.finish()


def _gemini_response(events: list, exchange: Exchange) -> None:
    output = _Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        exchange.model = str(value.get("modelVersion") or exchange.model)
        block = value.get("usageMetadata")
        if isinstance(block, dict) and ("promptTokenCount" in block or "candidatesTokenCount" in block
                                        or "totalTokenCount" in block):
            output_tokens = _number(block, "candidatesTokenCount")
            thoughts = _number(block, "thoughtsTokenCount")
            input_tokens = _number(block, "promptTokenCount")
            if "promptTokenCount" not in block:  # some models leave it out: the rest of the total
                input_tokens = max(0, _number(block, "totalTokenCount") - output_tokens - thoughts)
            exchange.usage = Usage(input_tokens, output_tokens, _number(block, "cachedContentTokenCount"),
                                   thoughts)
        for candidate in _list(value.get("candidates")):
            if not isinstance(candidate, dict) or candidate.get("index", 0) != 0:
                continue
            if candidate.get("finishReason"):
                exchange.finish_reason = str(candidate["finishReason"])
            content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
            for part in _list(content.get("parts")):
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("functionCall"), dict):
                    call = part["functionCall"]
                    # Each part is a whole call: a stream never splits one across events.
                    output.call(index, len(output.calls), call.get("name"), call.get("id"),
                                call.get("args") if call.get("args") is not None else {})
                elif part.get("thought"):
                    output.reasoning(index, part.get("text"))
                else:
                    output.text(index, part.get("text"))
        if "error" in value:
            exchange.error = _error_message(value)
    output.finish()


_REQUESTS = {OPENAI_CHAT: _chat_request, OPENAI_RESPONSES: _responses_request,
             ANTHROPIC: _anthropic_request, GEMINI: _gemini_request}
_RESPONSES = {OPENAI_CHAT: _chat_response, OPENAI_RESPONSES: _responses_response,
              ANTHROPIC: _anthropic_response, GEMINI: _gemini_response}


# ---------------------------------------------------------------------------------------------
# Putting it together


def read_exchange(interaction: Interaction, timing: Timing | None = None) -> Exchange:
    """The conversation in one interaction; `timing` is its sidecar line, if it matches. A body
    the reader trips on (a bug, a shape nobody expected) gives an unknown family, so callers
    show the raw view, and the error as a problem."""
    try:
        return _read_exchange(interaction, timing)
    except Exception as error:  # RecursionError and MemoryError too: listed, never raised
        return Exchange(problems=[f"cannot read this interaction ({type(error).__name__}: "
                                  f"{_preview(str(error), 120)})"])


def _read_exchange(interaction: Interaction, timing: Timing | None = None) -> Exchange:
    exchange = Exchange(streamed=is_streamed(interaction))
    events, streamed = response_events(interaction, exchange.problems)
    exchange.streamed = exchange.streamed or streamed
    request = _json_body(interaction.request.body)
    exchange.family = family_of(interaction, request, events)
    if not exchange.family:
        return exchange
    if isinstance(request, dict):
        _REQUESTS[exchange.family](request, exchange)
        if isinstance(request.get("model"), str):
            exchange.model = request["model"]
    requested = exchange.model or _model_from_path(interaction.request.url)
    exchange.events = _event_count(interaction, events) if exchange.streamed else 0
    _RESPONSES[exchange.family](events, exchange)
    exchange.model = requested or exchange.model  # what was asked for; the answer may name a version
    if not exchange.error and interaction.response.code >= 400:
        body = _text(interaction.response.body)
        exchange.error = ((_error_message(events[0][2]) if events else "")
                          or _preview(body if body is not None else "(binary body)", 200)
                          or interaction.response.status)
    if timing is not None:
        exchange.timing = _timings(timing, exchange, _is_aws(interaction))
    return exchange


def _is_aws(interaction: Interaction) -> bool:
    body = interaction.response.body
    content_type = " ".join(interaction.response.headers.get("Content-Type", [])).lower()
    return isinstance(body, (bytes, bytearray)) and ("amazon.eventstream" in content_type
                                                     or _text(body) is None)


def _event_count(interaction: Interaction, events: list) -> int:
    """The stream's events as the sidecar times them: each block ended by a blank line
    ([DONE] and comments included); AWS event-stream frames as read."""
    text = _text(interaction.response.body)
    if _is_aws(interaction) or text is None or not re.match(r"(data|event|id|retry)?:", text.lstrip()):
        return len(events)
    return sum(1 for block in _EVENT_END.split(text) if block.strip())


def _timings(timing: Timing, exchange: Exchange, aws: bool = False) -> Timings:
    if aws and not timing.events_ms:
        # Recorded before frames were timed (recording timed events at blank lines only): an
        # AWS event stream (Bedrock) then has its headers and end times, and no first token.
        return Timings(timing.headers_ms, timing.end_ms, 0, [])
    found = Timings(timing.headers_ms, timing.end_ms, len(timing.events_ms), list(timing.events_ms))
    if not exchange.streamed:
        found.first_token_ms = timing.end_ms  # the whole answer arrives with the body
    elif exchange.first_event is not None and exchange.first_event < len(timing.events_ms):
        found.first_token_ms = timing.events_ms[exchange.first_event]
    start = found.first_token_ms if found.first_token_ms is not None else timing.headers_ms
    seconds = (timing.end_ms - start) / 1e3
    tokens = exchange.usage.output
    if tokens and seconds > 0 and exchange.streamed:
        found.tokens_per_second = tokens / seconds
    return found


def cassette_timings(path: Path, cassette: Cassette) -> dict[int, Timing]:
    """The sidecar's lines that still match their interactions' bodies."""
    sidecar = sidecar_path(Path(path))
    if not sidecar.exists():
        return {}
    timings = read_sidecar(sidecar)
    by_id = {i.id: i for i in cassette.interactions}
    return {key: t for key, t in timings.items()
            if key in by_id and t.body_hash == body_hash(by_id[key].response.body)}


def read_cassette(path: Path, cassette: Cassette) -> list[Exchange]:
    timings = cassette_timings(path, cassette)
    return [read_exchange(i, timings.get(i.id)) for i in cassette.interactions]


def new_messages(previous: Exchange | None, exchange: Exchange) -> list[Message]:
    """The messages this request adds to the conversation of the one before it: past their
    common beginning, and past the previous answer echoed back as history."""
    if previous is None or previous.family != exchange.family:
        return exchange.messages
    shared = 0
    for old, new in zip(previous.messages, exchange.messages):
        if old.key() != new.key():
            break
        shared += 1
    if shared == 0:
        return exchange.messages
    rest = exchange.messages[shared:]
    while rest and rest[0].role in ("assistant", "model"):
        rest = rest[1:]
    return rest
