"""The reading commands on Bedrock's InvokeModel and InvokeModelWithResponseStream for the
models that are not Anthropic's: Amazon Nova (messages-v1), Meta Llama, Mistral AI (text and
chat), Amazon Titan Text and Cohere Command R, streamed (AWS event-stream frames, each a chunk of
`{"bytes": base64}`) and not, through `show`, `ls`, `report` and `diff` as a user runs them; the
bodies are the shapes AWS's model-parameter pages document. And `report` and `diff` on Cohere
v2 and Groq, which test_readers.py reads with `show` and `ls`."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import quote

from .inspect_helpers import CHAT_REQUEST, exchange, sse, write_cassette
from .test_cli import _cli
from .test_readers import COHERE, COHERE_ANSWER, COHERE_REQUEST, COHERE_STREAM, GROQ_STREAM, _cohere_sse
from .upstream import aws_frame

EVENTSTREAM = "application/vnd.amazon.eventstream"
NOVA = "us.amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-70b-instruct-v1:0"
MISTRAL = "mistral.mistral-large-2402-v1:0"
TITAN = "amazon.titan-text-express-v1"
COMMAND_R = "cohere.command-r-plus-v1:0"


def _url(model: str, stream: bool = False) -> str:
    """As botocore sends it: the model id a path label, its colon (an ARN's slashes) escaped."""
    return (f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{quote(model, safe='')}/"
            + ("invoke-with-response-stream" if stream else "invoke"))


def _chunks(*payloads, metrics: dict | None = None) -> bytes:
    """An InvokeModelWithResponseStream body: one `chunk` frame per payload, Bedrock's
    invocation metrics added to the last."""
    payloads = [dict(p) for p in payloads]
    if metrics:
        payloads[-1]["amazon-bedrock-invocationMetrics"] = {**metrics, "invocationLatency": 820,
                                                            "firstByteLatency": 240}
    return b"".join(aws_frame("chunk", {"bytes": base64.b64encode(json.dumps(p).encode()).decode()})
                    for p in payloads)


def _metrics(inputs: int, outputs: int) -> dict:
    return {"inputTokenCount": inputs, "outputTokenCount": outputs}


# Amazon Nova: the Converse shapes, each stream chunk one event under its name.
NOVA_REQUEST = {
    "schemaVersion": "messages-v1",
    "system": [{"text": "Be brief"}],
    "messages": [
        {"role": "user", "content": [{"text": "Weather in Rome?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "weather",
                                                       "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "21 C"}]}}]},
    ],
    "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}}]},
    "inferenceConfig": {"maxTokens": 300},
}
NOVA_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [
        {"text": "<thinking>Milan next.</thinking>"},
        {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Milan"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 40, "outputTokens": 12, "totalTokens": 52},
}


def _nova_stream(city: str = "Oslo") -> bytes:
    return _chunks(
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "It is 21 C"}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": " in Rome."}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t3", "name": "weather"}},
                               "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city": '}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": f'"{city}"}}'}}, "contentBlockIndex": 1}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 45, "outputTokens": 20}, "metrics": {}, "trace": {}}},
        metrics=_metrics(45, 20))


# Meta Llama: a prompt in Llama 3's chat template; the generation, its counts and stop reason.
LLAMA_PROMPT = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nSay hello<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
LLAMA_REQUEST = {"prompt": LLAMA_PROMPT, "max_gen_len": 128, "temperature": 0.5}
LLAMA_ANSWER = {"generation": "Hello there!", "prompt_token_count": 21, "generation_token_count": 4,
                "stop_reason": "stop"}


def _llama_stream(last: str = " there!") -> bytes:
    return _chunks(
        {"generation": "Hello", "prompt_token_count": 21, "generation_token_count": 1, "stop_reason": None},
        {"generation": last, "prompt_token_count": None, "generation_token_count": 3, "stop_reason": None},
        {"generation": "", "prompt_token_count": None, "generation_token_count": 4, "stop_reason": "stop"},
        metrics=_metrics(21, 4))


# Mistral AI: text completion, and chat with tools (OpenAI's request shape, its own answer).
MISTRAL_TEXT_REQUEST = {"prompt": "<s>[INST] Say hello [/INST]", "max_tokens": 100}
MISTRAL_TEXT_ANSWER = {"outputs": [{"text": "Hello!", "stop_reason": "stop"}]}
MISTRAL_TEXT_STREAM = _chunks({"outputs": [{"text": "Hel", "stop_reason": None}]},
                              {"outputs": [{"text": "lo!", "stop_reason": "stop"}]},
                              metrics=_metrics(11, 3))
