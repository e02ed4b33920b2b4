"""`vcr-proxy diff`: what changed between two recordings, the way a reviewer needs it after a
re-record.

Interactions pair up as replay would pair them (method, URL and body): first those with the
same method, URL and body exactly (the body's JSON compared whatever its key order), through a
dictionary, so a cassette of 10,000 interactions pairs in linear time; the rest as matchers.py
matches them; those whose body changed (a conversation's later turns echo the earlier answers)
then pair in order by method and URL. Each change has a class:

- wording: the assistant's text (or reasoning) changed, nothing else;
- behaviour: tool calls added, removed or renamed, an argument's key or value, the finish
  reason, the status code, the request's messages, the response's JSON structure, or, for a
  response of no known API family, any value of its body;
- requests: an interaction (or a whole cassette) added or missing.
"""

from __future__ import annotations

import difflib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .cassette import Cassette, Interaction
from .conversation import Exchange, Message, ToolCall, read_exchange, response_events
from .matchers import IncomingRequest, Matcher, MatchRules, first_difference, normalized_url

SAME, WORDING, BEHAVIOUR, REQUESTS = "same", "wording", "behaviour", "requests"
SEVERITY = (SAME, WORDING, BEHAVIOUR, REQUESTS)
# Values that hold the model's arguments: their keys are compared as arguments, not as structure.
_ARGUMENT_KEYS = {"args", "input", "arguments", "parameters", "partial_json"}


@dataclass
class Change:
    kind: str
    interaction: int | None
    path: str  # "#1 tool weather argument location"
    old: Any = None
    new: Any = None
    detail: str = ""  # the change, when old -> new does not say it
    text_diff: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.detail:
            return f"{self.path}: {self.detail}"
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"

    def to_json(self) -> dict:
        return {"class": self.kind, "interaction": self.interaction, "path": self.path,
                "old": self.old, "new": self.new, "line": self.line()}


@dataclass
class CassetteDrift:
    name: str
    changes: list[Change] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return overall(c.kind for c in self.changes)


def overall(kinds) -> str:
    return max(kinds, key=SEVERITY.index, default=SAME)


def _show(value: Any) -> str:
    if value == "" or value is None:
        return "(none)"
    if isinstance(value, str) and "\n" not in value and len(value) < 60:
        return value  # a status or a finish reason reads better bare
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _quoted(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def pair(old: list[Interaction], new: list[Interaction]) -> list[tuple[Interaction | None, Interaction | None]]:
    """(old, new) pairs: exact request matches first, then same method and URL in order; an
    interaction left alone is paired with None."""
    matcher = Matcher(MatchRules())
    partner: dict[int, Interaction] = {}
    queues: dict[tuple, deque] = {}
    for interaction in old:
        queues.setdefault(_exact_key(interaction), deque()).append(interaction)
    for interaction in new:
        queue = queues.get(_exact_key(interaction))
        if queue:
            partner[id(interaction)] = queue.popleft()
    taken = {id(i) for i in partner.values()}
    index = matcher.index([i for i in old if id(i) not in taken])
    used: set[int] = set()
    for interaction in new:
        if id(interaction) in partner:
            continue
        body = interaction.request.body
        request = IncomingRequest(interaction.request.method, interaction.request.url,
                                  body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body))
        found, _ = matcher.find(index, used, request)
        if found is not None:
            partner[id(interaction)] = found
    paired_old = {id(i) for i in partner.values()}
    for interaction in new:
        if id(interaction) in partner:
            continue
        key = matcher.key(interaction.request.method, interaction.request.url)
        candidates = index.get(key)
        while candidates and id(candidates[0]) in paired_old:
            candidates.pop(0)  # each old interaction pairs once: drop the paired ones as we go
        if candidates:
            partner[id(interaction)] = candidates.pop(0)
            paired_old.add(id(partner[id(interaction)]))
    pairs: list[tuple[Interaction | None, Interaction | None]] = [
        (partner.get(id(i)), i) for i in new]
    missing = [(i, None) for i in old if id(i) not in paired_old]
    return missing + pairs


