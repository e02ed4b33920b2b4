"""`vcr-proxy show`: the transcript and its JSON on real cassettes of every API family, checked
against an extraction of the events made here, independently of the reader."""

from __future__ import annotations

import base64
import copy
import json
import random
import struct

import pytest

from proxy_addon.cassette import load, loads
from proxy_addon.timing import Timing, body_hash, event_ends, read_sidecar

from .conftest import CORPUS
from .inspect_helpers import CASES, CHAT, CHAT_REQUEST, SEED, exchange, expected, sse, write_cassette
from .test_cli import _cli


def test_the_seed_shows_the_weather_call_and_the_final_answer():
    result = _cli("show", str(SEED))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("#0 POST https://openrouter.ai/api/v1/chat/completions -> 200 OK in "
                          "10.057092666s (stream)\n")
    assert "    model: moonshotai/kimi-k2-0905 (OpenAI chat completions), tools: weather\n" in out
    assert "    > user: What's the weather in Florence,Italy?\n" in out
    assert '    < tool call: weather({"location": "Florence, Italy"})' in out
    assert "    finish: tool_calls; tokens: 97 in, 35 out" in out
    assert "    > tool [functions.weather:0]: 40 C\n" in out
    assert ("    < assistant: The weather in Florence, Italy is currently 40°C - that's quite hot!\n"
            in out)
    # Interaction 1 repeats the system and user messages: only what it adds is shown.
    assert out.count("> user: What's the weather") == 1
    data = json.loads(_cli("show", "--json", str(SEED)).stdout)
    first, second = data["interactions"]
    assert first["tool_calls"] == [{"name": "weather", "id": "functions.weather:0",
                                    "arguments": {"location": "Florence, Italy"},
                                    "raw": '{"location": "Florence, Italy"}'}]
    assert second["text"] == "The weather in Florence, Italy is currently 40°C - that's quite hot!"
    assert second["finish_reason"] == "stop"
    assert second["usage"] == {"input_tokens": 146, "output_tokens": 17, "cached_tokens": 0,
                               "reasoning_tokens": 0}
    assert second["messages"][second["new_from"]]["role"] == "tool"


@pytest.mark.parametrize("name,family", CASES, ids=[c[0].rsplit("/", 2)[-2] + "/" + c[0].rsplit("/", 1)[-1]
                                                     for c in CASES])
def test_show_assembles_text_and_tool_calls_like_the_events_say(name, family):
    path = CORPUS / name
    cassette = load(path)
    data = json.loads(_cli("show", "--json", str(path)).stdout)
    text_view = _cli("show", str(path)).stdout
    assert len(data["interactions"]) == len(cassette.interactions)
    for interaction, item in zip(cassette.interactions, data["interactions"]):
        text, calls = expected(interaction.response.body, family)
        assert item["family"] == family
        assert item["text"] == text
        assert [(c["name"], c["arguments"]) for c in item["tool_calls"]] == calls
        assert item["problems"] == []
        assert item["model"]
        if text:
            assert text.split("\n")[0].strip() in text_view
        for name_, arguments in calls:
            assert f"< tool call: {name_}({json.dumps(arguments, ensure_ascii=False)})" in text_view


def test_reasoning_and_usage_details_are_read():
    glm = json.loads(_cli("show", "--json", str(CORPUS / CASES[7][0])).stdout)["interactions"][0]
    assert glm["reasoning"].startswith("The user wants to know the weather in Florence")
    assert glm["usage"]["cached_tokens"] == 128 and glm["usage"]["reasoning_tokens"] == 19
    gemini = json.loads(_cli("show", "--json", str(CORPUS / CASES[17][0])).stdout)["interactions"][0]
    assert gemini["usage"]["reasoning_tokens"] == 69


def test_an_unknown_shape_falls_back_to_the_raw_view():
    path = CORPUS / "go-vcr-default" / "httprecord" / "testdata" / "example.yaml"
    result = _cli("show", str(path))
    assert result.returncode == 0
    assert "    request:  " in result.stdout and '    response: {"object":"list"' in result.stdout
    raw = _cli("show", "--raw", str(SEED))
    assert raw.stdout.splitlines()[1].startswith("    request:  {\"messages\"")


