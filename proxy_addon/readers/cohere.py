"""Cohere's v2 chat (`/v2/chat`), streamed or not. Its requests are shaped like OpenAI's chat
(messages with tool_calls, tools as functions); its answers are not: a `message` whose content
is a list of typed parts, `tool_plan`, usage under `tokens` and `billed_units`, and a stream of
typed events (message-start, content-delta, tool-call-start/delta, message-end)."""

from __future__ import annotations

from typing import Any

from ..inspection import Usage
from .model import Exchange, Output, as_dict, as_list, number, parts_text
from .openai_chat import read_request  # noqa: F401  (the same request shape)


def _usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    tokens = as_dict(block.get("tokens")) or as_dict(block.get("billed_units"))
    return Usage(number(tokens, "input_tokens"), number(tokens, "output_tokens"),
                 number(block, "cached_tokens"))


def _calls(output: Output, index, calls: Any) -> None:
    for position, call in enumerate(as_list(calls) if isinstance(calls, list) else [calls]):
        if isinstance(call, dict):
            function = as_dict(call.get("function"))
            output.call(index, position, function.get("name"), call.get("id"), function.get("arguments"))


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        if kind is None and isinstance(value.get("message"), dict):  # the whole answer
            message = value["message"]
            output.reasoning(index, message.get("tool_plan"))
            output.text(index, parts_text(message.get("content")))
            _calls(output, index, message.get("tool_calls"))
            exchange.finish_reason = str(value.get("finish_reason") or "")
            exchange.usage = _usage(value.get("usage")) or exchange.usage
            continue
        delta = as_dict(value.get("delta"))
        message = as_dict(delta.get("message"))
        if kind == "content-delta":
            output.text(index, as_dict(message.get("content")).get("text"))
        elif kind == "tool-plan-delta":
            output.reasoning(index, message.get("tool_plan"))
        elif kind == "tool-call-start":
            call = as_dict(message.get("tool_calls"))
            function = as_dict(call.get("function"))
            output.call(index, value.get("index"), function.get("name"), call.get("id"),
                        function.get("arguments") or "")
        elif kind == "tool-call-delta":
            function = as_dict(as_dict(message.get("tool_calls")).get("function"))
            output.call(index, value.get("index"), args=function.get("arguments"))
        elif kind == "message-end":
            exchange.finish_reason = str(delta.get("finish_reason") or exchange.finish_reason)
            exchange.usage = _usage(delta.get("usage")) or exchange.usage
            if isinstance(delta.get("error"), str):
                exchange.error = delta["error"]
    output.finish()
