"""`vcr-proxy show`: the transcript and its JSON on real cassettes of every API family, checked
against an extraction of the events made here, independently of the reader."""

from __future__ import annotations

import json

import pytest

from proxy_addon.cassette import load, loads
from proxy_addon.timing import Timing, body_hash, event_ends

from .conftest import CORPUS
from .inspect_helpers import CASES, SEED, expected
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