MISTRAL_CHAT_REQUEST = {
    "messages": [{"role": "system", "content": "Be brief"},
                 {"role": "user", "content": "Weather in Rome?"},
                 {"role": "assistant", "content": "", "tool_calls": [
                     {"id": "m1", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}]},
                 {"role": "tool", "tool_call_id": "m1", "content": "21 C"}],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather",
                                                "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "max_tokens": 200,
}
MISTRAL_CHAT_ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [
    {"id": "m2", "function": {"name": "weather", "arguments": '{"city": "Milan"}'}}]}, "stop_reason": "tool_calls"}]}


def _mistral_chat_stream(city: str = "Oslo") -> bytes:
    return _chunks(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking"}, "stop_reason": None}]},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": " Oslo."}, "stop_reason": None}]},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": "m3", "function": {"name": "weather", "arguments": json.dumps({"city": city})}}]},
            "stop_reason": "tool_calls"}]},
        metrics=_metrics(60, 18))


# Amazon Titan Text: inputText; results, or stream chunks of outputText.
TITAN_REQUEST = {"inputText": "User: Say hello\nBot:", "textGenerationConfig": {"maxTokenCount": 100}}
TITAN_ANSWER = {"inputTextTokenCount": 7, "results": [
    {"tokenCount": 3, "outputText": " Hello there!", "completionReason": "FINISH"}]}
TITAN_STREAM = _chunks(
    {"outputText": " Hello", "index": 0, "totalOutputTextTokenCount": 2, "completionReason": None,
     "inputTextTokenCount": 7},
    {"outputText": " there!", "index": 0, "totalOutputTextTokenCount": 3, "completionReason": "FINISH",
     "inputTextTokenCount": None},
    metrics=_metrics(7, 3))


# Cohere Command R: message, chat_history, tools; text and tool_calls, or v1 stream events.
COMMAND_R_REQUEST = {
    "preamble": "Be brief",
    "chat_history": [{"role": "USER", "message": "Weather in Rome?"},
                     {"role": "CHATBOT", "message": "Checking.",
                      "tool_calls": [{"name": "weather", "parameters": {"city": "Rome"}}]}],
    "message": "And in Milan?",
    "tools": [{"name": "weather", "description": "Weather",
               "parameter_definitions": {"city": {"type": "str", "required": True}}}],
    "tool_results": [{"call": {"name": "weather", "parameters": {"city": "Rome"}},
                      "outputs": [{"temperature": "21 C"}]}],
}
COMMAND_R_ANSWER = {"response_id": "r1", "generation_id": "g1", "text": "I will look up Milan.",
                    "finish_reason": "COMPLETE", "chat_history": [],
                    "tool_calls": [{"name": "weather", "parameters": {"city": "Milan"}}],
                    "meta": {"billed_units": {"input_tokens": 70, "output_tokens": 9}}}


def _command_r_stream(city: str = "Oslo") -> bytes:
    calls = [{"name": "weather", "parameters": {"city": city}}]
    return _chunks(
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g2"},
        {"is_finished": False, "event_type": "text-generation", "text": "Looking"},
        {"is_finished": False, "event_type": "text-generation", "text": " it up."},
        {"is_finished": False, "event_type": "tool-calls-generation", "tool_calls": calls},
        {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
         "response": {"response_id": "r2", "text": "Looking it up.", "tool_calls": calls}},
        metrics=_metrics(80, 14))


