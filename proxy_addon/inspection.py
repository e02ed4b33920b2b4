"""What a cassette holds, for `vcr-proxy ls` and `vcr-proxy show`: hosts, models, streams, time
and the token usage that providers report in their bodies."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .cassette import Cassette, Interaction
from .durations import format_duration

# Where each provider reports token counts: (input field, output field).
_USAGE_FIELDS = (("prompt_tokens", "completion_tokens"),  # OpenAI, OpenRouter, most others
                 ("input_tokens", "output_tokens"),  # Anthropic, OpenAI Responses
                 ("promptTokenCount", "candidatesTokenCount"))  # Gemini


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cached: int = 0  # of the input, read from a prompt cache
    reasoning: int = 0  # of the output (OpenAI) or besides it (Gemini's thoughts), as reported

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input + other.input, self.output + other.output,
                     self.cached + other.cached, self.reasoning + other.reasoning)


def _json_documents(body: str) -> list:
    """The JSON body, or each `data:` JSON of an event stream."""
    try:
        return [json.loads(body)]
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        pass
    documents = []
    for line in body.splitlines():
        if line.startswith("data:"):
            try:
                documents.append(json.loads(line[5:]))
            except (ValueError, RecursionError):
                continue
    return documents


def _count(value) -> int:
    """A token count; anything but a finite number (NaN, 1e999, a string, an object) is 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return max(0, int(value))
    return 0


def _usage_in(value) -> Usage | None:
    if isinstance(value, dict):
        for key in ("usage", "usageMetadata"):
            block = value.get(key)
            if isinstance(block, dict):
                for inp, out in _USAGE_FIELDS:
                    if inp in block or out in block:
                        return Usage(_count(block.get(inp)), _count(block.get(out)))
        for key in ("message", "response"):  # Anthropic's message_start, Responses API events
            found = _usage_in(value.get(key))
            if found:
                return found
    return None


def usage(interaction: Interaction) -> Usage:
    """The tokens one response reports; a stream's counts are cumulative, so the largest wins
    (Anthropic reports input at the start and output at the end)."""
    body = interaction.response.body
    if not isinstance(body, str):
        return Usage()
    total = Usage()
    for document in _json_documents(body):
        found = _usage_in(document)
        if found:
            total = Usage(max(total.input, found.input), max(total.output, found.output))
    return total


def model(interaction: Interaction) -> str:
    body = interaction.request.body
    if isinstance(body, str):
        try:
            value = json.loads(body)
            if isinstance(value, dict) and isinstance(value.get("model"), str):
                return value["model"]
        except (ValueError, RecursionError):
            pass
    path = urlsplit(interaction.request.url).path  # Gemini and Vertex put it in the path
    if "/models/" in path:
        return path.split("/models/", 1)[1].split(":", 1)[0].split("/", 1)[0]
    return ""


def is_streamed(interaction: Interaction) -> bool:
    return any("event-stream" in v or "eventstream" in v
               for v in interaction.response.headers.get("Content-Type", []))


@dataclass
class Summary:
    interactions: int = 0
    hosts: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    streamed: int = 0
    duration: int = 0
    usage: Usage = field(default_factory=Usage)


def summarize(cassette: Cassette) -> Summary:
    from .conversation import read_exchange  # which imports this module

    summary = Summary(interactions=len(cassette.interactions))
    for interaction in cassette.interactions:
        host = urlsplit(interaction.request.url).hostname or ""
        if host and host not in summary.hosts:
            summary.hosts.append(host)
        # The model and tokens as `show` reads them, for every API family it knows (the model
        # in a Bedrock URL, Cohere's and Groq's usage); the fields above for any other.
        reading = read_exchange(interaction)
        name = reading.model or model(interaction)
        if name and name not in summary.models:
            summary.models.append(name)
        summary.streamed += is_streamed(interaction)
        summary.duration += interaction.response.duration
        found = reading.usage if reading.family else usage(interaction)
        summary.usage = summary.usage + Usage(found.input, found.output)
    return summary


def preview(body: str | bytes, width: int = 80) -> str:
    if isinstance(body, bytes):
        return f"<{len(body)} bytes, not UTF-8>"
    text = " ".join(body.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def describe(interaction: Interaction) -> dict:
    """One interaction for `vcr-proxy show --json`."""
    response = interaction.response
    found = usage(interaction)
    return {"id": interaction.id, "method": interaction.request.method,
            "url": interaction.request.url, "status": response.status, "code": response.code,
            "duration": format_duration(response.duration), "model": model(interaction),
            "streamed": is_streamed(interaction),
            "usage": {"input_tokens": found.input, "output_tokens": found.output},
            "request": preview(interaction.request.body, 400),
            "response": preview(response.body, 400)}
