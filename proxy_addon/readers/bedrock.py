"""Bedrock's Converse and ConverseStream: a request's system prompt, messages and tool
configuration (the model is in the URL), a response's output message, or its stream of
AWS event-stream frames (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata)."""

from __future__ import annotations

from typing import Any

from ..inspection import Usage
from .model import Exchange, Message, Output, as_dict, as_list, error_message, number, tool_call


def _content(blocks: Any) -> tuple[str, list, list[Message]]:
    """A Converse content list: its text, its tool uses, and tool results as messages."""
    texts, calls, results = [], [], []
    for block in as_list(blocks):
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(tool_call(use.get("name"), use.get("toolUseId"), use.get("input")))
        elif isinstance(block.get("toolResult"), dict):
            result = block["toolResult"]
            text, _, _ = _content(result.get("content"))
            results.append(Message("tool", text or "[result]",
                                   tool_call_id=str(result.get("toolUseId") or "")))
        elif "reasoningContent" not in block:
            texts.append(f"[{next(iter(block), 'part')}]")
    return "\n".join(texts), calls, results


def read_request(request: dict, exchange: Exchange) -> None:
    system, _, _ = _content(request.get("system"))
    if system:
        exchange.messages.append(Message("system", system))
    for item in as_list(request.get("messages")):
        if not isinstance(item, dict):
            continue
        text, calls, results = _content(item.get("content"))
        exchange.messages.extend(results)
        if text or calls:
            exchange.messages.append(Message(str(item.get("role", "")), text, calls))
    for tool in as_list(as_dict(request.get("toolConfig")).get("tools")):
        spec = as_dict(as_dict(tool).get("toolSpec"))
        exchange.tools.append(str(spec.get("name") or "?"))


def _usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    return Usage(number(block, "inputTokens"), number(block, "outputTokens"),
                 number(block, "cacheReadInputTokens"))


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        message = as_dict(as_dict(value.get("output")).get("message"))
        if message:  # Converse: the whole answer
            text, calls, _ = _content(message.get("content"))
            output.text(index, text)
            for position, call in enumerate(calls):
                output.call(index, position, call.name, call.id, call.arguments)
            for block in as_list(message.get("content")):
                reasoning = as_dict(as_dict(block).get("reasoningContent"))
                output.reasoning(index, as_dict(reasoning.get("reasoningText")).get("text"))
        start = as_dict(as_dict(value.get("start")).get("toolUse"))
        if start:  # ConverseStream: a tool use begins
            output.call(index, value.get("contentBlockIndex"), start.get("name"), start.get("toolUseId"))
        delta = as_dict(value.get("delta"))
        output.text(index, delta.get("text"))
        if isinstance(delta.get("toolUse"), dict):
            output.call(index, value.get("contentBlockIndex"), args=delta["toolUse"].get("input"))
        reasoning = as_dict(delta.get("reasoningContent"))
        output.reasoning(index, reasoning.get("text"))
        if value.get("stopReason"):
            exchange.finish_reason = str(value["stopReason"])
        found = _usage(value.get("usage"))
        if found:
            exchange.usage = found
        if value.get("type") == "error":  # an exception frame (events.aws_events)
            exchange.error = error_message(value)
    output.finish()
