"""`vcr-proxy diff`: modified copies of corpus cassettes, their class, lines and exit codes."""

from __future__ import annotations

import copy
import json

import pytest

from proxy_addon.cassette import load

from .conftest import CORPUS
from .inspect_helpers import CASES, CHAT, SEED, exchange, write_cassette
from .test_cli import _cli


def _write(path, cassette):
    path.write_text(cassette.dumps())
    return path


def _seed_copy(tmp_path, name="new.yaml"):
    return _write(tmp_path / name, load(SEED))


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES}))
def test_a_cassette_against_itself_is_the_same(name):
    result = _cli("diff", str(CORPUS / name), str(CORPUS / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["same: 1 cassette compared"]


def test_changed_wording_exits_0_and_shows_the_text_under_text(tmp_path):
    cassette = load(SEED)
    body = cassette.interactions[1].response.body
    assert '" hot"' in body
    cassette.interactions[1].response.body = body.replace('" hot"', '" warm"')
    new = _write(tmp_path / "new.yaml", cassette)
    result = _cli("diff", "--text", str(SEED), str(new))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "#1 text: changed (68 -> 69 characters)"
    assert "    -The weather in Florence, Italy is currently 40°C - that's quite hot!" in lines
    assert "    +The weather in Florence, Italy is currently 40°C - that's quite warm!" in lines
    assert lines[-1] == "wording: 1 wording"


def test_changed_tool_argument_is_behaviour(tmp_path):
    cassette = load(SEED)
    body = cassette.interactions[0].response.body
    assert body.count('"arguments":" Italy"') == 1
    cassette.interactions[0].response.body = body.replace('"arguments":" Italy"', '"arguments":" Spain"')
    new = _write(tmp_path / "new.yaml", cassette)
    result = _cli("diff", str(SEED), str(new))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        '#0 tool weather argument location: "Florence, Italy" -> "Florence, Spain"',
        "behaviour: 1 behaviour"]
    data = json.loads(_cli("diff", "--json", str(SEED), str(new)).stdout)
    assert data["class"] == "behaviour"
    change, = data["cassettes"][0]["changes"]
    assert change == {"class": "behaviour", "interaction": 0, "path": "#0 tool weather argument location",
                      "old": "Florence, Italy", "new": "Florence, Spain",
                      "line": '#0 tool weather argument location: "Florence, Italy" -> "Florence, Spain"'}


def test_renamed_tool_and_finish_reason(tmp_path):
    cassette = load(SEED)
    body = cassette.interactions[0].response.body
    body = body.replace('"function":{"name":"weather"}', '"function":{"name":"forecast"}')
    body = body.replace('"finish_reason":"tool_calls"', '"finish_reason":"stop"')
    cassette.interactions[0].response.body = body
    result = _cli("diff", str(SEED), str(_write(tmp_path / "new.yaml", cassette)))
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == ["#0 tool 1: weather -> forecast (renamed)",
                                              "#0 finish reason: tool_calls -> stop"]


def test_added_interaction_is_a_requests_change(tmp_path):
    cassette = load(SEED)
    extra = copy.deepcopy(cassette.interactions[1])
    extra.id = 2
    extra.request.body = extra.request.body.replace("You are a helpful assistant", "You are terse")
    cassette.interactions.append(extra)
    result = _cli("diff", str(SEED), str(_write(tmp_path / "new.yaml", cassette)))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "#2 request: added: POST https://openrouter.ai/api/v1/chat/completions", "requests: 1 requests"]
    missing = _cli("diff", str(tmp_path / "new.yaml"), str(SEED))
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[0] == (
        "#2 request: missing: POST https://openrouter.ai/api/v1/chat/completions")


def test_changed_status_is_behaviour(tmp_path):
    cassette = load(SEED)
    cassette.interactions[1].response.code = 500
    cassette.interactions[1].response.status = "500 Internal Server Error"
    result = _cli("diff", str(SEED), str(_write(tmp_path / "new.yaml", cassette)))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["#1 status: 200 OK -> 500 Internal Server Error",
                                          "behaviour: 1 behaviour"]


