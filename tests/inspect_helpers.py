"""An extraction of the answer in each API family that is independent of proxy_addon.conversation:
it reads the events its own simple way, so the tests compare two readings, not one with itself."""

from __future__ import annotations

import base64
import json
import re

from .conftest import CORPUS

# (cassette, family) per API family and host the reader must know, streamed and not.
CASES = [
    ("seed-dialect/TestOpenRouterCommon/tool_streaming_kimi-k2_fireworks.yaml", "openai-chat"),
    ("seed-dialect/TestOpenRouterCommon/tool_streaming_kimi-k2_together.yaml", "openai-chat"),
    ("seed-dialect/TestOpenAICommon/multi_tool_gpt-4o-mini.yaml", "openai-chat"),
    ("seed-dialect/TestOpenAICommon/tool_streaming_gpt-5.yaml", "openai-chat"),
    ("compact-indent-2/TestOpenAICompatibleCommon/groq-kimi-k2/tool_streaming.yaml", "openai-chat"),
    ("compact-indent-2/TestOpenAICompatibleCommon/xai-grok-4-fast/tool_streaming.yaml", "openai-chat"),
    ("compact-indent-2/TestOpenAICompatibleCommon/huggingface-kimi-k2/tool.yaml", "openai-chat"),
    ("compact-indent-2/TestOpenRouterCommon/glm/tool_streaming.yaml", "openai-chat"),
    ("go-vcr-default/providers/deepseek/testdata/TestClient/Scoreboard/deepseek-v4-flash/"
     "GenStream-Tools-ToolBias-USA.yaml", "openai-chat"),
    ("go-vcr-default/providers/cerebras/testdata/TestClient/Scoreboard/gemma-4-31b/"
     "GenStream-Tools-ToolBias-Canada.yaml", "openai-chat"),
    ("compact-indent-2/TestOpenAIResponsesCommon/openai-gpt-4o/simple.yaml", "openai-responses"),
    ("compact-indent-2/TestAzureResponsesCommon/azure-gpt-5-mini/tool_streaming.yaml", "openai-responses"),
    ("seed-dialect/TestAnthropicCommon/tool_claude-sonnet-4.yaml", "anthropic"),
    ("seed-dialect/TestAnthropicCommon/multi_tool_streaming_claude-sonnet-4.yaml", "anthropic"),
    ("compact-indent-2/TestBedrockCommon/bedrock-anthropic-claude-opus-4-6/tool_streaming.yaml", "anthropic"),
    ("seed-dialect/TestGoogleCommon/tool_gemini-2.5-flash.yaml", "gemini"),
    ("seed-dialect/TestGoogleCommon/tool_streaming_gemini-2.5-flash.yaml", "gemini"),
    ("compact-indent-2/TestGoogleCommon/vertex-gemini-2-5-pro/multi_tool_streaming.yaml", "gemini"),
]
SEED = CORPUS / CASES[0][0]


def _data_lines(body: str) -> list:
    found = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            found.append(json.loads(line[5:]))
    return found


def _documents(body) -> list:
    if isinstance(body, bytes):  # Bedrock: each frame's JSON holds {"bytes": base64 of an event}
        return [json.loads(base64.b64decode(m)) for m in re.findall(rb'\{"bytes":"([A-Za-z0-9+/=]+)"', body)]
    if re.search(r"^data:", body, re.M):
        return _data_lines(body)
    return [json.loads(body)]


def expected(body, family: str) -> tuple[str, list[tuple[str, object]]]:
    """(assistant text, [(tool name, parsed arguments)]) of one response body."""
    text, calls = "", {}
    for doc in _documents(body):
        if family == "openai-chat":
            for choice in doc.get("choices", []):
                part = choice.get("delta") or choice.get("message") or {}
                text += part.get("content") or ""
                for n, call in enumerate(part.get("tool_calls") or []):
                    entry = calls.setdefault(call.get("index", n), ["", ""])
                    entry[0] += call["function"].get("name") or ""
                    entry[1] += call["function"].get("arguments") or ""
        elif family == "openai-responses":
            if doc.get("type") == "response.output_text.delta":
                text += doc["delta"]
            elif doc.get("type") == "response.output_item.done" and doc["item"]["type"] == "function_call":
                calls[len(calls)] = [doc["item"]["name"], doc["item"]["arguments"]]
            elif doc.get("object") == "response":
                for item in doc["output"]:
                    if item["type"] == "message":
                        text += "".join(c["text"] for c in item["content"])
                    elif item["type"] == "function_call":
                        calls[len(calls)] = [item["name"], item["arguments"]]
        elif family == "anthropic":
            blocks = doc.get("content") if doc.get("type") == "message" else []
            for block in blocks:
                if block["type"] == "text":
                    text += block["text"]
                elif block["type"] == "tool_use":
                    calls[len(calls)] = [block["name"], json.dumps(block["input"])]
            if doc.get("type") == "content_block_start" and doc["content_block"]["type"] == "tool_use":
                calls[doc["index"]] = [doc["content_block"]["name"], ""]
            if doc.get("type") == "content_block_delta":
                if doc["delta"]["type"] == "text_delta":
                    text += doc["delta"]["text"]
                elif doc["delta"]["type"] == "input_json_delta":
                    calls[doc["index"]][1] += doc["delta"]["partial_json"]
        elif family == "gemini":
            for part in doc["candidates"][0]["content"].get("parts", []):
                if "functionCall" in part:
                    calls[len(calls)] = [part["functionCall"]["name"], json.dumps(part["functionCall"]["args"])]
                elif not part.get("thought"):
                    text += part.get("text", "")
    return text, [(name, json.loads(arguments or "{}")) for name, arguments in calls.values()]


# ---------------------------------------------------------------------------------------------
# Hand-made cassettes for the readers' edge cases


def exchange(number: int, url: str, request, body, content_type="application/json", code=200,
             method="POST"):
    """One interaction: `request` as JSON (or a string as is), the response body as given."""
    from proxy_addon.cassette import Interaction, Request, Response

    return Interaction(number, Request(body=request if isinstance(request, (str, bytes)) else json.dumps(request),
                                       url=url, method=method,
                                       headers={"Content-Type": ["application/json"]}),
                       Response(body=body, headers={"Content-Type": [content_type]} if content_type else {},
                                status=f"{code} {'OK' if code == 200 else 'Error'}", code=code,
                                duration=1_000_000))


def write_cassette(path, interactions):
    from proxy_addon.cassette import Cassette

    path.write_text(Cassette(list(interactions)).dumps())
    return path


def sse(*events, end="\n\n") -> str:
    return "".join("data: " + (e if isinstance(e, str) else json.dumps(e)) + end for e in events)


CHAT = "https://openrouter.ai/api/v1/chat/completions"
CHAT_REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
