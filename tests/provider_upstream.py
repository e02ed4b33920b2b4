"""Stand-ins for providers whose wire formats tests/upstream.py does not speak: Cohere v2 chat,
Groq, Mistral, the Hugging Face Hub and its router, OpenAI's Responses API (for the Agents SDK)
and Gemini. Each answers what that provider's own SDK parses, streamed where the SDK streams.

The proxy reroutes every recorded host here (`vcr_upstream`) and keeps the public URL in the
cassette, so routes are told apart by path (and, for the two `/v1/chat/completions`, by model).
Whatever is not a route of its own goes to `Upstream` (OpenAI chat, Anthropic, traces...).
"""

from __future__ import annotations

import json

from .upstream import Upstream


def sse(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


# Cohere v2 chat (POST /v2/chat). Usage comes as billed units and tokens.
COHERE_USAGE = {"billed_units": {"input_tokens": 11, "output_tokens": 5},
                "tokens": {"input_tokens": 75, "output_tokens": 5}}
COHERE_CHAT = {"id": "c0ffee00-0000-4000-8000-000000000001", "finish_reason": "COMPLETE",
               "message": {"role": "assistant", "content": [{"type": "text", "text": "Hola, mundo!"}]},
               "usage": COHERE_USAGE}
COHERE_TEXT_STREAM = [
    sse({"id": "c0ffee00-0000-4000-8000-000000000002", "type": "message-start", "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
        "message-start"),
    sse({"type": "content-start", "index": 0,
         "delta": {"message": {"content": {"type": "text", "text": ""}}}}, "content-start"),
    sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hola"}}}},
        "content-delta"),
    sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": ", mundo!"}}}},
        "content-delta"),
    sse({"type": "content-end", "index": 0}, "content-end"),
    sse({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": COHERE_USAGE}},
        "message-end"),
    b"data: [DONE]\n\n",
]
COHERE_TOOL_STREAM = [
    sse({"id": "c0ffee00-0000-4000-8000-000000000003", "type": "message-start", "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
        "message-start"),
    sse({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look up the weather."}}},
        "tool-plan-delta"),
    sse({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "get_weather_abc123", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}}}}, "tool-call-start"),
    sse({"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": "{\"city\":"}}}}}, "tool-call-delta"),
    sse({"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": " \"Florence\"}"}}}}},
        "tool-call-delta"),
    sse({"type": "tool-call-end", "index": 0}, "tool-call-end"),
    sse({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "billed_units": {"input_tokens": 30, "output_tokens": 12},
        "tokens": {"input_tokens": 900, "output_tokens": 40}}}}, "message-end"),
    b"data: [DONE]\n\n",
]


# Groq (POST /openai/v1/chat/completions): OpenAI's chunks, usage under x_groq in the last one.
def groq_chunk(delta: dict, finish: str | None = None, x_groq: dict | None = None) -> bytes:
    data = {"id": "chatcmpl-groq-1", "object": "chat.completion.chunk", "created": 1758698524,
            "model": "llama-3.1-8b-instant", "system_fingerprint": "fp_groq_1",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if x_groq:
        data["x_groq"] = x_groq
    return sse(data)


GROQ_USAGE = {"queue_time": 0.05, "prompt_tokens": 42, "prompt_time": 0.002, "completion_tokens": 4,
              "completion_time": 0.003, "total_tokens": 46, "total_time": 0.005}
GROQ_STREAM = [
    groq_chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_01groqtest"}),
    groq_chunk({"content": "Fast"}),
    groq_chunk({"content": " answer."}),
    groq_chunk({}, finish="stop", x_groq={"id": "req_01groqtest", "usage": GROQ_USAGE}),
    b"data: [DONE]\n\n",
]
GROQ_COMPLETION = {
    "id": "chatcmpl-groq-2", "object": "chat.completion", "created": 1758698524,
    "model": "llama-3.1-8b-instant", "system_fingerprint": "fp_groq_1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Fast answer."},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": GROQ_USAGE, "x_groq": {"id": "req_01groqtest2"},
}


# Mistral (POST /v1/chat/completions with a mistral model).
MISTRAL_USAGE = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
MISTRAL_COMPLETION = {
    "id": "cmpl-mistral-1", "object": "chat.completion", "created": 1758698524,
    "model": "mistral-small-latest", "usage": MISTRAL_USAGE,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Bonjour le monde !", "tool_calls": None,
                             "prefix": False}}],
}


