"""OpenAI chat completions, and every OpenAI-compatible API (OpenRouter, Groq, xAI,
DeepSeek, Together, Fireworks, Azure...): a request's messages and tools, a response's
choices, streamed or not."""

from __future__ import annotations

import json
from typing import Any

from ..inspection import Usage
from .model import (Exchange, Message, Output, as_dict, as_list, error_message, number, parts_text,
                    preview, tool_call)


def read_request(request: dict, exchange: Exchange) -> None:
    for item in as_list(request.get("messages")):
        if not isinstance(item, dict):
            continue
        message = Message(str(item.get("role", "")), parts_text(item.get("content")),
                          tool_call_id=str(item.get("tool_call_id") or ""))
        for call in as_list(item.get("tool_calls")):
            if isinstance(call, dict):
                function = as_dict(call.get("function"))
                message.tool_calls.append(tool_call(function.get("name"), call.get("id"),
                                                     function.get("arguments")))
        exchange.messages.append(message)
    for tool in as_list(request.get("tools")):
        if isinstance(tool, dict):
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            exchange.tools.append(str(function.get("name") or tool.get("type") or "?"))


def _usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    return Usage(number(block, "prompt_tokens", "input_tokens"),
                 number(block, "completion_tokens", "output_tokens"),
                 number(block, "prompt_tokens_details.cached_tokens", "prompt_cache_hit_tokens"),
                 number(block, "completion_tokens_details.reasoning_tokens"))


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        exchange.model = exchange.model or str(value.get("model") or "")
        # Groq streams put usage under x_groq, in the last chunk
        found = _usage(value.get("usage")) or _usage(as_dict(value.get("x_groq")).get("usage"))
        if found:
            exchange.usage = found
        if value.get("error"):  # OpenRouter: an error in the stream of a 200
            exchange.error = error_message(value) or preview(json.dumps(value.get("error")), 200)
        for choice in as_list(value.get("choices")):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                exchange.finish_reason = str(choice["finish_reason"])
            part = choice.get("delta") if "delta" in choice else choice.get("message")
            if not isinstance(part, dict):
                continue
            output.reasoning(index, part.get("reasoning_content") or part.get("reasoning"))
            output.text(index, part.get("content") if isinstance(part.get("content"), str)
                        else parts_text(part.get("content")) if part.get("content") else None)
            for position, call in enumerate(as_list(part.get("tool_calls"))):
                if isinstance(call, dict):
                    function = as_dict(call.get("function"))
                    output.call(index, call.get("index", position), function.get("name"), call.get("id"),
                                function.get("arguments"))
    output.finish()

