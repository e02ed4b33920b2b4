"""A recorded session read as a conversation, for `vcr-proxy show`: the user's text and audio
(as durations), the assistant's text deltas joined, function calls with their arguments, usage,
and how the session closed. OpenAI Realtime's events and Gemini Live's messages are read; any
other session is counted (text and binary messages)."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from .format import Session, read, sidecar_path

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


def session_lines(session: Session) -> list[str]:
    if session.refused:
        body = session.body if isinstance(session.body, str) else f"{len(session.body)} bytes of binary"
        return [f"session {session.id} {session.url} (refused: {session.status})",
                f"{INDENT}< {session.status}: {body.strip()}" if body.strip() else f"{INDENT}< {session.status}"]
    client = sum(1 for m in session.messages if m.from_client)
    end = session.close.ms if session.close else (session.messages[-1].ms if session.messages else 0.0)
    lines = [f"session {session.id} {session.url} ({end / 1e3:.3f}s, {len(session.messages)} messages: "
             f"{client} from the client, {len(session.messages) - client} from the server)"]
    body: list[str] = []
    text = ""  # the assistant's text being streamed
    binary = {True: [0, 0], False: [0, 0]}  # from_client -> [frames, bytes]
    audio = {True: 0, False: 0}  # base64 audio bytes in JSON events

    def flush() -> None:
        nonlocal text
        if text:
            body.append(f"{INDENT}< assistant: {text}")
            text = ""

    for message in session.messages:
        if not message.is_text and _json(message.data) is None:
            binary[message.from_client][0] += 1
            binary[message.from_client][1] += len(message.data)
            continue
        event = _json(message.data)
        if event is None:
            continue
        kind = event.get("type")
        if message.from_client:
            if kind == "conversation.item.create" and isinstance(event.get("item"), dict):
                flush()
                item = event["item"]
                if item.get("type") == "message":
                    parts = [c.get("text") or c.get("transcript") or "" for c in item.get("content") or []
                             if isinstance(c, dict)]
                    body.append(f"{INDENT}> {item.get('role', 'user')}: {' '.join(p for p in parts if p)}")
                elif item.get("type") == "function_call_output":
                    body.append(f"{INDENT}> tool [{item.get('call_id')}]: {item.get('output')}")
            elif kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
                audio[True] += _audio_bytes(event["audio"])
            elif isinstance(event.get("clientContent"), dict):
                flush()
                for turn in event["clientContent"].get("turns") or []:
                    parts = [p.get("text", "") for p in (turn or {}).get("parts") or [] if isinstance(p, dict)]
                    body.append(f"{INDENT}> {turn.get('role', 'user')}: {''.join(parts)}")
            elif isinstance(event.get("realtimeInput"), dict):
                media = event["realtimeInput"].get("audio") or {}
                if isinstance(media, dict) and isinstance(media.get("data"), str):
                    audio[True] += _audio_bytes(media["data"])
            continue
        if kind in ("response.output_text.delta", "response.text.delta",
                    "response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            text += str(event.get("delta", ""))
        elif kind in ("response.output_audio.delta", "response.audio.delta"):
            audio[False] += _audio_bytes(str(event.get("delta", "")))
        elif kind == "response.function_call_arguments.done":
            flush()
            body.append(f"{INDENT}< tool call: {event.get('name')}({event.get('arguments')})  "
                        f"[{event.get('call_id')}]")
        elif kind == "response.done":
            flush()
            usage = (event.get("response") or {}).get("usage") or {}
            if usage:
                body.append(f"{INDENT}tokens: {usage.get('input_tokens')} in, {usage.get('output_tokens')} out")
        elif kind == "error":
            flush()
            body.append(f"{INDENT}! error: {(event.get('error') or {}).get('message')}")
        elif isinstance(event.get("serverContent"), dict):
            content = event["serverContent"]
            for part in (content.get("modelTurn") or {}).get("parts") or []:
                if isinstance(part, dict):
                    text += str(part.get("text", ""))
            if content.get("turnComplete"):
                flush()
        elif isinstance(event.get("toolCall"), dict):
            flush()
            for call in event["toolCall"].get("functionCalls") or []:
                body.append(f"{INDENT}< tool call: {call.get('name')}({json.dumps(call.get('args'))})  "
                            f"[{call.get('id')}]")
        elif isinstance(event.get("usageMetadata"), dict):
            flush()
            usage = event["usageMetadata"]
            body.append(f"{INDENT}tokens: {usage.get('promptTokenCount')} in, "
                        f"{usage.get('responseTokenCount')} out")
    flush()
    for from_client, (frames, size) in binary.items():
        if frames:
            body.append(f"{INDENT}{'>' if from_client else '<'} binary: {frames} frames, {size} bytes "
                        f"({size / PCM16_24K:.2f}s as 24 kHz PCM16)")
    for from_client, size in audio.items():
        if size:
            body.append(f"{INDENT}{'>' if from_client else '<'} audio: {size / PCM16_24K:.2f}s "
                        f"({size} bytes as 24 kHz PCM16)")
    if session.close:
        close = session.close
        body.append(f"{INDENT}closed by the {'client' if close.by_client else 'server'}"
                    f"{f' ({close.code} {close.reason})'.rstrip() if close.code else ''} at {close.ms / 1e3:.3f}s")
    else:
        body.append(f"{INDENT}cut off (no close recorded)")
    return lines + body


def realtime_lines(cassette: Path) -> list[str]:
    """Every session recorded beside `cassette`, as lines; [] if there is no sidecar."""
    lines: list[str] = []
    for session in read(sidecar_path(cassette)):
        if lines:
            lines.append("")
        lines.extend(session_lines(session))
    return lines
