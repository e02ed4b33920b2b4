"""`vcr-proxy report`: cassettes as one self-contained HTML page.

An index of the cassettes, then each interaction's transcript with its timeline drawn as inline
SVG, then the cassette's realtime (WebSocket) sessions as conversations with their timelines
(realtime/html.py). The page loads nothing from anywhere (no scripts, fonts, images or external styles), so it
opens offline and can be attached to a CI run. Cassette text is untrusted: every piece of it
goes through `html.escape`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .cassette import Cassette, Interaction
from .errors import CassetteError
from .realtime.format import Session
from .realtime.format import read as read_sessions
from .realtime.format import sidecar_path
from .realtime.html import STYLE as SESSION_STYLE
from .realtime.html import session_html
from .conversation import FAMILY_NAMES, Exchange, new_messages, read_cassette
from .durations import format_duration
from .inspection import Usage, describe
from .transcript import milliseconds, request_line, timing_text, usage_text

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2.5em;border-bottom:2px solid #ddd;padding-bottom:.2em;word-break:break-all}
h3{font-size:.95em;font-family:ui-monospace,monospace;font-weight:600;word-break:break-all;margin:0 0 .4em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f5f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
article{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.meta,.sum{color:#555;font-size:.9em}.msg{margin:.35em 0}.role{display:inline-block;min-width:6em;font-weight:600;color:#555}
.msg pre,pre.raw{white-space:pre-wrap;word-break:break-word;margin:.1em 0 .1em 1em;font:13px/1.4 ui-monospace,monospace}
.assistant pre{background:#f0f7ff;padding:.4em .6em;border-radius:4px}.call code{background:#fff5e6;padding:.1em .3em}
.error{color:#b00020}details{margin:.3em 0}summary{cursor:pointer;color:#555}
svg.timeline{display:block;margin:.5em 0;max-width:100%}
""" + SESSION_STYLE + "\n"

WIDTH, LEFT, RIGHT = 720, 10, 10


@dataclass
class CassetteReading:
    path: Path
    cassette: Cassette | None  # None: it could not be loaded or read, `problem` says why
    exchanges: list[Exchange]
    models: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    problem: str = ""
    sessions: list[Session] = field(default_factory=list)  # realtime sessions beside it

    @property
    def interactions(self) -> list[Interaction]:
        return self.cassette.interactions if self.cassette else []

    @property
    def slowest_first_token_ms(self) -> float | None:
        times = [e.timing.first_token_ms for e in self.exchanges
                 if e.timing and e.timing.first_token_ms is not None]
        return max(times) if times else None


def unreadable(path: Path, problem: str) -> CassetteReading:
    """A cassette the page lists with its problem instead of its interactions."""
    return CassetteReading(Path(path), None, [], problem=problem)


def with_sessions(reading: CassetteReading) -> CassetteReading:
    """`reading` with the realtime sessions recorded beside its cassette (a sidecar that cannot
    be read is its problem)."""
    try:
        reading.sessions = read_sessions(sidecar_path(reading.path))
    except CassetteError as error:
        reading.problem = "; ".join(filter(None, (reading.problem, str(error))))
    return reading


def sessions_only(path: Path) -> CassetteReading:
    """A cassette that holds no HTTP exchange, only realtime sessions (no NAME.yaml)."""
    return with_sessions(CassetteReading(Path(path), None, []))


def read(path: Path, cassette: Cassette) -> CassetteReading:
    try:
        exchanges = read_cassette(path, cassette)
    except Exception as error:  # one bad cassette must not cost the others their report
        return with_sessions(unreadable(path, f"{path}: cannot read ({type(error).__name__}: {error})"))
    reading = with_sessions(CassetteReading(path, cassette, exchanges))
    for exchange in exchanges:
        if exchange.model and exchange.model not in reading.models:
            reading.models.append(exchange.model)
        reading.usage = reading.usage + exchange.usage
    return reading


