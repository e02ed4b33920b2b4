"""The reading commands on the API families added to readers/: Bedrock Converse (streamed and
not), Cohere v2 chat (streamed and not) and Groq's usage in its streams, through `show`, `ls`,
`report` and `diff` as a user runs them."""

from __future__ import annotations

import json

from .inspect_helpers import CHAT_REQUEST, exchange, sse, write_cassette
from .test_cli import _cli
from .upstream import BEDROCK_STREAM, aws_frame

CONVERSE = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
COHERE = "https://api.cohere.com/v2/chat"
WEATHER = {"name": "weather", "parameters": {"type": "object"}}

CONVERSE_REQUEST = {
    "system": [{"text": "Be brief"}],
    "messages": [
        {"role": "user", "content": [{"text": "Weather in Rome?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "weather",
                                                       "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "21 C"}]}}]},
    ],
    "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {}}}}]},
}
CONVERSE_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "The tool said 21."}}},
        {"text": "It is 21 C in Rome."},
        {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Milan"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 40, "outputTokens": 12, "totalTokens": 52, "cacheReadInputTokens": 8},
}
CONVERSE_STREAM = (BEDROCK_STREAM[:4] + [
    aws_frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "t3", "name": "weather"}}}),
    aws_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}),
    aws_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Oslo"}'}}}),
    aws_frame("contentBlockStop", {"contentBlockIndex": 1})] + BEDROCK_STREAM[4:])

COHERE_REQUEST = {"model": "command-a-03-2025", "stream": True, "tools": [{"type": "function", "function": WEATHER}],
                  "messages": [{"role": "system", "content": "Be brief"},
                               {"role": "user", "content": "Weather in Rome?"}]}
COHERE_STREAM = [
    {"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant"}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look it up."}}},
    {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "w1", "type": "function", "function": {"name": "weather", "arguments": ""}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": '{"city":'}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": ' "Rome"}'}}}}},
    {"type": "tool-call-end", "index": 0},
    {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Checking"}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": " now."}}}},
    {"type": "content-end", "index": 0},
    {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "billed_units": {"input_tokens": 30, "output_tokens": 9},
        "tokens": {"input_tokens": 612, "output_tokens": 41}}}},
]
COHERE_ANSWER = {"id": "c2", "finish_reason": "COMPLETE",
                 "message": {"role": "assistant", "content": [{"type": "text", "text": "It is 21 C."}]},
                 "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 4},
                           "tokens": {"input_tokens": 70, "output_tokens": 6}}}
GROQ_STREAM = [
    {"id": "g", "model": "llama-3.3-70b-versatile", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
    {"id": "g", "model": "llama-3.3-70b-versatile", "choices": [{"index": 0, "delta": {},
                                                                "finish_reason": "stop"}],
     "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}},
]


def _cohere_sse(events) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def _cassette(folder, city="Oslo"):
    frames = list(CONVERSE_STREAM)
    frames[6] = aws_frame("contentBlockDelta", {"contentBlockIndex": 1,
                                                "delta": {"toolUse": {"input": f'"{city}"}}'}}})
    folder.mkdir(exist_ok=True)
    return write_cassette(folder / "families.yaml", [
        exchange(0, CONVERSE, CONVERSE_REQUEST, json.dumps(CONVERSE_ANSWER)),
        exchange(1, CONVERSE + "-stream", CONVERSE_REQUEST, b"".join(frames),
                 "application/vnd.amazon.eventstream"),
        exchange(2, COHERE, COHERE_REQUEST, _cohere_sse(COHERE_STREAM), "text/event-stream"),
        exchange(3, COHERE, {**COHERE_REQUEST, "stream": False}, json.dumps(COHERE_ANSWER)),
        exchange(4, "https://api.groq.com/openai/v1/chat/completions",
                 {**CHAT_REQUEST, "model": "llama-3.3-70b-versatile"}, sse(*GROQ_STREAM, "[DONE]"),
                 "text/event-stream"),
    ])


def _show(path) -> list[dict]:
    result = _cli("show", "--json", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)["interactions"]


def test_show_reads_bedrock_converse_streamed_and_not(tmp_path):
    converse, stream = _show(_cassette(tmp_path))[:2]
    for item in (converse, stream):
        assert item["family"] == "bedrock-converse"
        assert item["model"] == "anthropic.claude-3-haiku-20240307-v1:0"  # from the URL
        assert item["tools"] == ["weather"]
        assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant", "tool"]
        assert item["messages"][2]["tool_calls"][0]["arguments"] == {"city": "Rome"}
        assert item["messages"][3]["text"] == "21 C"
    assert converse["text"] == "It is 21 C in Rome." and converse["reasoning"] == "The tool said 21."
    assert converse["tool_calls"][0]["arguments"] == {"city": "Milan"}
    assert converse["finish_reason"] == "tool_use"
    assert (converse["usage"]["input_tokens"], converse["usage"]["output_tokens"],
            converse["usage"]["cached_tokens"]) == (40, 12, 8)
    assert stream["streamed"] and stream["text"] == "Hello there!"
    assert stream["tool_calls"] == [{"name": "weather", "id": "t3", "arguments": {"city": "Oslo"},
                                     "raw": '{"city": "Oslo"}'}]
    assert stream["finish_reason"] == "end_turn"
    assert (stream["usage"]["input_tokens"], stream["usage"]["output_tokens"]) == (9, 3)
    assert not stream["problems"]
    text = _cli("show", str(_cassette(tmp_path))).stdout
    assert "(Bedrock Converse)" in text and '< tool call: weather({"city": "Oslo"})' in text


def test_show_reads_cohere_v2_chat_streamed_and_not(tmp_path):
    stream, whole = _show(_cassette(tmp_path))[2:4]
    assert stream["family"] == whole["family"] == "cohere"
    assert stream["model"] == "command-a-03-2025" and stream["tools"] == ["weather"]
    assert stream["text"] == "Checking now." and stream["reasoning"] == "I will look it up."
    assert stream["tool_calls"][0]["name"] == "weather"
    assert stream["tool_calls"][0]["arguments"] == {"city": "Rome"}
    assert stream["finish_reason"] == "TOOL_CALL"
    assert (stream["usage"]["input_tokens"], stream["usage"]["output_tokens"]) == (612, 41)
    assert whole["text"] == "It is 21 C." and whole["finish_reason"] == "COMPLETE"
    assert (whole["usage"]["input_tokens"], whole["usage"]["output_tokens"]) == (70, 6)


def test_show_reads_groq_usage_from_x_groq(tmp_path):
    groq = _show(_cassette(tmp_path))[4]
    assert groq["text"] == "Hi" and groq["finish_reason"] == "stop"
    assert (groq["usage"]["input_tokens"], groq["usage"]["output_tokens"]) == (11, 2)


def test_ls_counts_the_models_and_tokens_of_every_family(tmp_path):
    result = _cli("ls", str(_cassette(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "anthropic.claude-3-haiku-20240307-v1:0" in result.stdout
    # 40+12, 9+3, 612+41, 70+6, 11+2: every interaction's tokens, in and out
    assert "742" in result.stdout and "64" in result.stdout, result.stdout


def test_report_and_diff_read_them(tmp_path):
    old = _cassette(tmp_path / "old")
    new = _cassette(tmp_path / "new", city="Bergen")
    report = _cli("report", "-o", str(tmp_path / "report.html"), str(old))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert "Bedrock Converse" in page and "Cohere chat" in page and "Checking now." in page
    diff = _cli("diff", str(old), str(new))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert '#1 tool weather argument city: "Oslo" -> "Bergen"' in diff.stdout, diff.stdout
