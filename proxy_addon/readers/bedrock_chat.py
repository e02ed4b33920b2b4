"""The chat schemas with tools of Bedrock's InvokeModel: Mistral AI (text completion `{"prompt"}`
-> `{"outputs": [{"text", "stop_reason"}]}`, or chat `{"messages", "tools"}` shaped like OpenAI's
-> `{"choices": [{"message": {"content", "tool_calls"}, "stop_reason"}]}`; stream chunks the same
shapes, a piece of text each) and Cohere Command R (`{"message", "chat_history", "preamble",
"tools", "tool_results"}` -> `{"text", "tool_calls": [{"name", "parameters"}], "finish_reason",
"meta"}`; stream events text-generation, tool-calls-generation and stream-end). Neither body
counts tokens, as a rule: Bedrock's invocation metrics do (conversation.py)."""

from __future__ import annotations

import json
from typing import Any

from ..inspection import Usage
from . import openai_chat
from .bedrock_invoke import chunks, prompt_messages
from .model import JSON_ERRORS, Exchange, Message, Output, as_dict, as_list, number, tool_call


def _whole(arguments: Any) -> Any:
    """Arguments that arrive whole (each chunk the complete call): parsed, so that a call
    repeated in a later chunk replaces rather than appends."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except JSON_ERRORS:
            return arguments
    return arguments


class Mistral:
    @staticmethod
    def read_request(request: dict, exchange: Exchange) -> None:
        if "messages" in request:
            openai_chat.read_request(request, exchange)
        else:
            exchange.messages.extend(prompt_messages(request.get("prompt")))

    @staticmethod
    def read_response(events: list, exchange: Exchange) -> None:
        output = Output(exchange)
        for index, value in chunks(events, exchange):
            for choice in [as_dict(c) for c in as_list(value.get("outputs") or value.get("choices"))][:1]:
                message = as_dict(choice.get("message") or choice.get("delta"))
                output.text(index, choice.get("text") if "text" in choice else message.get("content"))
                for position, call in enumerate(as_list(message.get("tool_calls"))):
                    function = as_dict(as_dict(call).get("function"))
                    output.call(index, position, function.get("name"), as_dict(call).get("id"),
                                _whole(function.get("arguments")))
                reason = choice.get("stop_reason") or choice.get("finish_reason")
                if reason:
                    exchange.finish_reason = str(reason)
            usage = value.get("usage")
            if isinstance(usage, dict):
                exchange.usage = Usage(number(usage, "prompt_tokens"), number(usage, "completion_tokens"))
        output.finish()


_COHERE_ROLES = {"USER": "user", "CHATBOT": "assistant", "SYSTEM": "system", "TOOL": "tool"}


def _tool_results(results: Any) -> list[Message]:
    found = []
    for result in as_list(results):
        call = as_dict(as_dict(result).get("call"))
        outputs = as_dict(result).get("outputs")
        found.append(Message("tool", json.dumps(outputs, ensure_ascii=False) if outputs else "[result]",
                             tool_call_id=str(call.get("name") or "")))
    return found


def _cohere_calls(calls: Any) -> list:
    return [tool_call(as_dict(c).get("name"), "", as_dict(c).get("parameters")) for c in as_list(calls)]


def _cohere_usage(response: dict) -> Usage | None:
    meta = as_dict(response.get("meta"))
    counts = as_dict(meta.get("tokens")) or as_dict(meta.get("billed_units"))
    return Usage(number(counts, "input_tokens"), number(counts, "output_tokens")) if counts else None


class CohereR:
    @staticmethod
    def read_request(request: dict, exchange: Exchange) -> None:
        if isinstance(request.get("preamble"), str) and request["preamble"]:
            exchange.messages.append(Message("system", request["preamble"]))
        for turn in [as_dict(t) for t in as_list(request.get("chat_history"))]:
            role = _COHERE_ROLES.get(str(turn.get("role", "")).upper(), str(turn.get("role", "")).lower())
            if role == "tool":
                exchange.messages.extend(_tool_results(turn.get("tool_results")))
                continue
            message = Message(role, str(turn.get("message") or ""), _cohere_calls(turn.get("tool_calls")))
            if message.text or message.tool_calls:
                exchange.messages.append(message)
        exchange.messages.extend(_tool_results(request.get("tool_results")))
        if isinstance(request.get("message"), str) and request["message"]:
            exchange.messages.append(Message("user", request["message"]))
        exchange.tools.extend(str(as_dict(t).get("name") or "?") for t in as_list(request.get("tools")))

    @staticmethod
    def read_response(events: list, exchange: Exchange) -> None:
        output = Output(exchange)
        for index, value in chunks(events, exchange):
            kind = value.get("event_type")
            whole = value if kind is None else as_dict(value.get("response")) if kind == "stream-end" else {}
            if kind == "text-generation":
                output.text(index, value.get("text"))
            calls = value.get("tool_calls") if kind == "tool-calls-generation" else None
            if whole:  # the answer, or the stream's end repeating what the stream gave
                if not exchange.text:
                    output.text(index, whole.get("text"))
                if not output.calls:
                    calls = whole.get("tool_calls")
            for position, call in enumerate(_cohere_calls(calls)):
                output.call(index, position, call.name, None, call.arguments)
            reason = value.get("finish_reason") or whole.get("finish_reason")
            if reason:
                exchange.finish_reason = str(reason)
            exchange.usage = _cohere_usage(whole) or exchange.usage
        output.finish()
