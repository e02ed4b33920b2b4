"""Bedrock's InvokeModel and InvokeModelWithResponseStream for the models that are not
Anthropic's (those go to anthropic.py): which schema a model's body has, taken from the model id
in the URL (`/model/us.amazon.nova-pro-v1:0/invoke`) or, for an id that names no model (an
application inference profile's ARN), from the bodies; the token counts Bedrock appends to the
last chunk of a stream (`amazon-bedrock-invocationMetrics`); and Amazon Nova, whose bodies are
Converse's (messages-v1) with each stream chunk wrapped in its event's name
(`{"contentBlockDelta": {...}}`). The other schemas are in bedrock_text.py and bedrock_chat.py."""

from __future__ import annotations

import re
from typing import Any

from ..inspection import Usage
from . import bedrock
from .model import Exchange, Message, as_dict, error_message, number

NOVA, LLAMA, MISTRAL, TITAN, COHERE_R = "nova", "llama", "mistral", "titan", "cohere-r"
INVOKE_PATH = re.compile(r"/model/(.+)/invoke(-with-response-stream)?$")  # an ARN holds slashes
# Vendor prefixes of model ids, after any cross-region prefix (us., eu., apac., global. ...)
_MODELS = ((NOVA, "amazon.nova"), (TITAN, "amazon.titan-text"), (TITAN, "amazon.titan-tg1"),
           (LLAMA, "meta.llama"), (MISTRAL, "mistral."), (COHERE_R, "cohere.command-r"))
_STREAM_EVENTS = ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop",
                  "messageStop", "metadata")


def schema(path: str, request: Any, events: list) -> str:
    """The body schema of an InvokeModel call (path already URL-decoded), or "" if the path is
    not InvokeModel's or its bodies are none of those read here."""
    found = INVOKE_PATH.search(path)
    if not found:
        return ""
    model = found.group(1).lower()
    arn = model.startswith("arn:")
    model = model.rsplit("/", 1)[-1]  # an inference profile's ARN ends with the model id
    if re.search(r"amazon\.nova-(canvas|reel|sonic)", model):
        return ""  # images, video, speech: no conversation to read
    for name, prefix in _MODELS:
        if re.match(rf"([a-z-]+\.)?{re.escape(prefix)}", model):
            return name
    if not arn:
        return ""  # another vendor's model (OpenAI's gpt-oss reads as OpenAI chat), or none known
    # An application inference profile or a provisioned model: its ARN names no model.
    return _by_shape(request if isinstance(request, dict) else {},
                     as_dict(events[0][2]) if events else {})


def _by_shape(request: dict, first: dict) -> str:
    if "anthropic_version" in request:
        return ""  # conversation.py reads it as Anthropic's
    if request.get("schemaVersion") == "messages-v1" or "output" in first or any(
            key in first for key in _STREAM_EVENTS):
        return NOVA
    if "inputText" in request or "results" in first or "outputText" in first:
        return TITAN
    if isinstance(request.get("message"), str) or "event_type" in first or "generation_id" in first:
        return COHERE_R
    if "generation" in first:
        return LLAMA
    if "outputs" in first or "choices" in first:
        return MISTRAL
    return ""


def invocation_usage(events: list) -> Usage | None:
    """The counts Bedrock appends to a stream's last chunk, whatever the model."""
    for _, _, value in reversed(events):
        metrics = as_dict(value).get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            return Usage(number(metrics, "inputTokenCount"), number(metrics, "outputTokenCount"),
                         number(metrics, "cacheReadInputTokenCount"))
    return None


def failed(value: dict, exchange: Exchange) -> bool:
    """An exception frame of the stream (events.aws_events made it `{"type": "error"}`)."""
    if value.get("type") == "error":
        exchange.error = error_message(value)
        return True
    return False


def chunks(events: list, exchange: Exchange):
    """(index, body) of each response body or stream chunk that is no error (an error is
    noted on `exchange` by `failed`)."""
    for index, _, value in events:
        value = as_dict(value)
        if not failed(value, exchange):
            yield index, value


class Nova:
    """Amazon Nova: the request is Converse's (system, messages, toolConfig); so is the whole
    answer; a streamed chunk is one Converse event under its name."""

    read_request = staticmethod(bedrock.read_request)

    @staticmethod
    def read_response(events: list, exchange: Exchange) -> None:
        unwrapped = []
        for index, name, value in events:
            value = as_dict(value)
            for key in _STREAM_EVENTS:
                if isinstance(value.get(key), dict):
                    value = value[key]
                    break
            unwrapped.append((index, name, value))
        bedrock.read_response(unwrapped, exchange)


def prompt_messages(prompt: Any) -> list[Message]:
    """A raw prompt as messages: Llama 3's chat template split at its role headers, any other
    text (Llama 2's or Mistral's [INST] tags, Titan's "User: ... Bot:") as one user message."""
    if not isinstance(prompt, str) or not prompt:
        return []
    turns = re.findall(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)",
                       prompt, re.S)
    turns = [(role, text.strip()) for role, text in turns if text.strip()]
    if turns:
        return [Message("tool" if role == "ipython" else role, text) for role, text in turns]
    return [Message("user", prompt)]

