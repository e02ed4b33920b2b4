"""`vcr-proxy show`: a cassette as the conversation it recorded, in text or JSON.

Each interaction prints its request line, the messages the request added to the conversation,
then the whole answer (reasoning, text, each tool call as `name(arguments)`), finish reason,
usage and, when the sidecar has them, timings. A shape the reader does not know prints the raw
previews `show --raw` prints.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .cassette import Cassette, Interaction
from .conversation import FAMILY_NAMES, Exchange, Message, new_messages, read_cassette
from .durations import format_duration
from .inspection import describe, is_streamed

INDENT = "    "

# What a terminal would act on rather than print: C0 controls but newline and tab, DEL, C1
# controls, and the bidirectional overrides that reorder what is shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """Cassette text made safe to print on a terminal: each control character visible as
    `\x1b` (or `\u202e`), so an escape sequence in a body cannot recolour, hide, retitle or
    overwrite what `show` prints."""
    def visible(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return _CONTROLS.sub(visible, text)


def milliseconds(value: float) -> str:
    """Go's duration text, to the millisecond (sidecar times are not more precise than that)."""
    if not math.isfinite(value):
        return "?"
    return format_duration(round(value) * 1_000_000)


def request_line(interaction: Interaction) -> str:
    response = interaction.response
    return (f"#{interaction.id} {interaction.request.method} {interaction.request.url} -> "
            f"{response.status or response.code} in {format_duration(response.duration)}"
            f"{' (stream)' if is_streamed(interaction) else ''}")


def _block(label: str, text: str) -> list[str]:
    """`label: text`, the text's further lines indented under it."""
    lines = text.split("\n") if text else [""]
    return [f"{INDENT}{label}: {lines[0]}".rstrip()] + [f"{INDENT}  {line}".rstrip() for line in lines[1:]]


def message_lines(message: Message) -> list[str]:
    label = f"> {message.role}" + (f" [{message.tool_call_id}]" if message.tool_call_id else "")
    lines = _block(label, message.text) if message.text or not message.tool_calls else []
    for call in message.tool_calls:
        lines.append(f"{INDENT}> {message.role} tool call: {call.call()}")
    return lines


def usage_text(exchange: Exchange) -> str:
    usage = exchange.usage
    parts = [f"{usage.input} in"]
    if usage.cached:
        parts.append(f"{usage.cached} cached")
    parts.append(f"{usage.output} out")
    if usage.reasoning:
        parts.append(f"{usage.reasoning} reasoning")
    return ", ".join(parts)


def timing_text(exchange: Exchange) -> str:
    timing = exchange.timing
    if timing is None:
        return ""
    parts = [f"headers {milliseconds(timing.headers_ms)}"]
    if timing.first_token_ms is not None:
        parts.append(f"first token {milliseconds(timing.first_token_ms)}")
    parts.append(f"end {milliseconds(timing.end_ms)}")
    parts.append(f"stream {milliseconds(timing.stream_ms)}")
    if exchange.streamed and not timing.events:
        parts.append("no per-event times")
    elif timing.events != exchange.events:
        parts.append(f"{timing.events} events timed")
    if timing.tokens_per_second is not None:
        parts.append(f"{timing.tokens_per_second:.1f} tokens/s")
    return ", ".join(parts)


def raw_lines(interaction: Interaction, problems: list[str]) -> list[str]:
    """The request line and the bodies' previews (`show --raw`), and what could not be read."""
    raw = describe(interaction)
    lines = [request_line(interaction),
             f"{INDENT}request:  {raw['request'][:100]}",
             f"{INDENT}response: {raw['response'][:100]}"]
    return lines + [f"{INDENT}! {problem}" for problem in problems]


def interaction_lines(interaction: Interaction, exchange: Exchange, previous: Exchange | None) -> list[str]:
    """The transcript of one interaction; if writing it trips on anything, the raw view with
    the error as a problem."""
    if exchange.family:
        try:
            return _conversation_lines(interaction, exchange, previous)
        except Exception as error:
            problems = exchange.problems + [f"cannot show this interaction ({type(error).__name__}: {error})"]
            return raw_lines(interaction, problems)
    return raw_lines(interaction, exchange.problems)


def _conversation_lines(interaction: Interaction, exchange: Exchange, previous: Exchange | None) -> list[str]:
    lines = [request_line(interaction)]
    header = f"{INDENT}model: {exchange.model or '?'} ({FAMILY_NAMES[exchange.family]})"
    if exchange.tools:
        header += f", tools: {', '.join(exchange.tools)}"
    lines.append(header)
    added = new_messages(previous, exchange)
    for message in added:
        lines.extend(message_lines(message))
    if not added and exchange.messages:
        lines.append(f"{INDENT}> (the same input as the request before: a retry)")
    if exchange.reasoning:
        lines.extend(_block("< reasoning", exchange.reasoning))
    if exchange.text:
        lines.extend(_block("< assistant", exchange.text))
    for call in exchange.tool_calls:
        lines.append(f"{INDENT}< tool call: {call.call()}" + (f"  [{call.id}]" if call.id else ""))
    if exchange.error:
        lines.extend(_block("! error", exchange.error))
    lines.extend(f"{INDENT}! malformed {problem}" for problem in exchange.problems)
    summary = []
    if exchange.finish_reason:
        summary.append(f"finish: {exchange.finish_reason}")
    if exchange.usage != type(exchange.usage)():
        summary.append(f"tokens: {usage_text(exchange)}")
    if exchange.streamed:
        summary.append(f"{exchange.events} event{'' if exchange.events == 1 else 's'}")
    if summary:
        lines.append(INDENT + "; ".join(summary))
    if exchange.timing:
        lines.append(f"{INDENT}timing: {timing_text(exchange)}")
    return lines


def transcript(path: Path, cassette: Cassette) -> list[str]:
    exchanges = read_cassette(path, cassette)
    lines: list[str] = []
    previous = None
    for interaction, exchange in zip(cassette.interactions, exchanges):
        if lines:
            lines.append("")
        lines.extend(interaction_lines(interaction, exchange, previous))
        if exchange.family:
            previous = exchange
    return lines


def transcript_json(path: Path, cassette: Cassette) -> dict:
    """The same reading for scripts: each interaction's request line fields, the raw previews,
    and the conversation (`new_from`: the index of the first message `show` calls new)."""
    items = []
    previous = None
    for interaction, exchange in zip(cassette.interactions, read_cassette(path, cassette)):
        item = describe(interaction)
        try:
            reading = exchange.to_json()
            reading["model"] = exchange.model or item["model"]
            reading["new_from"] = len(exchange.messages) - len(new_messages(previous, exchange))
            json.dumps(reading)  # what the command will print must be printable
        except Exception as error:  # 900 nested levels of arguments: the raw view and why
            reading = {"family": "", "problems": exchange.problems + [
                f"cannot show this interaction ({type(error).__name__}: {error})"]}
            exchange = Exchange()
        item.update(reading)
        items.append(item)
        if exchange.family:
            previous = exchange
    return {"cassette": str(path), "layout": cassette.layout.name, "interactions": items}
