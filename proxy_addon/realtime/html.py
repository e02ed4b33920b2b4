"""Realtime sessions in `vcr-proxy report`: each session an article, its conversation
(reading.py) and its timeline as inline SVG, client messages above the axis and server messages
below, the close marked. Sidecar text is untrusted: everything goes through `html.escape`."""

from __future__ import annotations

from html import escape

from ..transcript import milliseconds
from .format import Session
from .reading import conversation, duration_ms, heading

WIDTH, LEFT, RIGHT = 720, 10, 10
STYLE = (".session .who{display:inline-block;min-width:1.2em;color:#555}"
         "svg.session-timeline{display:block;margin:.5em 0;max-width:100%}")


def timeline(session: Session) -> str:
    height, axis = 64, 32
    span = WIDTH - LEFT - RIGHT
    end = max(duration_ms(session), *(m.ms for m in session.messages), 1e-3)

    def x(ms: float) -> str:
        return f"{LEFT + span * min(ms, end) / end:.1f}"

    client = sum(1 for m in session.messages if m.from_client)
    title = (f"{client} client and {len(session.messages) - client} server messages over "
             f"{milliseconds(end)}")
    parts = [f'<svg class="session-timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img"><title>{escape(title)}</title>',
             f'<line x1="{LEFT}" y1="{axis}" x2="{WIDTH - RIGHT}" y2="{axis}" stroke="#999"/>']
    for message in session.messages:
        at = x(message.ms)
        if message.from_client:
            parts.append(f'<line class="client" x1="{at}" y1="{axis - 12}" x2="{at}" y2="{axis}" stroke="#2e7d32"/>')
        else:
            parts.append(f'<line class="server" x1="{at}" y1="{axis}" x2="{at}" y2="{axis + 12}" stroke="#3a6ea5"/>')
    if session.close is not None:
        at = x(session.close.ms)
        parts.append(f'<line class="close" x1="{at}" y1="{axis - 18}" x2="{at}" y2="{axis + 18}" '
                     'stroke="#d0342c" stroke-width="2"/>')
    parts.append(f'<text x="{LEFT}" y="{height - 2}" font-size="11" fill="#444">0 · client above, server below</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{height - 2}" font-size="11" fill="#444" text-anchor="end">'
                 f"{escape(milliseconds(end))}</text></svg>")
    return "".join(parts)


def session_html(session: Session, anchor: str) -> str:
    out = [f'<article class="session" id="{escape(anchor)}">', f"<h3>{escape(heading(session))}</h3>"]
    try:
        for turn in conversation(session):
            role = turn.kind if turn.kind not in ("tokens", "close") else turn.kind
            css = "msg assistant" if turn.kind == "assistant" else "msg error" if turn.kind in ("error", "refused") \
                else "msg call" if turn.kind == "tool call" else "msg"
            out.append(f'<div class="{css}"><span class="role">{escape(role)}</span>'
                       f'<span class="who">{escape(turn.who.strip())}</span>'
                       f'<span class="meta">{escape(milliseconds(turn.ms))}</span>'
                       f"<pre>{escape(turn.text)}</pre></div>")
    except Exception as error:  # one odd session must not cost the page
        out.append(f'<div class="msg error"><span class="role">problem</span><pre>'
                   f"{escape(f'cannot read this session ({type(error).__name__}: {error})')}</pre></div>")
    if not session.refused:
        out.append(timeline(session))
    out.append("</article>")
    return "\n".join(out)
