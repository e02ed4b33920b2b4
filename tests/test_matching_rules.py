"""Match rules a user (or a test's marker) gives: normalisers on both sides, the Agents SDK
preset, and the control selection's fields."""

from __future__ import annotations

import json

import pytest

from proxy_addon.cassette import Interaction, Request, Response
from proxy_addon.control import ControlError, parse_match_fields
from proxy_addon.matchers import IncomingRequest, Matcher, MatchRules
from proxy_addon.request_view import view_request

URL = "https://api.openai.com/v1/responses"


def _recorded(body: dict) -> Interaction:
    return Interaction(0, Request(method="POST", url=URL, body=json.dumps(body)),
                       Response(code=200, status="200 OK"))


def _differences(rules: MatchRules, recorded: dict, sent: dict) -> list[str]:
    """What differs, the sent request seen as the proxy sees it (request_view.py: scrubbed)."""
    view = view_request("POST", URL, [("Content-Type", "application/json")], json.dumps(sent).encode(), 1 << 20)
    return Matcher(rules).differences(_recorded(recorded), IncomingRequest("POST", view.url, view.body))


def test_a_normaliser_makes_volatile_values_equal_on_both_sides():
    rules = MatchRules.parse("method,url,body", "", False, r"\d{4}-\d\d-\d\d" + "\n" + r"[0-9a-f-]{36}")
    recorded = {"input": "Today is 2026-01-02, id 0b9e8a30-1111-4c3e-9a7e-2b1d5e6f7a80"}
    sent = {"input": "Today is 2026-12-04, id 7d1f0c22-2222-4a1b-8c9d-0e1f2a3b4c5d"}
    assert _differences(rules, recorded, sent) == []
    assert _differences(MatchRules(), recorded, sent)  # not without it
    assert _differences(rules, recorded, {"input": "Yesterday"})  # the rest still counts


def test_the_agents_sdk_prompt_cache_key_is_normalised_by_default():
    # Where a run id stands in a field no credential rule takes (a key-named field of this
    # length is redacted on both sides anyway).
    recorded = {"metadata": {"run": "agents-sdk:run:" + "a1" * 16}, "input": "hi"}
    sent = {"metadata": {"run": "agents-sdk:run:" + "b2" * 16}, "input": "hi"}
    assert _differences(MatchRules(), recorded, sent) == []
    assert _differences(MatchRules(), recorded, {**sent, "input": "bye"})


def test_a_bad_normaliser_is_one_line():
    with pytest.raises(ValueError, match=r"normalizer '\(' is not a regular expression"):
        MatchRules.parse("method", "", False, "(")


def test_selection_fields():
    assert parse_match_fields(b'{"name": "x"}') is None
    assert parse_match_fields(json.dumps({"name": "x", "match": "method,url", "ignore_fields": ["a", "b.c"],
                                          "normalize": [r"\d+", "x"]}).encode()) == {
        "match": "method,url", "ignore_fields": "a,b.c", "normalize": "\\d+\nx"}
    with pytest.raises(ControlError, match="'normalize' must be a string or a list of strings"):
        parse_match_fields(b'{"name": "x", "normalize": 5}')


def test_a_miss_names_the_nearest_of_many_recordings_by_index():
    # 5,000 recordings of one URL: the nearest is found among the few whose bodies sort next
    # to the request's (forwards and backwards), not by comparing every one.
    import json

    from proxy_addon.cassette import Interaction, Request, Response
    from proxy_addon.matchers import IncomingRequest, Matcher, MatchRules

    url = "https://openrouter.ai/api/v1/chat/completions"

    def body(n: int, tail: str = "") -> str:
        return json.dumps({"model": "m", "messages": [
            {"role": "user", "content": f"question {n}: what is {n} times {n + 1}?{tail}"}]})

    interactions = [Interaction(id=n, request=Request(url=url, method="POST", body=body(n)),
                                response=Response(code=200, status="200 OK")) for n in range(5000)]
    matcher = Matcher(MatchRules())
    for n, tail in ((5, " Explain."), (4321, " Briefly."), (0, "!")):
        request = IncomingRequest("POST", url, body(n, tail).encode())
        found, differences = matcher.nearest(interactions, request)
        assert found.id == n, (n, found.id, differences)
        assert len(differences) == 1 and differences[0].startswith("body $.messages[0].content")
    # A request for a URL no recording has: the nearest by method and URL.
    other = IncomingRequest("POST", url.replace("chat/completions", "completions"), body(7).encode())
    found, differences = matcher.nearest(interactions, other)
    assert any(d.startswith("url:") for d in differences)