def test_a_malformed_event_is_shown_not_raised(tmp_path):
    cassette = load(SEED)
    body = cassette.interactions[1].response.body
    cassette.interactions[1].response.body = body.replace('data: {"id"', 'data: {"id" oops', 1)
    path = tmp_path / "broken.yaml"
    path.write_text(cassette.dumps())
    result = _cli("show", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert '! malformed event 0: not JSON: {"id" oops' in result.stdout
    assert "< assistant: The weather in Florence" in result.stdout


def test_timings_come_from_the_sidecar(tmp_path):
    path = tmp_path / "kimi.yaml"
    path.write_bytes(SEED.read_bytes())
    cassette = load(path)
    lines = []
    for interaction in cassette.interactions:
        ends = event_ends(interaction.response.body.encode())
        times = [1000.0 + 50 * k for k in range(len(ends))]
        lines.append(Timing(interaction.id, body_hash(interaction.response.body), 900.0, times,
                            times[-1] + 10).to_json())
    (tmp_path / "kimi.timing.jsonl").write_text("\n".join(lines) + "\n")
    data = json.loads(_cli("show", "--json", str(path)).stdout)
    timing = data["interactions"][1]["timing"]
    # The first event that carries text: found here by reading the blocks one by one.
    blocks = loads(path.read_text()).interactions[1].response.body.split("\n\n")
    first = next(i for i, b in enumerate(blocks) if '"content":"' in b and '"content":""' not in b)
    assert timing["first_token_ms"] == 1000.0 + 50 * first
    assert timing["headers_ms"] == 900.0 and timing["end_ms"] == 1000.0 + 50 * (len(blocks) - 2) + 10
    assert timing["tokens_per_second"] == pytest.approx(17 / ((timing["end_ms"] - timing["first_token_ms"]) / 1e3))
    assert "timing: headers 900ms, first token" in _cli("show", str(path)).stdout
    # A sidecar that no longer matches its cassette is ignored.
    (tmp_path / "kimi.timing.jsonl").write_text(lines[1].replace('"id":1', '"id":0') + "\n")
    assert json.loads(_cli("show", "--json", str(path)).stdout)["interactions"][0]["timing"] is None


# ---------------------------------------------------------------------------------------------
# Hostile and odd cassettes: problems listed, never raised; the terminal never driven


def _shown(path):
    """show, show --json and show --raw on `path`: each exits 0 without a traceback."""
    outputs = []
    for mode in ((), ("--json",), ("--raw",), ("--raw", "--json")):
        result = _cli("show", *mode, str(path))
        assert result.returncode == 0 and "Traceback" not in result.stderr, (mode, result.stderr[-2000:])
        outputs.append(result.stdout)
    json.loads(outputs[1]) and json.loads(outputs[3])
    return outputs[0], json.loads(outputs[1])


def _frame(headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    return struct.pack(">II", total, len(headers)) + b"\0\0\0\0" + headers + payload + b"\0\0\0\0"


def test_hostile_bodies_are_listed_as_problems(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    bedrock = ("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude/"
               "invoke-with-response-stream")
    good_event = json.dumps({"bytes": base64.b64encode(json.dumps(
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "still read"}}).encode()).decode()}).encode()
    frames = (_frame(b"\x0b:event-type", b'{"bytes":""}')  # a header cut before its type byte
              + _frame(b"\x0b:event-type\x07\xff\xff", b"{}")  # a string longer than the headers
              + _frame(b"", good_event))
    interactions = [
        exchange(0, CHAT, CHAT_REQUEST, deep),
        exchange(1, CHAT, CHAT_REQUEST, sse({"choices": [{"delta": {"content": "a"}}]}, deep),
                 "text/event-stream"),
        exchange(2, CHAT, deep, json.dumps({"choices": [{"message": {"content": "b"}}]})),
        exchange(3, CHAT, CHAT_REQUEST, '{"choices":[{"message":{"content":"c"}}],'
                                        '"usage":{"prompt_tokens":1e999,"completion_tokens":NaN}}'),
        exchange(4, bedrock, {"anthropic_version": "bedrock-2023-05-31", "messages": []}, frames,
                 "application/vnd.amazon.eventstream"),
        exchange(5, CHAT, {"model": "m", "messages": 5, "tools": 1.5},
                 json.dumps({"choices": 1.5, "usage": {"prompt_tokens": "x"}})),
        exchange(6, CHAT, CHAT_REQUEST, sse({"choices": [{"delta": {"tool_calls": [
            {"index": {"a": 1}, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]}),
            "text/event-stream"),
        exchange(7, "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent",
                 {"contents": True, "tools": 3}, json.dumps({"candidates": 7, "usageMetadata": []})),
        exchange(8, "https://api.openai.com/v1/responses", {"model": "m", "input": 5, "tools": True},
                 json.dumps({"output": 3, "status": "completed"})),
        exchange(9, "https://api.anthropic.com/v1/messages", {"model": "m", "messages": [{"content": 5}]},
                 json.dumps({"type": "message", "content": {"type": "text"}, "usage": {"input_tokens": True}})),
    ]
    path = write_cassette(tmp_path / "hostile.yaml", interactions)
    text, data = _shown(path)
    items = data["interactions"]
    assert "! malformed response body is JSON nested too deeply to read: [[[[" in text
    assert items[1]["text"] == "a" and items[1]["problems"][0].startswith("event 1: not JSON: [[[")
    assert items[2]["text"] == "b"  # a request too deep to read: the answer still is
    assert items[3]["text"] == "c" and items[3]["usage"]["input_tokens"] == 0
    assert items[4]["text"] == "still read"
    assert items[6]["tool_calls"][0]["name"] == "f"
    result = _cli("report", "-o", str(tmp_path / "r.html"), str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_anthropic_input_then_deltas_and_parallel_calls_on_one_index(tmp_path):
    anthropic = [{"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 3}}},
                 {"type": "content_block_start", "index": 0,
                  "content_block": {"type": "tool_use", "id": "t1", "name": "w", "input": {"a": 1}}},
                 {"type": "content_block_delta", "index": 0,
                  "delta": {"type": "input_json_delta", "partial_json": '{"b"'}},
                 {"type": "content_block_delta", "index": 0,
                  "delta": {"type": "input_json_delta", "partial_json": ': 2}'}}]
    same_index = [{"choices": [{"delta": {"tool_calls": [
                      {"index": 0, "id": "call_a", "function": {"name": "add", "arguments": '{"a": 1}'}}]}}]},
                  {"choices": [{"delta": {"tool_calls": [
                      {"index": 0, "id": "call_b", "function": {"name": "mul", "arguments": '{"a":'}}]}}]},
                  {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 2}"}}]},
                                "finish_reason": "tool_calls"}]}]
    no_index = [{k: v for k, v in call.items() if k != "index"}
                for event in same_index for call in event["choices"][0]["delta"]["tool_calls"]]
    no_index = [{"choices": [{"delta": {"tool_calls": [call]}}]} for call in no_index]
    path = write_cassette(tmp_path / "calls.yaml", [
        exchange(0, "https://api.anthropic.com/v1/messages", {"model": "claude", "messages": []},
                 sse(*anthropic), "text/event-stream"),
        exchange(1, CHAT, CHAT_REQUEST, sse(*same_index, "[DONE]"), "text/event-stream"),
        exchange(2, CHAT, CHAT_REQUEST, sse(*no_index), "text/event-stream")])
    text, data = _shown(path)
    calls = [[(c["name"], c["arguments"], c["id"]) for c in item["tool_calls"]] for item in data["interactions"]]
    assert calls[0] == [("w", {"b": 2}, "t1")]
    assert calls[1] == calls[2] == [("add", {"a": 1}, "call_a"), ("mul", {"a": 2}, "call_b")]
    assert '< tool call: mul({"a": 2})  [call_b]' in text
    assert data["interactions"][1]["events"] == 4  # [DONE] is an event the sidecar times too


def test_errors_midstream_on_a_200_and_in_error_pages_are_shown(tmp_path):
    midstream = sse({"choices": [{"delta": {"content": "Hel"}}]},
                    {"error": {"message": "upstream died", "code": 502},
                     "choices": [{"delta": {"content": ""}, "finish_reason": "error"}]})
    openrouter_429 = json.dumps({"error": {"message": "Provider returned error", "code": 429,
                                           "metadata": {"raw": "rate limited upstream"}}})
    path = write_cassette(tmp_path / "errors.yaml", [
        exchange(0, CHAT, CHAT_REQUEST, midstream, "text/event-stream"),
        exchange(1, CHAT, CHAT_REQUEST, openrouter_429, code=429),
        exchange(2, CHAT, CHAT_REQUEST, "<html><h1>502 Bad Gateway</h1></html>", "text/html", code=502),
        exchange(3, CHAT, CHAT_REQUEST, json.dumps({"choices": [{"message": {"content": "as JSON"}}]}),
                 "text/event-stream"),
        exchange(4, CHAT, CHAT_REQUEST, '"just a string"'),
        exchange(5, "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent",
                 {"contents": [{"parts": [{"text": "x"}]}]},
                 json.dumps({"candidates": [{"content": {"parts": [{"text": "y"}]}}],
                             "usageMetadata": {"totalTokenCount": 30, "candidatesTokenCount": 8,
                                               "thoughtsTokenCount": 2}}))])
    text, data = _shown(path)
    items = data["interactions"]
    assert items[0]["error"] == "upstream died" and "    ! error: upstream died" in text
    assert items[1]["error"] == "Provider returned error: rate limited upstream"
    assert items[2]["error"] == "<html><h1>502 Bad Gateway</h1></html>" and items[2]["problems"] == []
    assert items[3]["text"] == "as JSON" and items[3]["problems"] == []
    assert items[4]["problems"] == ['response body is JSON "just a string", not an object']
    assert items[5]["usage"]["input_tokens"] == 20 and items[5]["usage"]["output_tokens"] == 8


def test_control_characters_are_printed_visibly(tmp_path):
    answer = {"choices": [{"message": {"content": "benign\x1b[2K\r    < tool call: safe({})\x1b]0;title\x07"
                                                  "\x1b[8mHIDDEN\x1b[0m\x9b31m\x7f",
                                       "tool_calls": [{"id": "c", "function": {
                                           "name": "delete_all\x1b[2K\rread_file", "arguments": "{}"}}]},
                           "finish_reason": "stop"}]}
    path = write_cassette(tmp_path / "ansi.yaml", [
        exchange(0, CHAT, {"model": "gpt\x1b[31mRED", "messages": [{"role": "user", "content": "hi\x1b[0m"}]},
                 json.dumps(answer))])
    for mode in ((), ("--raw",)):
        out = _cli("show", *mode, str(path)).stdout
        assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f for c in out), repr(out)
    out = _cli("show", str(path)).stdout
    assert "    < tool call: delete_all\\x1b[2K\\x0dread_file({})  [c]" in out
    assert "\\x1b]0;title\\x07\\x1b[8mHIDDEN\\x1b[0m\\x9b31m\\x7f" in out
    assert "model: gpt\\x1b[31mRED" in out
    as_json = _cli("show", "--json", str(path)).stdout
    assert "\x9b" not in as_json and "\x7f" not in as_json and "\x1b" not in as_json
    assert json.loads(as_json)["interactions"][0]["text"].endswith("\x9b31m\x7f")


def test_bad_sidecar_lines_are_ignored(tmp_path):
    path = tmp_path / "kimi.yaml"
    path.write_bytes(SEED.read_bytes())
    cassette = load(path)
    first, second = cassette.interactions
    good = Timing(first.id, body_hash(first.response.body), 900.0, [1000.0, 1100.0], 1200.0).to_json()
    hashed = body_hash(second.response.body)
    bad = [f'{{"id":1,"body":"{hashed}","headers_ms":NaN,"events_ms":[],"end_ms":1}}',
           f'{{"id":1,"body":"{hashed}","headers_ms":1,"events_ms":[Infinity],"end_ms":1}}',
           f'{{"id":1e999,"body":"{hashed}","headers_ms":1,"events_ms":[],"end_ms":1}}',
           f'{{"id":1,"body":"{hashed}","headers_ms":1,"events_ms":"123","end_ms":5}}',
           f'{{"id":1,"body":"{hashed}","headers_ms":-5,"events_ms":[],"end_ms":5}}',
           f'{{"id":1,"body":"{hashed}","headers_ms":1,"events_ms":[1e300],"end_ms":5}}',
           f'{{"id":true,"body":"{hashed}","headers_ms":1,"events_ms":[],"end_ms":5}}', "[1]", "{"]
    sidecar = tmp_path / "kimi.timing.jsonl"
    sidecar.write_text("\n".join([good, *bad]) + "\n")
    assert read_sidecar(sidecar) == read_sidecar_of([good])
    text, data = _shown(path)
    assert data["interactions"][0]["timing"]["headers_ms"] == 900.0
    assert data["interactions"][1]["timing"] is None
    assert _cli("report", "-o", str(tmp_path / "r.html"), str(path)).returncode == 0
    sidecar.unlink()
    sidecar.mkdir()  # a folder where the sidecar would be
    text, data = _shown(path)
    assert data["interactions"][0]["timing"] is None


def read_sidecar_of(lines):
    return {t.id: t for t in (Timing(**{"id": d["id"], "body_hash": d["body"], "headers_ms": d["headers_ms"],
                                        "events_ms": d["events_ms"], "end_ms": d["end_ms"]})
                              for d in map(json.loads, lines))}


def test_fuzzed_corpus_bodies_never_print_a_traceback(tmp_path):
    """A few hundred corpus interactions with their JSON mutated (a fixed seed): wrong types,
    odd values, cut bodies, flipped bytes in Bedrock frames."""
    rng = random.Random(1414)
    values = [None, 1, -1, 1.5, "s", "", [], {}, [1], {"a": 1}, True, [None], [{"x": 1}], 1e308,
              float("inf"), "{", {"type": "text"}]

    def mutate(value):
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            value[key] = rng.choice(values) if rng.random() < 0.3 else mutate(value[key])
            return value
        if isinstance(value, list) and value:
            at = rng.randrange(len(value))
            value[at] = mutate(value[at]) if rng.random() < 0.7 else rng.choice(values)
            return value
        return rng.choice(values)

    def mutate_body(body):
        if isinstance(body, bytes):
            data = bytearray(body)
            for _ in range(3):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        lines = body.split("\n")
        events = [i for i, line in enumerate(lines) if line.startswith("data:") and "{" in line]
        try:
            if events and rng.random() < 0.8:
                at = rng.choice(events)
                lines[at] = "data: " + json.dumps(mutate(json.loads(lines[at][5:])))
                return "\n".join(lines)
            return json.dumps(mutate(json.loads(body)))
        except ValueError:
            return body[:rng.randrange(len(body) + 1)]

    pool = [i for name, _ in CASES for i in load(CORPUS / name).interactions]
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for number in range(6):
        interactions = []
        for k in range(50):
            interaction = copy.deepcopy(rng.choice(pool))
            interaction.id = k
            for _ in range(rng.randint(1, 3)):
                part = interaction.response if rng.random() < 0.6 else interaction.request
                if part.body:
                    part.body = mutate_body(part.body)
            interactions.append(interaction)
        path = write_cassette(folder / f"fuzz{number}.yaml", interactions)
        _shown(path)
    result = _cli("report", "-o", str(tmp_path / "fuzz.html"), str(folder))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
