"""Misses in each provider's error shape, the X-Vcr-Proxy note, injected faults, partial
streams, and the control endpoint's per-test reports: real proxy, real SDK clients."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load

from .proxy import Proxy
from .test_record import CHAT, recorded
from .upstream import COMPLETION, TOOL_STREAM, Upstream, make_certificate

CONTROL = "http://vcr-proxy.control"
OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
STREAM_BODY = b"".join(TOOL_STREAM).decode()


def interaction(n: int, url: str, body: str, content_type: str, request_body: str = "{}",
                headers: dict | None = None) -> Interaction:
    return Interaction(id=n, request=Request(url=url, method="POST", body=request_body),
                       response=Response(body=body, code=200, status="200 OK",
                                         headers={"Content-Type": [content_type], **(headers or {})}))


def write(path, *interactions) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Cassette(interactions=list(interactions)).dumps())


@pytest.fixture(params=["mitmproxy", "direct"], ids=["mitmproxy-front", "direct-front"])
def proxy(tmp_path, request):
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_front=request.param).start()
    yield proxy
    proxy.stop()


def test_misses_come_in_each_providers_own_error_shape(proxy, monkeypatch):
    openai_client = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=proxy.client())
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "vcr-proxy: POST https://api.openai.com/v1/chat/completions" in str(raised.value)
    assert raised.value.body["type"] == "vcr_proxy_error"

    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # the SDK's own HTTP client (httpx2)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca))
    claude = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "vcr-proxy: POST https://api.anthropic.com/v1/messages" in raised.value.message
    assert raised.value.body["error"]["type"] == "not_found_error"
    assert raised.value.body["type"] == "error"

    with proxy.client() as client:
        gemini = client.post("https://generativelanguage.googleapis.com/v1beta/models/gemini:generateContent",
                             json={"contents": []})
        vertex_claude = client.post("https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/"
                                    "us-east5/publishers/anthropic/models/claude:rawPredict", json={})
    assert gemini.status_code == 404
    error = gemini.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert error["message"].startswith("vcr-proxy: POST https://generativelanguage.googleapis.com/")
    assert vertex_claude.json()["error"]["type"] == "not_found_error"


def test_replayed_and_recorded_responses_say_where_from_and_the_note_stays_off_disk(tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key, event_delay=0.0).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record",
                  vcr_headers="all").start()
    try:
        with proxy.client() as client:
            response = client.post(CHAT, json={"model": "m"}, headers={"X-Vcr-Fault": "status=500"})
        assert response.status_code == 200  # faults apply to replays only; the header is stripped
        assert response.headers["x-vcr-proxy"] == f"recorded {proxy.cassettes / 'default.yaml'}#0"
        recorded(proxy.cassettes / "default.yaml")
        assert "X-Vcr-Proxy" not in (proxy.cassettes / "default.yaml").read_text()
        assert "x-vcr-fault" not in upstream.requests[0]["headers"]
    finally:
        proxy.stop()
        upstream.stop()
    replay = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        with replay.client() as client:
            response = client.post(CHAT, json={"model": "m"})
        assert response.headers["x-vcr-proxy"] == f"replayed {replay.cassettes / 'default.yaml'}#0"
    finally:
        replay.stop()


def test_injected_faults_status_retry_after_disconnect_and_delay(proxy):
    write(proxy.cassettes / "default.yaml",
          interaction(0, OPENAI_CHAT, json.dumps(COMPLETION), "application/json"),
          interaction(1, CHAT, STREAM_BODY, "text/event-stream"),
          interaction(2, OPENAI_CHAT, json.dumps(COMPLETION), "application/json",
                      '{"messages": [], "model": "m"}'))
    with proxy.client() as client:
        limited = client.post(OPENAI_CHAT, json={}, headers={"X-Vcr-Fault": "status=429;retry-after=2"})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert "injected fault" in limited.json()["error"]["message"]
        # The fault did not use the recording up: the retry gets it.
        assert client.post(OPENAI_CHAT, json={}).json()["id"] == "gen-test-2"
        events = []
        with pytest.raises(httpx.HTTPError):
            with client.stream("POST", CHAT, json={},
                               headers={"X-Vcr-Fault": "disconnect-after-events=3"}) as response:
                for line in response.iter_lines():
                    if line:
                        events.append(line)
        assert len(events) == 3 and events[0].startswith("data: ")
        bad = client.post(CHAT, json={}, headers={"X-Vcr-Fault": "explode=1"})
        assert bad.status_code == 400 and "unknown fault 'explode'" in bad.json()["error"]["message"]

    # The openai SDK's own retry logic, offline: a 500 for the first request of the test, then
    # the recording. The delay fault is answered after the wait.
    client = openai.OpenAI(api_key="sk-x", max_retries=2, http_client=proxy.client())
    with proxy.control() as control:
        control.post(f"{CONTROL}/cassette", json={"name": "default", "mode": "replay",
                                                  "fault": "status=500;times=1"})
        completion = client.chat.completions.create(model="m", messages=[])
        report = control.post(f"{CONTROL}/eject").json()
        assert completion.id == "gen-test-2" and report["replayed"] == [2]
        control.post(f"{CONTROL}/cassette", json={"name": "default", "fault": "delay=0.2"})
        assert control.post(OPENAI_CHAT, json={}).status_code == 200
        bad = control.post(f"{CONTROL}/cassette", json={"name": "default", "fault": "status=abc"})
        assert bad.status_code == 400


def test_a_partial_recording_replays_as_the_same_cut(proxy):
    cut = b"".join(TOOL_STREAM[:2]).decode()
    write(proxy.cassettes / "default.yaml",
          interaction(0, CHAT, cut, "text/event-stream", headers={"X-Vcr-Partial": ["true"]}))
    received = b""
    with proxy.client() as client:
        with pytest.raises(httpx.HTTPError):
            with client.stream("POST", CHAT, json={}) as response:
                for data in response.iter_bytes():
                    received += data
    assert received.decode() == cut


def test_control_reports_previous_unused_and_where_each_replay_came_from(proxy):
    write(proxy.cassettes / "suite" / "a.yaml",
          interaction(0, OPENAI_CHAT, json.dumps(COMPLETION), "application/json", '{"n": 1}'),
          interaction(1, OPENAI_CHAT, json.dumps(COMPLETION), "application/json", '{"n": 2}'))
    with proxy.control() as client:
        client.post(f"{CONTROL}/cassette", json={"name": "suite/a", "mode": "replay"})
        assert client.post(OPENAI_CHAT, json={"n": 1}).status_code == 200
        status = client.get(f"{CONTROL}/status").json()
        assert status["replayed_from"] == [f"{proxy.cassettes / 'suite' / 'a.yaml'}#0"]
        assert client.post(OPENAI_CHAT, json={"n": 3}).status_code == 404
        # Selecting the next cassette answers the previous selection's report: one round trip.
        answer = client.post(f"{CONTROL}/cassette", json={"name": "suite/b", "mode": "replay"}).json()
        previous = answer["previous"]
        assert previous["cassette"] == "suite/a" and previous["replayed"] == [0]
        assert previous["unused"] == [1]
        assert previous["miss_messages"][0].startswith("vcr-proxy: POST https://api.openai.com/v1/chat/completions: "
                                                       "no match among 2 interaction(s)")
        assert answer["cassette"] == "suite/b"
        # A selected cassette no request touched: all of it unused.
        client.post(f"{CONTROL}/cassette", json={"name": "suite/a", "mode": "replay"})
        assert client.post(f"{CONTROL}/eject").json()["unused"] == [0, 1]