def _exact_key(interaction: Interaction) -> tuple:
    """Method, normalized URL and the body: its JSON with sorted keys, or its text."""
    request = interaction.request
    body = request.body
    try:
        text = json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = body if isinstance(body, str) else bytes(body)
    return (request.method.upper(), normalized_url(request.url), text)


def structure(interaction: Interaction) -> set[str]:
    """The key paths of the response's JSON documents (every event of a stream), values left out."""
    paths: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                paths.add(child)
                if key not in _ARGUMENT_KEYS:
                    walk(item, child)
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    events, _ = response_events(interaction, [])
    for _, _, value in events:
        walk(value, "")
    return paths


def _argument_changes(prefix: str, old: Any, new: Any, path: str, number: int) -> list[Change]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(old) + [k for k in new if k not in old]:
            child = f"{path}.{key}" if path else str(key)
            if key not in new:
                found.append(Change(BEHAVIOUR, number, f"{prefix} argument {child}",
                                    old[key], None, f"removed (was {_quoted(old[key])})"))
            elif key not in old:
                found.append(Change(BEHAVIOUR, number, f"{prefix} argument {child}",
                                    None, new[key], f"added {_quoted(new[key])}"))
            else:
                found.extend(_argument_changes(prefix, old[key], new[key], child, number))
        return found
    if old != new or type(old) is not type(new):
        label = f"{prefix} argument {path}" if path else f"{prefix} arguments"
        return [Change(BEHAVIOUR, number, label, old, new, f"{_quoted(old)} -> {_quoted(new)}")]
    return []


def _tool_changes(tag: str, old: list[ToolCall], new: list[ToolCall], number: int) -> list[Change]:
    found = []
    for position, (a, b) in enumerate(zip(old, new)):
        if a.name != b.name:
            found.append(Change(BEHAVIOUR, number, f"{tag} tool {position + 1}", a.name, b.name,
                                f"{a.name} -> {b.name} (renamed)"))
            continue
        if a.arguments is None or b.arguments is None:
            if a.raw != b.raw:
                found.append(Change(BEHAVIOUR, number, f"{tag} tool {a.name} arguments", a.raw, b.raw,
                                    f"{_quoted(a.raw)} -> {_quoted(b.raw)}"))
            continue
        found.extend(_argument_changes(f"{tag} tool {a.name}", a.arguments, b.arguments, "", number))
    for call in old[len(new):]:
        found.append(Change(BEHAVIOUR, number, f"{tag} tool {call.name}", call.call(), None,
                            f"removed {call.call()}"))
    for call in new[len(old):]:
        found.append(Change(BEHAVIOUR, number, f"{tag} tool {call.name}", None, call.call(),
                            f"added {call.call()}"))
    return found


def _request_key(message: Message) -> tuple:
    # The assistant's own earlier words, echoed back as history, change with every re-record.
    text = "" if message.role in ("assistant", "model") else message.text
    return (message.role, text, tuple(c.call() for c in message.tool_calls), bool(message.tool_call_id))


def _summary(message: Message) -> str:
    text = message.text if message.role not in ("assistant", "model") else ""
    shown = "; ".join([_quoted(text)] if text else [] + [c.call() for c in message.tool_calls])
    return shown or '""'


def _request_difference(old: Interaction, new: Interaction, a: Exchange, b: Exchange) -> str:
    """How the request's conversation changed, leaving out the assistant's echoed wording."""
    if a.family != b.family or not a.family:
        if old.request.body == new.request.body:
            return ""
        found = first_difference(_body_json(old), _body_json(new)) or "body changed"
        return found.replace(": recorded ", ": ").replace(", sent ", " -> ")
    for position, (x, y) in enumerate(zip(a.messages, b.messages)):
        if _request_key(x) != _request_key(y):
            return f"message {position + 1} ({y.role}): {_summary(x)} -> {_summary(y)}"
    if len(a.messages) != len(b.messages):
        return f"{len(a.messages)} messages -> {len(b.messages)}"
    return ""


def _body_json(interaction: Interaction) -> Any:
    body = interaction.request.body
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return body if isinstance(body, str) else None