def test_changed_response_structure_is_behaviour(tmp_path):
    cassette = load(SEED)
    cassette.interactions[1].response.body = cassette.interactions[1].response.body.replace(
        '"logprobs":null', '"logprobs":null,"safety":{"flagged":false}')
    result = _cli("diff", str(SEED), str(_write(tmp_path / "new.yaml", cassette)))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "#1 response structure: added choices[].safety, choices[].safety.flagged")


def test_folders_pair_cassettes_by_name(tmp_path):
    (tmp_path / "old").mkdir(), (tmp_path / "new").mkdir()
    _seed_copy(tmp_path / "old", "a.yaml"), _seed_copy(tmp_path / "new", "a.yaml")
    _seed_copy(tmp_path / "old", "gone.yaml")
    result = _cli("diff", str(tmp_path / "old"), str(tmp_path / "new"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["gone.yaml cassette: missing", "requests: 1 requests"]


def test_errors_exit_2_in_one_line_naming_the_file(tmp_path):
    result = _cli("diff", str(SEED), str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{tmp_path / 'nope.yaml'}: no such file or folder"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 2\ninteractions: [\n")
    result = _cli("diff", str(SEED), str(broken))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and str(broken) in result.stderr
    assert "Traceback" not in result.stderr
    result = _cli("diff", str(SEED), str(tmp_path))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


def test_many_interactions_pair_by_their_exact_request(tmp_path):
    """2,000 interactions on one URL, reordered: each pairs with its own request (by a dict of
    exact keys; pairing through the matcher alone took seconds per thousand)."""
    def interactions(order):
        return [exchange(k, CHAT, {"messages": [{"role": "user", "content": f"question {n}"}], "model": "m"},
                         json.dumps({"choices": [{"message": {"content": f"answer {n}"},
                                                  "finish_reason": "stop"}]}))
                for k, n in enumerate(order)]
    numbers = list(range(2000))
    old = write_cassette(tmp_path / "old.yaml", interactions(numbers))
    new_cassette = interactions(numbers[::-1])
    # Key order in the body does not matter; a changed answer to question 7 does.
    new_cassette[0].request.body = json.dumps({"model": "m", "messages": [
        {"content": "question 1999", "role": "user"}]})
    at = 1999 - 7
    new_cassette[at].response.body = new_cassette[at].response.body.replace("answer 7", "answer seven")
    new = write_cassette(tmp_path / "new.yaml", new_cassette)
    result = _cli("diff", str(old), str(new))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"#{at} text: changed (8 -> 12 characters)", "wording: 1 wording"]


def test_a_changed_value_in_an_unknown_api_is_behaviour(tmp_path):
    models = {"object": "list", "data": [{"id": "llama-3"}, {"id": "mixtral"}]}
    url = "https://api.groq.com/openai/v1/models"
    old = write_cassette(tmp_path / "old.yaml", [exchange(0, url, "", json.dumps(models), method="GET")])
    models["data"][1]["id"] = "qwen"
    new = write_cassette(tmp_path / "new.yaml", [exchange(0, url, "", json.dumps(models), method="GET")])
    result = _cli("diff", str(old), str(new))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ['#0 response body: $.data[1].id: "mixtral" -> "qwen"',
                                          "behaviour: 1 behaviour"]


def test_two_empty_folders_are_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = _cli("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 2 and "no cassettes under" in result.stderr and result.stdout == ""


def test_diff_text_prints_control_characters_visibly(tmp_path):
    cassette = load(SEED)
    body = cassette.interactions[1].response.body
    cassette.interactions[1].response.body = body.replace('" hot"', '" hot\\u001b]0;pwned\\u0007\\r"')
    new = _write(tmp_path / "new.yaml", cassette)
    result = _cli("diff", "--text", str(SEED), str(new))
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\x07" not in result.stdout
    assert "+The weather in Florence, Italy is currently 40°C - that's quite hot\\x1b]0;pwned\\x07" \
        in result.stdout
