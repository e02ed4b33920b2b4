"""Gemini generateContent, streamed or not, and Vertex: a request's contents and function
declarations, a response's candidates."""

from __future__ import annotations

import json

from ..inspection import Usage
from .model import Exchange, Message, Output, as_list, error_message, number, parts_text, tool_call


def read_request(request: dict, exchange: Exchange) -> None:
    system = request.get("systemInstruction") or request.get("system_instruction")
    if isinstance(system, dict):
        exchange.messages.append(Message("system", parts_text(system.get("parts"))))
    for item in as_list(request.get("contents")):
        if not isinstance(item, dict):
            continue
        role = "assistant" if item.get("role") == "model" else str(item.get("role") or "user")
        message = Message(role)
        texts = []
        for part in as_list(item.get("parts")):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                message.tool_calls.append(tool_call(call.get("name"), call.get("id"), call.get("args")))
            elif isinstance(part.get("functionResponse"), dict):
                answer = part["functionResponse"]
                exchange.messages.append(Message("tool", json.dumps(answer.get("response"),
                                                                    ensure_ascii=False),
                                                 tool_call_id=str(answer.get("id") or answer.get("name") or "")))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
            elif not part.get("thought"):
                texts.append(f"[{next((k for k in part if k != 'thoughtSignature'), 'part')}]")
        message.text = "\n".join(texts)
        if message.text or message.tool_calls:
            exchange.messages.append(message)
    for tool in as_list(request.get("tools")):
        if isinstance(tool, dict):
            declarations = tool.get("functionDeclarations") or tool.get("function_declarations")
            if isinstance(declarations, list):
                exchange.tools.extend(str(d.get("name", "?")) for d in declarations if isinstance(d, dict))
            else:
                exchange.tools.extend(str(k) for k in tool)


def read_response(events: list, exchange: Exchange) -> None:
    output = Output(exchange)
    for index, _, value in events:
        if not isinstance(value, dict):
            continue
        exchange.model = str(value.get("modelVersion") or exchange.model)
        block = value.get("usageMetadata")
        if isinstance(block, dict) and ("promptTokenCount" in block or "candidatesTokenCount" in block
                                        or "totalTokenCount" in block):
            output_tokens = number(block, "candidatesTokenCount")
            thoughts = number(block, "thoughtsTokenCount")
            input_tokens = number(block, "promptTokenCount")
            if "promptTokenCount" not in block:  # some models leave it out: the rest of the total
                input_tokens = max(0, number(block, "totalTokenCount") - output_tokens - thoughts)
            exchange.usage = Usage(input_tokens, output_tokens, number(block, "cachedContentTokenCount"),
                                   thoughts)
        for candidate in as_list(value.get("candidates")):
            if not isinstance(candidate, dict) or candidate.get("index", 0) != 0:
                continue
            if candidate.get("finishReason"):
                exchange.finish_reason = str(candidate["finishReason"])
            content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
            for part in as_list(content.get("parts")):
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("functionCall"), dict):
                    call = part["functionCall"]
                    # Each part is a whole call: a stream never splits one across events.
                    output.call(index, len(output.calls), call.get("name"), call.get("id"),
                                call.get("args") if call.get("args") is not None else {})
                elif part.get("thought"):
                    output.reasoning(index, part.get("text"))
                else:
                    output.text(index, part.get("text"))
        if "error" in value:
            exchange.error = error_message(value)
    output.finish()

