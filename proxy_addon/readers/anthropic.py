"""Anthropic messages, also through Bedrock's InvokeModel and Vertex's rawPredict: a
request's system prompt, messages and tools, a response's content blocks, streamed or not."""

from __future__ import annotations

from typing import Any

from ..inspection import Usage
from .model import Exchange, Message, Output, as_list, error_message, number, parts_text, tool_call


def read_request(request: dict, exchange: Exchange) -> None:
    if request.get("system"):
        exchange.messages.append(Message("system", parts_text(request["system"])))
    for item in as_list(request.get("messages")):
        if not isinstance(item, dict):
            continue
        role, content = str(item.get("role", "")), item.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        message = Message(role, parts_text([b for b in blocks if not isinstance(b, dict)
                                             or b.get("type") not in ("thinking", "redacted_thinking")]))
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                message.tool_calls.append(tool_call(block.get("name"), block.get("id"),
                                                     block.get("input")))
            elif block.get("type") == "tool_result":
                exchange.messages.append(Message("tool", parts_text(block.get("content")),
                                                 tool_call_id=str(block.get("tool_use_id") or "")))
        if message.text or message.tool_calls:
            exchange.messages.append(message)
    for tool in as_list(request.get("tools")):
        if isinstance(tool, dict):
            exchange.tools.append(str(tool.get("name") or tool.get("type") or "?"))


def _usage(block: Any, previous: Usage) -> Usage:
    if not isinstance(block, dict):
        return previous
    # message_delta repeats the counts cumulatively; a missing one keeps what message_start said.
    return Usage(number(block, "input_tokens") or previous.input,
                 number(block, "output_tokens") or previous.output,
                 number(block, "cache_read_input_tokens") or previous.cached,
                 previous.reasoning)


def _block(block: Any, output: Output, index, key) -> None:
    if not isinstance(block, dict):
        return
    kind = block.get("type")
    if kind == "text":
        output.text(index, block.get("text"))
    elif kind == "thinking":
        output.reasoning(index, block.get("thinking"))
    elif kind in ("tool_use", "server_tool_use"):
        output.call(index, key, block.get("name"), block.get("id"),
                    block.get("input") if block.get("input") not in ({}, None) else None)


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        if kind == "message":  # the whole non-streamed answer
            exchange.model = str(value.get("model") or "")
            for position, block in enumerate(as_list(value.get("content"))):
                _block(block, output, index, position)
            exchange.finish_reason = str(value.get("stop_reason") or "")
            exchange.usage = _usage(value.get("usage"), exchange.usage)
        elif kind == "message_start" and isinstance(value.get("message"), dict):
            exchange.model = str(value["message"].get("model") or "")
            exchange.usage = _usage(value["message"].get("usage"), exchange.usage)
        elif kind == "content_block_start":
            _block(value.get("content_block"), output, index, value.get("index"))
        elif kind == "content_block_delta" and isinstance(value.get("delta"), dict):
            delta = value["delta"]
            if delta.get("type") == "text_delta":
                output.text(index, delta.get("text"))
            elif delta.get("type") == "thinking_delta":
                output.reasoning(index, delta.get("thinking"))
            elif delta.get("type") == "input_json_delta":
                output.call(index, value.get("index"), args=delta.get("partial_json"))
        elif kind == "message_delta":
            delta = value.get("delta") if isinstance(value.get("delta"), dict) else {}
            exchange.finish_reason = str(delta.get("stop_reason") or exchange.finish_reason)
            exchange.usage = _usage(value.get("usage"), exchange.usage)
        elif kind == "error":
            exchange.error = error_message(value)
    output.finish()