def _cassette(folder, city: str = "Oslo", last: str = " there!"):
    folder.mkdir(exist_ok=True)
    return write_cassette(folder / "invoke.yaml", [
        exchange(0, _url(NOVA), NOVA_REQUEST, json.dumps(NOVA_ANSWER)),
        exchange(1, _url(NOVA, True), NOVA_REQUEST, _nova_stream(city), EVENTSTREAM),
        exchange(2, _url(LLAMA), LLAMA_REQUEST, json.dumps(LLAMA_ANSWER)),
        exchange(3, _url(LLAMA, True), LLAMA_REQUEST, _llama_stream(last), EVENTSTREAM),
        exchange(4, _url(MISTRAL), MISTRAL_TEXT_REQUEST, json.dumps(MISTRAL_TEXT_ANSWER)),
        exchange(5, _url(MISTRAL, True), MISTRAL_TEXT_REQUEST, MISTRAL_TEXT_STREAM, EVENTSTREAM),
        exchange(6, _url(MISTRAL), MISTRAL_CHAT_REQUEST, json.dumps(MISTRAL_CHAT_ANSWER)),
        exchange(7, _url(MISTRAL, True), MISTRAL_CHAT_REQUEST, _mistral_chat_stream(city), EVENTSTREAM),
        exchange(8, _url(TITAN), TITAN_REQUEST, json.dumps(TITAN_ANSWER)),
        exchange(9, _url(TITAN, True), TITAN_REQUEST, TITAN_STREAM, EVENTSTREAM),
        exchange(10, _url(COMMAND_R), COMMAND_R_REQUEST, json.dumps(COMMAND_R_ANSWER)),
        exchange(11, _url(COMMAND_R, True), COMMAND_R_REQUEST, _command_r_stream(city), EVENTSTREAM),
    ])


def _show(path) -> list[dict]:
    result = _cli("show", "--json", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)["interactions"]


def _tokens(item: dict) -> tuple[int, int]:
    return item["usage"]["input_tokens"], item["usage"]["output_tokens"]


def _calls(item: dict) -> list[tuple]:
    return [(c["name"], c["id"], c["arguments"]) for c in item["tool_calls"]]


def test_show_reads_amazon_nova_streamed_and_not(tmp_path):
    whole, stream = _show(_cassette(tmp_path))[:2]
    for item in (whole, stream):
        assert item["family"] == "bedrock-nova" and not item["problems"]
        assert item["model"] == NOVA  # from the URL, unescaped
        assert item["tools"] == ["weather"]
        assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant", "tool"]
        assert item["messages"][2]["tool_calls"][0]["arguments"] == {"city": "Rome"}
        assert item["messages"][3]["text"] == "21 C" and item["messages"][3]["tool_call_id"] == "t1"
        assert item["finish_reason"] == "tool_use"
    assert whole["text"] == "<thinking>Milan next.</thinking>"
    assert _calls(whole) == [("weather", "t2", {"city": "Milan"})] and _tokens(whole) == (40, 12)
    assert stream["streamed"] and stream["events"] == 10
    assert stream["text"] == "It is 21 C in Rome."
    assert _calls(stream) == [("weather", "t3", {"city": "Oslo"})] and _tokens(stream) == (45, 20)
    text = _cli("show", str(_cassette(tmp_path))).stdout
    assert f"model: {NOVA} (Bedrock InvokeModel, Amazon Nova), tools: weather" in text
    assert '< tool call: weather({"city": "Oslo"})  [t3]' in text


def test_show_reads_meta_llama_streamed_and_not(tmp_path):
    whole, stream = _show(_cassette(tmp_path))[2:4]
    for item in (whole, stream):
        assert item["family"] == "bedrock-llama" and item["model"] == LLAMA and not item["problems"]
        # The prompt's chat template, split at its role headers
        assert [(m["role"], m["text"]) for m in item["messages"]] == [("system", "Be brief"),
                                                                       ("user", "Say hello")]
        assert item["text"] == "Hello there!" and item["finish_reason"] == "stop"
        assert item["tool_calls"] == [] and item["tools"] == []
    assert _tokens(whole) == (21, 4)
    assert stream["streamed"] and _tokens(stream) == (21, 4)  # the largest of the chunks' counts


def test_show_reads_mistral_text_and_chat_streamed_and_not(tmp_path):
    text, text_stream, chat, chat_stream = _show(_cassette(tmp_path))[4:8]
    for item in (text, text_stream, chat, chat_stream):
        assert item["family"] == "bedrock-mistral" and item["model"] == MISTRAL and not item["problems"]
    for item in (text, text_stream):
        assert item["messages"] == [{"role": "user", "text": "<s>[INST] Say hello [/INST]",
                                     "tool_calls": [], "tool_call_id": ""}]
        assert item["text"] == "Hello!" and item["finish_reason"] == "stop"
    assert _tokens(text) == (0, 0)  # a non-streamed body counts nothing, and has no metrics
    assert _tokens(text_stream) == (11, 3)  # Bedrock's invocation metrics
    for item in (chat, chat_stream):
        assert item["tools"] == ["weather"]
        assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant", "tool"]
        assert item["messages"][2]["tool_calls"][0]["arguments"] == {"city": "Rome"}
        assert item["messages"][3]["tool_call_id"] == "m1"
        assert item["finish_reason"] == "tool_calls"
    assert chat["text"] == "" and _calls(chat) == [("weather", "m2", {"city": "Milan"})]
    assert chat_stream["text"] == "Checking Oslo."
    assert _calls(chat_stream) == [("weather", "m3", {"city": "Oslo"})] and _tokens(chat_stream) == (60, 18)


