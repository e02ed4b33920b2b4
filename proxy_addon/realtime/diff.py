"""Realtime sessions in `vcr-proxy diff`: two recordings' sessions paired as replay pairs them
(by URL, in order), then compared message by message.

- requests: a session added or missing;
- behaviour: the handshake's status, a client message (as replay matches it: JSON as values,
  `event_id` ignored), the server's sequence of message kinds (runs of one kind of delta count
  as one, so that reworded text is not a new structure), a tool call, binary frames added or
  removed, the close code;
- wording: the assistant's text alone, or binary content of the same frame count (speech).
"""

from __future__ import annotations

from itertools import groupby

from ..drift import BEHAVIOUR, REQUESTS, WORDING, Change
from ..matchers import MatchRules
from .format import Session
from .matcher import difference, kind
from .reading import conversation
from .hooks import _match_url

_SHOWN = 3  # client messages that differ, named one by one; the rest counted


def pair(old: list[Session], new: list[Session]) -> list[tuple[Session | None, Session | None]]:
    pairs: list[tuple[Session | None, Session | None]] = []
    left = list(old)
    for after in new:
        before = next((s for s in left if _match_url(s.url) == _match_url(after.url)), None)
        if before is not None:
            left.remove(before)
        pairs.append((before, after))
    pairs += [(before, None) for before in left]
    return pairs


def _server_kinds(session: Session) -> list[str]:
    return [name for name, _ in groupby(kind(m.data) for m in session.messages if not m.from_client)]


def compare_session(old: Session, new: Session) -> list[Change]:
    tag = f"session {new.id}"
    if old.status != new.status:
        return [Change(BEHAVIOUR, None, f"{tag} handshake status", old.status, new.status)]
    found: list[Change] = []
    rules = MatchRules()
    a, b = old.client_messages, new.client_messages
    differing = []
    for index, (before, after) in enumerate(zip(a, b)):
        problem = difference(before.data, after.data, rules)
        if problem is not None:
            differing.append(Change(BEHAVIOUR, None, f"{tag} client message #{index} ({kind(after.data)})",
                                    detail=problem))
    found += differing[:_SHOWN]
    if len(differing) > _SHOWN:
        found.append(Change(BEHAVIOUR, None, f"{tag} client messages",
                            detail=f"{len(differing) - _SHOWN} more differ"))
    if len(a) != len(b):
        found.append(Change(BEHAVIOUR, None, f"{tag} client messages", len(a), len(b)))
    old_kinds, new_kinds = _server_kinds(old), _server_kinds(new)
    if old_kinds != new_kinds:
        at = next((i for i, (x, y) in enumerate(zip(old_kinds, new_kinds)) if x != y),
                  min(len(old_kinds), len(new_kinds)))
        found.append(Change(BEHAVIOUR, None, f"{tag} server messages",
                            detail=f"the kinds differ from #{at}: "
                                   f"{' '.join(old_kinds[at:at + 3]) or '(none)'} -> "
                                   f"{' '.join(new_kinds[at:at + 3]) or '(none)'}"))
    old_turns, new_turns = conversation(old), conversation(new)
    for label, what in (("tool call", BEHAVIOUR), ("assistant", WORDING)):
        before = [t.text for t in old_turns if t.kind == label]
        after = [t.text for t in new_turns if t.kind == label]
        for index, (x, y) in enumerate(zip(before, after)):
            if x != y:
                found.append(Change(what, None, f"{tag} {label} #{index}", x, y))
        if len(before) != len(after):
            found.append(Change(BEHAVIOUR, None, f"{tag} {label}s", len(before), len(after)))
    for from_client, side in ((True, "client"), (False, "server")):
        before = [m.data for m in old.messages if m.from_client == from_client and not m.is_text]
        after = [m.data for m in new.messages if m.from_client == from_client and not m.is_text]
        if len(before) != len(after):
            found.append(Change(BEHAVIOUR, None, f"{tag} {side} binary frames", len(before), len(after)))
        elif before != after and not from_client:
            changed = sum(x != y for x, y in zip(before, after))
            found.append(Change(WORDING, None, f"{tag} {side} binary frames",
                                detail=f"{changed} of {len(after)} differ in content"))
    old_code = old.close.code if old.close else None
    new_code = new.close.code if new.close else None
    if old_code != new_code:
        found.append(Change(BEHAVIOUR, None, f"{tag} close code", old_code, new_code))
    return found


def compare_sessions(old: list[Session], new: list[Session]) -> list[Change]:
    changes: list[Change] = []
    for before, after in pair(old, new):
        if after is None:
            changes.append(Change(REQUESTS, None, f"session {before.id}", detail=f"missing: {before.url}"))
        elif before is None:
            changes.append(Change(REQUESTS, None, f"session {after.id}", detail=f"added: {after.url}"))
        else:
            changes += compare_session(before, after)
    return changes
