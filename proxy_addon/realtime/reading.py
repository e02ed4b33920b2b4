"""A recorded session read as a conversation, for `vcr-proxy show` (text and `--json`),
`report` (html.py) and `diff` (diff.py): the user's text and audio
(as durations), the assistant's text deltas joined, function calls with their arguments, usage,
and how the session closed. OpenAI Realtime's events and Gemini Live's messages are read; any
other session is counted (text and binary messages)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from .format import Session, read, sidecar_path
from .matcher import kind

INDENT = "    "
PCM16_24K = 48_000  # bytes per second of OpenAI Realtime's default audio (PCM16, 24 kHz, mono)


def _json(data: str | bytes):
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _audio_bytes(text: str) -> int:
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return 0


@dataclass
class Turn:
    """One line of a session read as a conversation: at `ms`, `who` (`>` the client, `<` the
    server, ` ` neither) says `text`; `kind` is user, assistant, tool, tool call, tokens,
    audio, binary, error, refused or close."""
    ms: float
    who: str
    kind: str
    text: str

    def line(self) -> str:
        if self.kind in ("tokens", "close"):
            return f"{INDENT}{self.text}"
        if self.kind == "refused":
            return f"{INDENT}< {self.text}"
        label = {"tool call": "tool call", "audio": "audio", "binary": "binary", "error": "error"}.get(self.kind)
        if self.kind == "error":
            return f"{INDENT}! error: {self.text}"
        if self.kind == "tool":
            return f"{INDENT}{self.who} tool {self.text}"
        return f"{INDENT}{self.who} {label or self.kind}: {self.text}"


def conversation(session: Session) -> list[Turn]:
    """The session as a conversation, in time order."""
    if session.refused:
        body = session.body if isinstance(session.body, str) else f"{len(session.body)} bytes of binary"
        return [Turn(session.handshake_ms, "<", "refused", f"{session.status}: {body.strip()}".rstrip(": "))]
    turns: list[Turn] = []
    text, text_ms = "", 0.0  # the assistant's text being streamed, since when
    binary = {True: [0, 0, 0.0], False: [0, 0, 0.0]}  # from_client -> [frames, bytes, first ms]
    audio = {True: [0, 0.0], False: [0, 0.0]}  # base64 audio in JSON events: [bytes, first ms]

    def flush() -> None:
        nonlocal text
        if text:
            turns.append(Turn(text_ms, "<", "assistant", text))
            text = ""

    def stream(piece: str, ms: float) -> None:
        nonlocal text, text_ms
        if not text:
            text_ms = ms
        text += piece

    for message in session.messages:
        event = _json(message.data)
        if not message.is_text and event is None:
            counts = binary[message.from_client]
            if not counts[0]:
                counts[2] = message.ms
            counts[0] += 1
            counts[1] += len(message.data)
            continue
        if event is None:
            continue
        kind, ms = event.get("type"), message.ms
        if message.from_client:
            if kind == "conversation.item.create" and isinstance(event.get("item"), dict):
                flush()
                item = event["item"]
                if item.get("type") == "message":
                    parts = [c.get("text") or c.get("transcript") or "" for c in item.get("content") or []
                             if isinstance(c, dict)]
                    turns.append(Turn(ms, ">", str(item.get("role", "user")), " ".join(p for p in parts if p)))
                elif item.get("type") == "function_call_output":
                    turns.append(Turn(ms, ">", "tool", f"[{item.get('call_id')}]: {item.get('output')}"))
            elif kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
                _add_audio(audio[True], event["audio"], ms)
            elif isinstance(_gemini(event, "clientContent"), dict):
                flush()
                for turn in _gemini(event, "clientContent").get("turns") or []:
                    if isinstance(turn, dict):
                        parts = [p.get("text", "") for p in turn.get("parts") or [] if isinstance(p, dict)]
                        turns.append(Turn(ms, ">", str(turn.get("role", "user")), "".join(map(str, parts))))
            elif isinstance(_gemini(event, "toolResponse"), dict):
                flush()
                for answer in _gemini(_gemini(event, "toolResponse"), "functionResponses") or []:
                    if isinstance(answer, dict):
                        turns.append(Turn(ms, ">", "tool", f"[{answer.get('id')}]: "
                                                           f"{json.dumps(answer.get('response'))}"))
            elif isinstance(_gemini(event, "realtimeInput"), dict):
                media = _gemini(event, "realtimeInput").get("audio") or {}
                if isinstance(media, dict) and isinstance(media.get("data"), str):
                    _add_audio(audio[True], media["data"], ms)
            continue
        if kind in ("response.output_text.delta", "response.text.delta",
                    "response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            stream(str(event.get("delta", "")), ms)
        elif kind in ("response.output_audio.delta", "response.audio.delta"):
            _add_audio(audio[False], str(event.get("delta", "")), ms)
        elif kind == "response.function_call_arguments.done":
            flush()
            turns.append(Turn(ms, "<", "tool call", f"{event.get('name')}({event.get('arguments')})  "
                                                    f"[{event.get('call_id')}]"))
        elif kind == "response.done":
            flush()
            usage = (event.get("response") or {}).get("usage") or {}
            if isinstance(usage, dict) and usage:
                turns.append(Turn(ms, " ", "tokens", f"tokens: {usage.get('input_tokens')} in, "
                                                     f"{usage.get('output_tokens')} out"))
        elif kind == "error":
            flush()
            error = event.get("error")
            turns.append(Turn(ms, "<", "error", str(error.get("message") if isinstance(error, dict) else error)))
        elif isinstance(event.get("serverContent"), dict):
            content = event["serverContent"]
            for part in (content.get("modelTurn") or {}).get("parts") or []:
                if isinstance(part, dict):
                    stream(str(part.get("text", "")), ms)
            if content.get("turnComplete"):
                flush()
        elif isinstance(event.get("toolCall"), dict):
            flush()
            for call in event["toolCall"].get("functionCalls") or []:
                if isinstance(call, dict):
                    turns.append(Turn(ms, "<", "tool call", f"{call.get('name')}({json.dumps(call.get('args'))})  "
                                                            f"[{call.get('id')}]"))
        elif isinstance(event.get("usageMetadata"), dict):
            flush()
            usage = event["usageMetadata"]
            turns.append(Turn(ms, " ", "tokens", f"tokens: {usage.get('promptTokenCount')} in, "
                                                 f"{usage.get('responseTokenCount')} out"))
    flush()
    for from_client, (frames, size, ms) in binary.items():
        if frames:
            turns.append(Turn(ms, ">" if from_client else "<", "binary",
                              f"{frames} frames, {size} bytes ({size / PCM16_24K:.2f}s as 24 kHz PCM16)"))
    for from_client, (size, ms) in audio.items():
        if size:
            turns.append(Turn(ms, ">" if from_client else "<", "audio",
                              f"{size / PCM16_24K:.2f}s ({size} bytes as 24 kHz PCM16)"))
    if session.close:
        close = session.close
        turns.append(Turn(close.ms, " ", "close", f"closed by the {'client' if close.by_client else 'server'}"
                          f"{f' ({close.code} {close.reason})'.rstrip() if close.code else ''} at {close.ms / 1e3:.3f}s"))
    else:
        turns.append(Turn(session.messages[-1].ms if session.messages else 0.0, " ", "close",
                          "cut off (no close recorded)"))
    return turns


def _gemini(event: dict, field: str):
    """A Gemini Live field by its proto JSON name, camelCase or snake_case: the API takes both
    and google-genai's Live client sends `client_content` and `tool_response`."""
    if field in event:
        return event[field]
    return event.get("".join(f"_{c.lower()}" if c.isupper() else c for c in field))