def test_show_reads_amazon_titan_text_streamed_and_not(tmp_path):
    whole, stream = _show(_cassette(tmp_path))[8:10]
    for item in (whole, stream):
        assert item["family"] == "bedrock-titan" and item["model"] == TITAN and not item["problems"]
        assert [(m["role"], m["text"]) for m in item["messages"]] == [("user", "User: Say hello\nBot:")]
        assert item["text"] == " Hello there!" and item["finish_reason"] == "FINISH"
        assert _tokens(item) == (7, 3)
    assert stream["streamed"] and stream["events"] == 2


def test_show_reads_cohere_command_r_streamed_and_not(tmp_path):
    whole, stream = _show(_cassette(tmp_path))[10:12]
    for item in (whole, stream):
        assert item["family"] == "bedrock-cohere" and item["model"] == COMMAND_R and not item["problems"]
        assert item["tools"] == ["weather"]
        assert [(m["role"], m["text"]) for m in item["messages"]] == [
            ("system", "Be brief"), ("user", "Weather in Rome?"), ("assistant", "Checking."),
            ("tool", '[{"temperature": "21 C"}]'), ("user", "And in Milan?")]
        assert item["messages"][2]["tool_calls"][0]["arguments"] == {"city": "Rome"}
        assert item["finish_reason"] == "COMPLETE"
    assert whole["text"] == "I will look up Milan." and _calls(whole) == [("weather", "", {"city": "Milan"})]
    assert _tokens(whole) == (70, 9)  # meta.billed_units
    # The stream's text once (stream-end repeats the whole response), usage from the metrics
    assert stream["text"] == "Looking it up." and _calls(stream) == [("weather", "", {"city": "Oslo"})]
    assert _tokens(stream) == (80, 14)


def test_command_r_takes_from_the_stream_end_only_what_the_stream_did_not_give(tmp_path):
    calls = [{"name": "weather", "parameters": {"city": "Oslo"}}]
    body = _chunks({"event_type": "text-generation", "text": "Looking it up."},
                   {"event_type": "stream-end", "finish_reason": "COMPLETE",
                    "response": {"text": "Looking it up.", "tool_calls": calls,
                                 "meta": {"billed_units": {"input_tokens": 8, "output_tokens": 5}}}})
    path = write_cassette(tmp_path / "end.yaml", [
        exchange(0, _url(COMMAND_R, True), COMMAND_R_REQUEST, body, EVENTSTREAM)])
    item = _show(path)[0]
    assert item["text"] == "Looking it up." and _calls(item) == [("weather", "", {"city": "Oslo"})]
    assert _tokens(item) == (8, 5) and item["finish_reason"] == "COMPLETE"


def test_usage_in_the_body_wins_over_the_invocation_metrics(tmp_path):
    body = _chunks({"generation": "Hi", "prompt_token_count": 5, "generation_token_count": 1,
                    "stop_reason": "stop"}, metrics=_metrics(500, 100))
    path = write_cassette(tmp_path / "one.yaml", [exchange(0, _url(LLAMA, True), LLAMA_REQUEST, body, EVENTSTREAM)])
    assert _tokens(_show(path)[0]) == (5, 1)
    body = _chunks({"generation": "Hi", "stop_reason": "stop"}, metrics=_metrics(500, 100))
    path = write_cassette(tmp_path / "two.yaml", [exchange(0, _url(LLAMA, True), LLAMA_REQUEST, body, EVENTSTREAM)])
    assert _tokens(_show(path)[0]) == (500, 100)


def test_ls_counts_the_models_and_tokens_of_invoke_model(tmp_path):
    result = _cli("ls", str(_cassette(tmp_path)))
    assert result.returncode == 0, result.stderr
    for model in (NOVA, LLAMA, MISTRAL, TITAN, COMMAND_R):
        assert model in result.stdout, result.stdout
    # Nova 40+45 in, 12+20 out; Llama 21+21, 4+4; Mistral 0+11+0+60, 0+3+0+18; Titan 7+7, 3+3;
    # Command R 70+80, 9+14
    assert "6/12" in result.stdout and "362/90" in result.stdout, result.stdout