def mistral_chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    data = {"id": "cmpl-mistral-2", "object": "chat.completion.chunk", "created": 1758698524,
            "model": "mistral-small-latest",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        data["usage"] = usage
    return sse(data)


MISTRAL_STREAM = [
    mistral_chunk({"role": "assistant", "content": ""}),
    mistral_chunk({"content": "Bonjour"}),
    mistral_chunk({"content": " le monde !"}, finish="stop", usage=MISTRAL_USAGE),
    b"data: [DONE]\n\n",
]


# The Hugging Face Hub: which provider serves a model, then that provider through the router.
HF_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
HF_MODEL_INFO = {"_id": "66969d5bd0e3f8b2c6d3c4a1", "id": HF_MODEL, "inferenceProviderMapping": {
    "together": {"status": "live", "providerId": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
                 "task": "conversational"}}}
# What huggingface_hub fetches once a day (cached in HF_HOME) to name a calling agent.
HF_AGENT_HARNESSES = {"standardEnvVars": ["AI_AGENT", "AGENT"],
                      "harnesses": {"claude-code": {"envVars": {"CLAUDECODE": "1"}}}}
HF_COMPLETION = {
    "id": "o8HfTest", "object": "chat.completion", "created": 1758698524,
    "model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "prompt": [],
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Hello from Together.", "tool_calls": []}}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19},
}


# OpenAI's Responses API (POST /v1/responses), as the Agents SDK calls it: a function call first,
# then, once the call's output is sent back, the final message.
def _response(number: int, output: list, request: dict) -> dict:
    return {"id": f"resp_test_{number}", "object": "response", "created_at": 1758698524,
            "status": "completed", "model": request.get("model", "gpt-4.1"), "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0,
            "top_p": 1.0, "truncation": "disabled", "error": None, "incomplete_details": None,
            "instructions": request.get("instructions"), "metadata": {},
            "usage": {"input_tokens": 50 * number, "output_tokens": 10,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": 50 * number + 10}}


def responses_answer(request: dict) -> dict:
    items = request.get("input") if isinstance(request.get("input"), list) else []
    results = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    prompt = next((i.get("content") for i in items if isinstance(i, dict) and i.get("role") == "user"), "")
    city = str(prompt).rsplit(" ", 1)[-1].rstrip("?") or "Florence"
    if not results:
        return _response(1, [{"type": "function_call", "id": "fc_test_1", "call_id": "call_test_1",
                              "name": "get_weather", "arguments": json.dumps({"city": city}),
                              "status": "completed"}], request)
    return _response(2, [{"type": "message", "id": "msg_test_1", "role": "assistant",
                          "status": "completed", "content": [{
                              "type": "output_text", "annotations": [],
                              "text": f"The tool says: {results[-1].get('output')}"}]}], request)


# Gemini (generateContent, and streamGenerateContent?alt=sse).
def gemini_response(text: str, finish: bool = True) -> dict:
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    answer = {"candidates": [candidate], "modelVersion": "gemini-2.0-flash",
              "responseId": "gemini-test-1"}
    if finish:
        candidate["finishReason"] = "STOP"
        answer["usageMetadata"] = {"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9}
    return answer


GEMINI_STREAM = [b"data: " + json.dumps(gemini_response(t, finish=f)).encode() + b"\r\n\r\n"
                 for t, f in (("Ciao", False), (" dal", False), (" mondo.", True))]


class ProviderUpstream(Upstream):
    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if not await self._provider(scope, body, send):
            sent = False

            async def replay_body():
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await super().app(scope, replay_body, send)

    async def _provider(self, scope, body: bytes, send) -> bool:
        path, method = scope["path"], scope["method"]
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if not isinstance(request, dict):
            return False
        stream = bool(request.get("stream"))
        if path == "/v2/chat":
            if not stream:
                await self._json(send, 200, COHERE_CHAT)
            else:
                await self._stream(send, COHERE_TOOL_STREAM if request.get("tools") else COHERE_TEXT_STREAM)
        elif path == "/openai/v1/chat/completions":
            if stream:
                await self._stream(send, GROQ_STREAM)
            else:
                await self._json(send, 200, GROQ_COMPLETION)
        elif path == "/v1/chat/completions" and str(request.get("model", "")).startswith("mistral"):
            if stream:
                await self._stream(send, MISTRAL_STREAM)
            else:
                await self._json(send, 200, MISTRAL_COMPLETION)
        elif method == "GET" and path == f"/api/models/{HF_MODEL}":
            await self._json(send, 200, HF_MODEL_INFO)
        elif method == "GET" and path == "/api/agent-harnesses":
            await self._json(send, 200, HF_AGENT_HARNESSES)
        elif path == "/together/v1/chat/completions":
            await self._json(send, 200, HF_COMPLETION)
        elif path == "/v1/responses":
            await self._json(send, 200, responses_answer(request))
        elif path.startswith("/v1beta/models/") and path.endswith(":generateContent"):
            await self._json(send, 200, gemini_response("Ciao dal mondo."))
        elif path.startswith("/v1beta/models/") and path.endswith(":streamGenerateContent"):
            await self._stream(send, GEMINI_STREAM)
        else:
            return False
        self.requests.append({"path": path, "query": scope["query_string"].decode(),
                              "headers": headers, "body": body, "http_version": scope["http_version"]})
        return True