def _add_audio(counts: list, data: str, ms: float) -> None:
    size = _audio_bytes(data)
    if size and not counts[0]:
        counts[1] = ms
    counts[0] += size


def duration_ms(session: Session) -> float:
    return session.close.ms if session.close else (session.messages[-1].ms if session.messages else
                                                   session.handshake_ms if session.refused else 0.0)


def heading(session: Session) -> str:
    if session.refused:
        return f"session {session.id} {session.url} (refused: {session.status})"
    client = sum(1 for m in session.messages if m.from_client)
    return (f"session {session.id} {session.url} ({duration_ms(session) / 1e3:.3f}s, {len(session.messages)} "
            f"messages: {client} from the client, {len(session.messages) - client} from the server)")


def session_lines(session: Session) -> list[str]:
    return [heading(session)] + [turn.line() for turn in conversation(session)]


def session_json(session: Session) -> dict:
    """A session for `show --json`: the handshake, the conversation, each message's kind and
    time, and the close."""
    return {
        "session": session.id, "url": session.url, "at": session.at, "status": session.status,
        "handshake_ms": session.handshake_ms, "subprotocols": session.subprotocols,
        "protocol": session.protocol, "duration_ms": duration_ms(session),
        "conversation": [{"ms": t.ms, "from": {">": "client", "<": "server"}.get(t.who), "kind": t.kind,
                          "text": t.text} for t in conversation(session)],
        "messages": [{"ms": m.ms, "from": "client" if m.from_client else "server", "kind": kind(m.data),
                      "bytes": len(m.data.encode("utf-8")) if m.is_text else len(m.data),
                      "binary": not m.is_text} for m in session.messages],
        "close": None if session.close is None else {
            "ms": session.close.ms, "code": session.close.code, "reason": session.close.reason,
            "by": "client" if session.close.by_client else "server"},
    }


def realtime_lines(cassette: Path) -> list[str]:
    """Every session recorded beside `cassette`, as lines; [] if there is no sidecar."""
    lines: list[str] = []
    for session in read(sidecar_path(cassette)):
        if lines:
            lines.append("")
        lines.extend(session_lines(session))
    return lines
