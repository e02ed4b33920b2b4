"""One reading of an LLM exchange: what was asked and what the model answered.

From an interaction's request and response (streamed or not) it finds the API family and
assembles the conversation: the request's model, messages and offered tools; the response's
text, reasoning, tool calls, finish reason and usage, put together from the stream's events the
way the provider's SDK would. Plain Python on purpose, so that `show`, `report` and `diff` can
read cassettes without the proxy.

Each family has its reader in `readers/` (one module each, the same two functions:
read_request and read_response); `readers/events.py` turns bodies into events and
`readers/model.py` holds what a reading is made of. This module finds the family and puts the
reading together.

A shape it does not know gives `family == ""` (callers fall back to the raw bodies); an event
that does not parse is listed in `problems`, never raised.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .cassette import Cassette, Interaction
from .inspection import is_streamed
from .readers import anthropic, bedrock, bedrock_invoke, cohere, gemini, openai_chat, openai_responses
from .readers.bedrock_chat import CohereR, Mistral
from .readers.bedrock_text import Llama, Titan
from .readers.events import EVENT_END, json_body, response_events  # noqa: F401  (drift.py)
from .readers.model import Exchange, Message, Timings, body_text, error_message, preview
from .readers.model import ToolCall  # noqa: F401  (drift.py)
from .timing import Timing, body_hash, read_sidecar, sidecar_path

OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
BEDROCK_CONVERSE = "bedrock-converse"
COHERE = "cohere"
# Bedrock's InvokeModel, one family per body schema (Anthropic's is ANTHROPIC)
BEDROCK_NOVA = "bedrock-nova"
BEDROCK_LLAMA = "bedrock-llama"
BEDROCK_MISTRAL = "bedrock-mistral"
BEDROCK_TITAN = "bedrock-titan"
BEDROCK_COHERE = "bedrock-cohere"
FAMILY_NAMES = {OPENAI_CHAT: "OpenAI chat completions", OPENAI_RESPONSES: "OpenAI Responses",
                ANTHROPIC: "Anthropic messages", GEMINI: "Gemini generateContent",
                BEDROCK_CONVERSE: "Bedrock Converse", COHERE: "Cohere chat",
                BEDROCK_NOVA: "Bedrock InvokeModel, Amazon Nova",
                BEDROCK_LLAMA: "Bedrock InvokeModel, Meta Llama",
                BEDROCK_MISTRAL: "Bedrock InvokeModel, Mistral AI",
                BEDROCK_TITAN: "Bedrock InvokeModel, Amazon Titan Text",
                BEDROCK_COHERE: "Bedrock InvokeModel, Cohere Command R"}
READERS = {OPENAI_CHAT: openai_chat, OPENAI_RESPONSES: openai_responses, ANTHROPIC: anthropic,
           GEMINI: gemini, BEDROCK_CONVERSE: bedrock, COHERE: cohere,
           BEDROCK_NOVA: bedrock_invoke.Nova, BEDROCK_LLAMA: Llama, BEDROCK_MISTRAL: Mistral,
           BEDROCK_TITAN: Titan, BEDROCK_COHERE: CohereR}
_INVOKE_FAMILIES = {bedrock_invoke.NOVA: BEDROCK_NOVA, bedrock_invoke.LLAMA: BEDROCK_LLAMA,
                    bedrock_invoke.MISTRAL: BEDROCK_MISTRAL, bedrock_invoke.TITAN: BEDROCK_TITAN,
                    bedrock_invoke.COHERE_R: BEDROCK_COHERE}


def family_of(interaction: Interaction, request: Any, events: list) -> str:
    path = unquote(urlsplit(interaction.request.url).path)
    if path.endswith("/chat/completions"):
        return OPENAI_CHAT
    if path.endswith("/responses"):
        return OPENAI_RESPONSES
    if (path.endswith("/messages") or "/invoke" in path and "anthropic" in path
            or re.search(r":(stream)?rawPredict$", path) and "anthropic" in path):
        return ANTHROPIC
    if re.search(r":(stream)?[Gg]enerateContent$", path):
        return GEMINI
    if re.search(r"/model/[^/]+/converse(-stream)?$", path):
        return BEDROCK_CONVERSE
    invoked = bedrock_invoke.schema(path, request, events)  # the model id in the URL, or the bodies
    if invoked:
        return _INVOKE_FAMILIES[invoked]
    if path.endswith("/v2/chat"):
        return COHERE
    if isinstance(request, dict) and "anthropic_version" in request:
        return ANTHROPIC
    first = events[0][2] if events else None
    if isinstance(first, dict):
        if "choices" in first and isinstance(request, dict) and "messages" in request:
            return OPENAI_CHAT
        if "candidates" in first:
            return GEMINI
        if first.get("type") in ("message", "message_start"):
            return ANTHROPIC
    return ""


def _model_from_path(url: str) -> str:
    path = unquote(urlsplit(url).path)
    if "/models/" in path:  # Gemini, Vertex: models/NAME:generateContent
        return path.split("/models/", 1)[1].split(":", 1)[0].split("/", 1)[0]
    bedrock_call = re.search(r"/model/(.+)/(invoke(-with-response-stream)?|converse(-stream)?)$", path)
    if bedrock_call:  # Bedrock: model/ID/invoke, the ID may hold a colon, an ARN slashes too
        return bedrock_call.group(1)
    if "/model/" in path:
        return path.split("/model/", 1)[1].split("/", 1)[0]
    return ""


def read_exchange(interaction: Interaction, timing: Timing | None = None) -> Exchange:
    """The conversation in one interaction; `timing` is its sidecar line, if it matches. A body
    the reader trips on (a bug, a shape nobody expected) gives an unknown family, so callers
    show the raw view, and the error as a problem."""
    try:
        return _read_exchange(interaction, timing)
    except Exception as error:  # RecursionError and MemoryError too: listed, never raised
        return Exchange(problems=[f"cannot read this interaction ({type(error).__name__}: "
                                  f"{preview(str(error), 120)})"])


def _read_exchange(interaction: Interaction, timing: Timing | None = None) -> Exchange:
    exchange = Exchange(streamed=is_streamed(interaction))
    events, streamed = response_events(interaction, exchange.problems)
    exchange.streamed = exchange.streamed or streamed
    request = json_body(interaction.request.body)
    exchange.family = family_of(interaction, request, events)
    if not exchange.family:
        return exchange
    if isinstance(request, dict):
        READERS[exchange.family].read_request(request, exchange)
        if isinstance(request.get("model"), str):
            exchange.model = request["model"]
    requested = exchange.model or _model_from_path(interaction.request.url)
    exchange.events = _event_count(interaction, events) if exchange.streamed else 0
    READERS[exchange.family].read_response(events, exchange)
    if not (exchange.usage.input or exchange.usage.output):  # none in the body: Bedrock's count
        exchange.usage = bedrock_invoke.invocation_usage(events) or exchange.usage
    exchange.model = requested or exchange.model  # what was asked for; the answer may name a version
    if not exchange.error and interaction.response.code >= 400:
        body = body_text(interaction.response.body)
        exchange.error = ((error_message(events[0][2]) if events else "")
                          or preview(body if body is not None else "(binary body)", 200)
                          or interaction.response.status)
    if timing is not None:
        exchange.timing = _timings(timing, exchange, _is_aws(interaction))
    return exchange


def _is_aws(interaction: Interaction) -> bool:
    body = interaction.response.body
    content_type = " ".join(interaction.response.headers.get("Content-Type", [])).lower()
    return isinstance(body, (bytes, bytearray)) and ("amazon.eventstream" in content_type
                                                     or body_text(body) is None)


def _event_count(interaction: Interaction, events: list) -> int:
    """The stream's events as the sidecar times them: each block ended by a blank line
    ([DONE] and comments included); AWS event-stream frames as read."""
    text = body_text(interaction.response.body)
    if _is_aws(interaction) or text is None or not re.match(r"(data|event|id|retry)?:", text.lstrip()):
        return len(events)
    return sum(1 for block in EVENT_END.split(text) if block.strip())


def _timings(timing: Timing, exchange: Exchange, aws: bool = False) -> Timings:
    if aws and not timing.events_ms:
        # Recorded before frames were timed (recording timed events at blank lines only): an
        # AWS event stream (Bedrock) then has its headers and end times, and no first token.
        return Timings(timing.headers_ms, timing.end_ms, 0, [])
    found = Timings(timing.headers_ms, timing.end_ms, len(timing.events_ms), list(timing.events_ms))
    if not exchange.streamed:
        found.first_token_ms = timing.end_ms  # the whole answer arrives with the body
    elif exchange.first_event is not None and exchange.first_event < len(timing.events_ms):
        found.first_token_ms = timing.events_ms[exchange.first_event]
    start = found.first_token_ms if found.first_token_ms is not None else timing.headers_ms
    seconds = (timing.end_ms - start) / 1e3
    tokens = exchange.usage.output
    if tokens and seconds > 0 and exchange.streamed:
        found.tokens_per_second = tokens / seconds
    return found


def cassette_timings(path: Path, cassette: Cassette) -> dict[int, Timing]:
    """The sidecar's lines that still match their interactions' bodies."""
    sidecar = sidecar_path(Path(path))
    if not sidecar.exists():
        return {}
    timings = read_sidecar(sidecar)
    by_id = {i.id: i for i in cassette.interactions}
    return {key: t for key, t in timings.items()
            if key in by_id and t.body_hash == body_hash(by_id[key].response.body)}


def read_cassette(path: Path, cassette: Cassette) -> list[Exchange]:
    timings = cassette_timings(path, cassette)
    return [read_exchange(i, timings.get(i.id)) for i in cassette.interactions]


def new_messages(previous: Exchange | None, exchange: Exchange) -> list[Message]:
    """The messages this request adds to the conversation of the one before it: past their
    common beginning, and past the previous answer echoed back as history."""
    if previous is None or previous.family != exchange.family:
        return exchange.messages
    shared = 0
    for old, new in zip(previous.messages, exchange.messages):
        if old.key() != new.key():
            break
        shared += 1
    if shared == 0:
        return exchange.messages
    rest = exchange.messages[shared:]
    while rest and rest[0].role in ("assistant", "model"):
        rest = rest[1:]
    return rest