def test_report_reads_invoke_model(tmp_path):
    path = _cassette(tmp_path)
    report = _cli("report", "-o", str(tmp_path / "report.html"), str(path))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    page = (tmp_path / "report.html").read_text()
    for name in ("Amazon Nova", "Meta Llama", "Mistral AI", "Amazon Titan Text", "Cohere Command R"):
        assert f"Bedrock InvokeModel, {name}" in page
    for text in ("It is 21 C in Rome.", "Hello there!", "Checking Oslo.", "Looking it up."):
        assert text in page
    assert "weather({&quot;city&quot;: &quot;Oslo&quot;})" in page
    assert "362 tokens in, 90 tokens out" in page
    assert "tokens 45 in, 20 out" in page and "tokens 80 in, 14 out" in page
    assert "unknown API shape" not in page


def test_diff_reads_invoke_model(tmp_path):
    old = _cassette(tmp_path / "old")
    same = _cli("diff", str(old), str(_cassette(tmp_path / "same")))
    assert same.returncode == 0 and same.stdout.splitlines() == ["same: 1 cassette compared"], same.stdout
    wording = _cli("diff", str(old), str(_cassette(tmp_path / "wording", last=" you!")))
    assert wording.returncode == 0, wording.stdout + wording.stderr
    assert wording.stdout.splitlines() == ["#3 text: changed (12 -> 10 characters)", "wording: 1 wording"]
    behaviour = _cli("diff", str(old), str(_cassette(tmp_path / "behaviour", city="Bergen")))
    assert behaviour.returncode == 1, behaviour.stdout + behaviour.stderr
    for number in (1, 7, 11):  # Nova, Mistral chat, Command R: their streamed tool calls
        assert f'#{number} tool weather argument city: "Oslo" -> "Bergen"' in behaviour.stdout, behaviour.stdout


def test_an_arn_is_read_by_the_model_it_names_or_else_by_its_bodies(tmp_path):
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-70b-instruct-v1:0"
    unnamed = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4"
    path = write_cassette(tmp_path / "arn.yaml", [
        exchange(0, _url(profile), LLAMA_REQUEST, json.dumps(LLAMA_ANSWER)),
        exchange(1, _url(unnamed, True), NOVA_REQUEST, _nova_stream(), EVENTSTREAM),
        exchange(2, _url(unnamed), TITAN_REQUEST, json.dumps(TITAN_ANSWER)),
        exchange(3, _url(unnamed, True), COMMAND_R_REQUEST, _command_r_stream(), EVENTSTREAM),
        exchange(4, _url(unnamed), LLAMA_REQUEST, json.dumps(LLAMA_ANSWER)),
    ])
    items = _show(path)
    assert [i["family"] for i in items] == ["bedrock-llama", "bedrock-nova", "bedrock-titan",
                                            "bedrock-cohere", "bedrock-llama"]
    assert items[0]["model"] == profile and items[1]["model"] == unnamed  # the whole ARN
    assert [i["text"] for i in items] == ["Hello there!", "It is 21 C in Rome.", " Hello there!",
                                          "Looking it up.", "Hello there!"]


def test_other_models_on_invoke_model_are_not_misread(tmp_path):
    """OpenAI's gpt-oss on Bedrock answers like OpenAI's chat; Nova Canvas makes images."""
    gpt = {"messages": [{"role": "user", "content": "Say hello"}], "max_completion_tokens": 50}
    answer = {"id": "c1", "object": "chat.completion", "model": "openai.gpt-oss-120b-1:0", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}
    canvas = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a cat"}}
    path = write_cassette(tmp_path / "other.yaml", [
        exchange(0, _url("openai.gpt-oss-120b-1:0"), gpt, json.dumps(answer)),
        exchange(1, _url("amazon.nova-canvas-v1:0"), canvas, json.dumps({"images": ["aGk="]})),
    ])
    gpt_item, canvas_item = _show(path)
    assert gpt_item["family"] == "openai-chat" and gpt_item["text"] == "Hello!" and _tokens(gpt_item) == (8, 2)
    assert canvas_item["family"] == ""  # shown raw


