"""OpenAI's Responses API: a request's instructions, input items and tools, a response's
output items, streamed or not."""

from __future__ import annotations

from typing import Any

from ..inspection import Usage
from .model import Exchange, Message, Output, as_list, error_message, hashable, number, parts_text, tool_call


def read_request(request: dict, exchange: Exchange) -> None:
    if isinstance(request.get("instructions"), str):
        exchange.messages.append(Message("system", request["instructions"]))
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in as_list(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            exchange.messages.append(Message("assistant", tool_calls=[tool_call(
                item.get("name"), item.get("call_id"), item.get("arguments"))]))
        elif kind == "function_call_output":
            exchange.messages.append(Message("tool", parts_text(item.get("output")),
                                             tool_call_id=str(item.get("call_id") or "")))
        elif kind == "message" or "role" in item:
            exchange.messages.append(Message(str(item.get("role", "")),
                                             parts_text(item.get("content"))))
        elif kind != "reasoning":
            exchange.messages.append(Message("input", f"[{kind}]"))
    for tool in as_list(request.get("tools")):
        if isinstance(tool, dict):
            exchange.tools.append(str(tool.get("name") or tool.get("type") or "?"))


def _usage(block: Any) -> Usage | None:
    if not isinstance(block, dict):
        return None
    return Usage(number(block, "input_tokens"), number(block, "output_tokens"),
                 number(block, "input_tokens_details.cached_tokens"),
                 number(block, "output_tokens_details.reasoning_tokens"))


def _final(response: dict, exchange: Exchange, output: Output, index, texts: bool) -> None:
    """A whole response object: the non-streamed body, or a stream's last event."""
    exchange.model = str(response.get("model") or exchange.model)
    status = str(response.get("status") or "")
    details = response.get("incomplete_details")
    exchange.finish_reason = (str(details.get("reason")) if isinstance(details, dict)
                              and details.get("reason") else status)
    found = _usage(response.get("usage"))
    if found:
        exchange.usage = found
    if isinstance(response.get("error"), dict):
        exchange.error = error_message(response)
    if not texts:
        return
    for item in as_list(response.get("output")):
        _item(item, output, index)


def _item(item: Any, output: Output, index) -> None:
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for part in as_list(item.get("content")):
            if isinstance(part, dict):
                output.text(index, part.get("text") if part.get("type") == "output_text"
                            else part.get("refusal"))
    elif kind == "reasoning":
        output.reasoning(index, parts_text(item.get("summary")))
    elif kind == "function_call":
        output.call(index, item.get("id") or item.get("call_id"), item.get("name"),
                    item.get("call_id"), item.get("arguments"))


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    streamed = any(isinstance(v, dict) and str(v.get("type", "")).startswith("response.")
                   for _, _, v in events)
    if not streamed:
        for index, _, value in events:
            if isinstance(value, dict):
                _final(value, exchange, output, index, texts=True)
        output.finish()
        return
    saw_text = set()
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        kind = str(value.get("type", ""))
        if kind == "response.output_text.delta":
            output.text(index, value.get("delta"))
            saw_text.add(hashable(value.get("item_id")))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            output.reasoning(index, value.get("delta"))
            saw_text.add(hashable(value.get("item_id")))
        elif kind == "response.output_item.added" and isinstance(value.get("item"), dict):
            item = value["item"]
            if item.get("type") == "function_call":
                output.call(index, item.get("id"), item.get("name"), item.get("call_id"))
        elif kind == "response.function_call_arguments.delta":
            output.call(index, value.get("item_id"), args=value.get("delta"))
        elif kind == "response.output_item.done" and isinstance(value.get("item"), dict):
            item = value["item"]
            if item.get("type") == "function_call":
                entry = output.entry(item.get("id"))
                entry.update(name=item.get("name") or entry["name"],
                             id=item.get("call_id") or entry["id"],
                             args=item.get("arguments") if item.get("arguments") is not None
                             else entry["args"])
            elif hashable(item.get("id")) not in saw_text:  # a whole item with no deltas before it
                _item(item, output, index)
        elif kind in ("response.completed", "response.incomplete", "response.failed",
                      "response.created") and isinstance(value.get("response"), dict):
            _final(value["response"], exchange, output, index, texts=False)
        elif kind == "error":
            exchange.error = str(value.get("message") or error_message(value))
    output.finish()

