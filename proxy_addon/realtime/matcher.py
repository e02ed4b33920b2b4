"""A client message against the one recorded in its place.

Text messages compare as JSON values when both parse (key order and spacing do not matter),
after the normalisers (`vcr_normalize`, the presets) made their matches equal on both sides,
without the ignored fields: `event_id` (OpenAI's per-event id, new on every run) always, and
`vcr_ignore_fields` (dotted paths). Other text compares as text, binary byte for byte.
"""

from __future__ import annotations

import json

from ..matchers import MatchRules, first_difference

DEFAULT_IGNORED = ("event_id",)


def _drop(value, path: list[str]):
    if not path or not isinstance(value, dict) or path[0] not in value:
        return value
    copy = dict(value)
    if len(path) > 1:
        copy[path[0]] = _drop(copy[path[0]], path[1:])
    else:
        del copy[path[0]]
    return copy


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _preview(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return f"{len(data)} bytes of binary"
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + '..."'


def kind(data: str | bytes) -> str:
    """What a message is, for messages: its JSON `type` (OpenAI), its first key (Gemini), or
    text / N bytes of binary."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return f"{len(data)} bytes of binary"
    value = _json(data) if data[:1] in ("{", "[") else None
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            return value["type"]
        if value:
            return next(iter(value))
    return "text"


def difference(recorded: str | bytes, sent: str | bytes, rules: MatchRules) -> str | None:
    """Where `sent` differs from `recorded`, or None if they match."""
    if isinstance(recorded, bytes) != isinstance(sent, bytes):
        return (f"recorded a {'binary' if isinstance(recorded, bytes) else 'text'} message "
                f"({_preview(recorded)}), sent a {'binary' if isinstance(sent, bytes) else 'text'} "
                f"one ({_preview(sent)})")
    if isinstance(recorded, bytes):
        if recorded == sent:
            return None
        at = next((i for i, (a, b) in enumerate(zip(recorded, sent)) if a != b), min(len(recorded), len(sent)))
        return f"binary: recorded {len(recorded)} bytes, sent {len(sent)} (first difference at byte {at})"
    if recorded == sent:
        return None
    recorded_text, sent_text = rules.normalized(recorded), rules.normalized(sent)
    if recorded_text == sent_text:
        return None
    recorded_json, sent_json = _json(recorded_text), _json(sent_text)
    if recorded_json is not None and sent_json is not None:
        for path in (*DEFAULT_IGNORED, *rules.ignored_fields):
            recorded_json = _drop(recorded_json, path.split("."))
            sent_json = _drop(sent_json, path.split("."))
        try:
            return first_difference(recorded_json, sent_json)
        except RecursionError:
            return None if recorded_json == sent_json else "$: differs (too deeply nested to say where)"
    return f"recorded {_preview(recorded)}, sent {_preview(sent)}"
