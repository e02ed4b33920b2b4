"""Response bodies into JSON events: Server-Sent Events, AWS event-stream frames (Bedrock), or
one JSON document."""

from __future__ import annotations

import base64
import json
import re
import struct
from typing import Any

from ..cassette import Interaction
from .model import JSON_ERRORS, body_text, error_message, preview

# The same boundaries timing.event_ends counts, so that event i here is events_ms[i] there.
EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")


_LINE = re.compile(r"\r\n|\r|\n")


def sse_events(body: str, problems: list[str]) -> list[tuple[int, str, Any]]:
    """(block index, event name, JSON data) for each data event of a Server-Sent Events body."""
    events = []
    for index, block in enumerate(EVENT_END.split(body)):
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
            problems.append(f"event {index}: not JSON: {preview(payload)}")
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
            problems.append(f"event {index}: not JSON: {preview(payload.decode('utf-8', 'replace'))}")
            index += 1
            continue
        if headers.get(":message-type") == "exception":
            value = {"type": "error", "error": {"type": headers.get(":exception-type", ""),
                                                "message": error_message(value) or str(value)}}
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
                                                 or body_text(body) is None):
        return aws_events(bytes(body), problems), True
    text = body_text(body)
    if text is None or not text.strip():
        return [], False
    stripped = text.lstrip()
    # An event stream starts with a field name, never with JSON: a JSON body labelled
    # text/event-stream is read as the JSON it is.
    if not re.match(r"(data|event|id|retry)?:", stripped):
        try:
            value = json.loads(stripped)
        except RecursionError:
            problems.append(f"response body is JSON nested too deeply to read: {preview(text)}")
            return [], False
        except ValueError:
            pass
        else:
            if isinstance(value, list):  # streamGenerateContent without alt=sse: one JSON array
                return [(None, "", v) for v in value], True
            if not isinstance(value, dict):
                problems.append(f"response body is JSON {preview(json.dumps(value), 40)}, not an object")
                return [], False
            return [(None, "", value)], False
    if "event-stream" in content_type or re.search(r"^data:", text, re.M):
        return sse_events(text, problems), True
    if interaction.response.code >= 400:
        return [], False  # an error page (a proxy's HTML 502): read_exchange shows it as the error
    problems.append(f"response body is neither JSON nor an event stream: {preview(text)}")
    return [], False


def json_body(body: str | bytes) -> Any:
    text = body_text(body)
    if text is None:
        return None
    try:
        return json.loads(text)
    except JSON_ERRORS:
        return None