def timeline(interaction: Interaction, exchange: Exchange) -> str:
    """The interaction along its time axis: the wait for headers, each event of the stream,
    the first token marked; without a sidecar, the recorded time to the headers alone."""
    timing = exchange.timing
    height, axis = 58, 34
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">']
    span = WIDTH - LEFT - RIGHT
    if timing is None:
        label = (f"time to headers {format_duration(interaction.response.duration)} "
                 "(recorded duration; no per-event timing sidecar)")
        parts.append(f"<title>{escape(label)}</title>")
        parts.append(f'<rect x="{LEFT}" y="{axis - 10}" width="{span}" height="10" fill="#c7d2e0"/>')
        parts.append(f'<text x="{LEFT}" y="{axis + 16}" font-size="11" fill="#444">{escape(label)}</text>')
        parts.append("</svg>")
        return "".join(parts)
    end = max([timing.end_ms, timing.headers_ms, *timing.event_ms, 1e-3])

    def x(ms: float) -> str:
        return f"{LEFT + span * ms / end:.1f}"

    parts.append(f"<title>{escape(timing_text(exchange))}</title>")
    parts.append(f'<line x1="{LEFT}" y1="{axis}" x2="{WIDTH - RIGHT}" y2="{axis}" stroke="#999"/>')
    parts.append(f'<rect x="{LEFT}" y="{axis - 6}" width="{float(x(timing.headers_ms)) - LEFT:.1f}" '
                 'height="6" fill="#c7d2e0"/>')
    for ms in timing.event_ms:
        parts.append(f'<line x1="{x(ms)}" y1="{axis - 12}" x2="{x(ms)}" y2="{axis}" stroke="#3a6ea5"/>')
    if timing.first_token_ms is not None:
        at = x(timing.first_token_ms)
        parts.append(f'<line class="first-token" x1="{at}" y1="{axis - 22}" x2="{at}" y2="{axis + 4}" '
                     'stroke="#d0342c" stroke-width="2"/>')
        anchor = "start" if float(at) < WIDTH * 0.7 else "end"
        parts.append(f'<text x="{at}" y="{axis - 24}" font-size="11" fill="#d0342c" text-anchor="{anchor}">'
                     f"first token {escape(milliseconds(timing.first_token_ms))}</text>")
    parts.append(f'<text x="{LEFT}" y="{axis + 16}" font-size="11" fill="#444">0</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{axis + 16}" font-size="11" fill="#444" text-anchor="end">'
                 f"{escape(milliseconds(end))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _pre(text: str, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<pre{attribute}>{escape(text)}</pre>"


def interaction_html(interaction: Interaction, exchange: Exchange, previous: Exchange | None,
                     anchor: str) -> str:
    """One interaction's article; if writing it trips on anything, the raw bodies with the
    error as a problem."""
    try:
        return _interaction_html(interaction, exchange, previous, anchor)
    except Exception as error:
        problems = exchange.problems + [f"cannot show this interaction ({type(error).__name__}: {error})"]
        return _interaction_html(interaction, Exchange(problems=problems), None, anchor)


def _interaction_html(interaction: Interaction, exchange: Exchange, previous: Exchange | None,
                      anchor: str) -> str:
    out = [f'<article id="{anchor}">', f"<h3>{escape(request_line(interaction))}</h3>"]
    if not exchange.family:
        raw = describe(interaction)
        out.append('<div class="meta">unknown API shape: raw bodies</div>')
        out.append(f'<div class="msg"><span class="role">request</span>{_pre(raw["request"], "raw")}</div>')
        out.append(f'<div class="msg"><span class="role">response</span>{_pre(raw["response"], "raw")}</div>')
        for problem in exchange.problems:
            out.append(f'<div class="msg error"><span class="role">problem</span>{_pre(problem)}</div>')
    else:
        meta = f"model {exchange.model or '?'} · {FAMILY_NAMES[exchange.family]}"
        if exchange.tools:
            meta += f" · tools: {', '.join(exchange.tools)}"
        out.append(f'<div class="meta">{escape(meta)}</div>')
        for message in new_messages(previous, exchange):
            role = message.role + (f" [{message.tool_call_id}]" if message.tool_call_id else "")
            body = _pre(message.text) if message.text else ""
            body += "".join(f'<div class="call"><code>{escape(c.call())}</code></div>' for c in message.tool_calls)
            out.append(f'<div class="msg"><span class="role">{escape(role)}</span>{body}</div>')
        if exchange.reasoning:
            out.append(f"<details><summary>reasoning ({len(exchange.reasoning)} characters)</summary>"
                       f"{_pre(exchange.reasoning)}</details>")
        if exchange.text:
            out.append(f'<div class="msg assistant"><span class="role">assistant</span>'
                       f'{_pre(exchange.text, "final")}</div>')
        for call in exchange.tool_calls:
            out.append(f'<div class="msg call"><span class="role">tool call</span><code>{escape(call.call())}'
                       f"</code></div>")
        if exchange.error:
            out.append(f'<div class="msg error"><span class="role">error</span>{_pre(exchange.error)}</div>')
        for problem in exchange.problems:
            out.append(f'<div class="msg error"><span class="role">malformed</span>{_pre(problem)}</div>')
        summary = [f"finish {exchange.finish_reason}"] if exchange.finish_reason else []
        summary.append(f"tokens {usage_text(exchange)}")
        if exchange.streamed:
            summary.append(f"{exchange.events} event{'' if exchange.events == 1 else 's'}")
        if exchange.timing:
            summary.append(timing_text(exchange))
        out.append(f'<div class="sum">{escape(" · ".join(summary))}</div>')
    out.append(timeline(interaction, exchange))
    out.append("</article>")
    return "\n".join(out)


def render(readings: list[CassetteReading], title: str = "vcr-proxy cassette report") -> str:
    total = sum((r.usage for r in readings), Usage())
    count = sum(len(r.interactions) for r in readings)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f'<p class="meta">{len(readings)} cassette{"s" if len(readings) != 1 else ""}, {count} interactions, '
           f"{total.input} tokens in, {total.output} tokens out</p>",
           "<table><thead><tr><th>cassette</th><th>models</th><th>interactions</th><th>sessions</th><th>tokens in</th>"
           "<th>tokens out</th><th>slowest first token</th></tr></thead><tbody>"]
    for number, reading in enumerate(readings):
        slowest = reading.slowest_first_token_ms
        out.append(f'<tr><td><a href="#c{number}">{escape(str(reading.path))}</a></td>'
                   f"<td>{escape(', '.join(reading.models) or '-')}</td>"
                   f'<td class="n">{len(reading.interactions) if reading.cassette else "-"}</td>'
                   f'<td class="n">{len(reading.sessions)}</td>'
                   f'<td class="n">{reading.usage.input}</td>'
                   f'<td class="n">{reading.usage.output}</td>'
                   f'<td class="n">{escape(milliseconds(slowest)) if slowest is not None else "-"}</td></tr>')
    out.append("</tbody></table>")
    for number, reading in enumerate(readings):
        out.append(f'<section id="c{number}"><h2>{escape(str(reading.path))}</h2>')
        if reading.problem:
            out.append(f'<div class="msg error"><span class="role">problem</span>{_pre(reading.problem)}</div>')
        previous = None
        for interaction, exchange in zip(reading.interactions, reading.exchanges):
            out.append(interaction_html(interaction, exchange, previous, f"c{number}-i{interaction.id}"))
            if exchange.family:
                previous = exchange
        for session in reading.sessions:
            out.append(session_html(session, f"c{number}-s{session.id}"))
        out.append("</section>")
    out.append("</body></html>\n")
    return "\n".join(out)