def _exception_frame(kind: str, message: str) -> bytes:
    """An exception frame of the stream, as Bedrock ends one that fails midway."""
    headers = b""
    for name, value in ((":exception-type", kind), (":content-type", "application/json"),
                        (":message-type", "exception")):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + len(value).to_bytes(2, "big") + value.encode()
    body = json.dumps({"message": message}).encode()
    prelude = (12 + len(headers) + len(body) + 4).to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    frame = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + body
    return frame + zlib.crc32(frame).to_bytes(4, "big")


def test_a_stream_that_fails_midway_shows_its_error(tmp_path):
    failing = _exception_frame("modelStreamErrorException", "The model stopped")
    path = write_cassette(tmp_path / "failed.yaml", [
        exchange(0, _url(LLAMA, True), LLAMA_REQUEST, _chunks({"generation": "Hel"}) + failing, EVENTSTREAM),
        exchange(1, _url(TITAN, True), TITAN_REQUEST, _chunks({"outputText": "Hel"}) + failing, EVENTSTREAM),
        exchange(2, _url(MISTRAL, True), MISTRAL_TEXT_REQUEST,
                 _chunks({"outputs": [{"text": "Hel"}]}) + failing, EVENTSTREAM),
        exchange(3, _url(COMMAND_R, True), COMMAND_R_REQUEST,
                 _chunks({"event_type": "text-generation", "text": "Hel"}) + failing, EVENTSTREAM),
        exchange(4, _url(NOVA, True), NOVA_REQUEST,
                 _chunks({"contentBlockDelta": {"delta": {"text": "Hel"}}}) + failing, EVENTSTREAM),
    ])
    for item in _show(path):
        assert item["text"] == "Hel" and item["error"] == "The model stopped", item
    assert "! error: The model stopped" in _cli("show", str(path)).stdout


def _cohere_groq(folder, text: str = " now.", city: str = "Rome", groq: str = "Hi"):
    stream = [dict(e) for e in COHERE_STREAM]
    stream[8] = {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}
    stream[4] = {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
        "function": {"arguments": f' "{city}"}}'}}}}}
    chunks = [dict(c) for c in GROQ_STREAM]
    chunks[0] = {**chunks[0], "choices": [{"index": 0, "delta": {"content": groq}}]}
    folder.mkdir(exist_ok=True)
    return write_cassette(folder / "cohere-groq.yaml", [
        exchange(0, COHERE, COHERE_REQUEST, _cohere_sse(stream), "text/event-stream"),
        exchange(1, COHERE, {**COHERE_REQUEST, "stream": False}, json.dumps(COHERE_ANSWER)),
        exchange(2, "https://api.groq.com/openai/v1/chat/completions",
                 {**CHAT_REQUEST, "model": "llama-3.3-70b-versatile"}, sse(*chunks, "[DONE]"),
                 "text/event-stream"),
    ])


def test_report_reads_cohere_v2_and_groq_usage(tmp_path):
    path = _cohere_groq(tmp_path)
    report = _cli("report", "-o", str(tmp_path / "report.html"), str(path))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count("Cohere chat") == 2 and "OpenAI chat completions" in page
    assert "Checking now." in page and "It is 21 C." in page and "I will look it up." in page
    assert "weather({&quot;city&quot;: &quot;Rome&quot;})" in page
    assert "tokens 612 in, 41 out" in page and "tokens 70 in, 6 out" in page
    assert "tokens 11 in, 2 out" in page  # Groq's x_groq.usage
    assert "693 tokens in, 49 tokens out" in page
    assert "command-a-03-2025" in page and "llama-3.3-70b-versatile" in page


def test_diff_reads_cohere_v2_and_groq(tmp_path):
    old = _cohere_groq(tmp_path / "old")
    same = _cli("diff", str(old), str(_cohere_groq(tmp_path / "same")))
    assert same.returncode == 0 and same.stdout.splitlines() == ["same: 1 cassette compared"], same.stdout
    wording = _cli("diff", str(old), str(_cohere_groq(tmp_path / "wording", text=" soon.", groq="Hey")))
    assert wording.returncode == 0, wording.stdout + wording.stderr
    assert wording.stdout.splitlines() == ["#0 text: changed (13 -> 14 characters)",
                                           "#2 text: changed (2 -> 3 characters)", "wording: 2 wording"]
    behaviour = _cli("diff", str(old), str(_cohere_groq(tmp_path / "behaviour", city="Turin")))
    assert behaviour.returncode == 1, behaviour.stdout + behaviour.stderr
    assert behaviour.stdout.splitlines() == ['#0 tool weather argument city: "Rome" -> "Turin"',
                                             "behaviour: 1 behaviour"]