def _text_diff(old: str, new: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(
        old.splitlines(), new.splitlines(), "old", "new", lineterm="", n=1)]


def compare_interactions(old: Interaction, new: Interaction) -> list[Change]:
    number = new.id
    tag = f"#{number}"
    if old.response.code != new.response.code:
        return [Change(BEHAVIOUR, number, f"{tag} status", old.response.status or old.response.code,
                       new.response.status or new.response.code)]
    a, b = read_exchange(old), read_exchange(new)
    found: list[Change] = []
    difference = _request_difference(old, new, a, b)
    if difference:
        found.append(Change(BEHAVIOUR, number, f"{tag} request", detail=difference))
    if a.family and b.family:
        found.extend(_answer_changes(tag, a, b, number))
    elif old.response.body != new.response.body:
        # No known API: no assistant text to call wording, so a changed value is behaviour
        # (a model gone from a /models list).
        found.append(Change(BEHAVIOUR, number, f"{tag} response body", detail=_body_difference(old, new)))
    gone, added = structure(old) - structure(new), structure(new) - structure(old)
    if gone or added:
        detail = "; ".join(part for part in (
            f"added {', '.join(sorted(added)[:4])}{' ...' if len(added) > 4 else ''}" if added else "",
            f"removed {', '.join(sorted(gone)[:4])}{' ...' if len(gone) > 4 else ''}" if gone else "") if part)
        found.append(Change(BEHAVIOUR, number, f"{tag} response structure", sorted(gone), sorted(added), detail))
        found = [c for c in found if c.path != f"{tag} response body"]
    return found


def _body_difference(old: Interaction, new: Interaction) -> str:
    """Where two responses' JSON first differs, or that the bodies changed."""
    values = []
    for interaction in (old, new):
        events, _ = response_events(interaction, [])
        values.append([value for _, _, value in events])
    if values[0] and values[1]:
        try:
            found = first_difference(values[0] if len(values[0]) > 1 else values[0][0],
                                     values[1] if len(values[1]) > 1 else values[1][0])
        except RecursionError:
            found = None
        if found:
            return found.replace(": recorded ", ": ").replace(", sent ", " -> ")
    return "changed"


def _answer_changes(tag: str, a: Exchange, b: Exchange, number: int) -> list[Change]:
    found = _tool_changes(tag, a.tool_calls, b.tool_calls, number)
    if a.finish_reason != b.finish_reason:
        found.append(Change(BEHAVIOUR, number, f"{tag} finish reason", a.finish_reason, b.finish_reason))
    if a.error != b.error:
        found.append(Change(BEHAVIOUR, number, f"{tag} error", a.error, b.error))
    if a.text != b.text:
        found.append(Change(WORDING, number, f"{tag} text", a.text, b.text,
                            f"changed ({len(a.text)} -> {len(b.text)} characters)",
                            _text_diff(a.text, b.text)))
    if a.reasoning != b.reasoning:
        found.append(Change(WORDING, number, f"{tag} reasoning", a.reasoning, b.reasoning,
                            f"changed ({len(a.reasoning)} -> {len(b.reasoning)} characters)",
                            _text_diff(a.reasoning, b.reasoning)))
    return found


def compare(name: str, old: Cassette, new: Cassette) -> CassetteDrift:
    drift = CassetteDrift(name)
    for before, after in pair(old.interactions, new.interactions):
        if after is None:
            drift.changes.append(Change(REQUESTS, before.id, f"#{before.id} request",
                                        detail=f"missing: {before.request.method} {before.request.url}"))
        elif before is None:
            drift.changes.append(Change(REQUESTS, after.id, f"#{after.id} request",
                                        detail=f"added: {after.request.method} {after.request.url}"))
        else:
            try:
                drift.changes.extend(compare_interactions(before, after))
            except Exception as error:  # one interaction the reader trips on: a change, not a crash
                if (before.request.body, before.response.body) != (after.request.body, after.response.body):
                    drift.changes.append(Change(BEHAVIOUR, after.id, f"#{after.id} response",
                                                detail=f"changed; cannot compare ({type(error).__name__})"))
    return drift
