"""Replay end to end: cassettes served from disk, streamed like the original, offline."""

from __future__ import annotations

import asyncio
import json
import time

import openai
import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.persisters.filesystem import write_atomic

from .conftest import CORPUS, corpus_files
from .proxy import Proxy
from .test_record import CHAT, TEST_KEY, recorded
from .upstream import Upstream, make_certificate

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
MESSAGES = [{"role": "user", "content": "What's the weather in Florence?"}]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("cert"))


def sdk_stream(proxy: Proxy) -> list[dict]:
    client = openai.OpenAI(api_key=TEST_KEY, http_client=proxy.client(),
                           base_url="https://openrouter.ai/api/v1", max_retries=0)
    stream = client.chat.completions.create(model="moonshotai/kimi-k2-0905", stream=True,
                                            messages=MESSAGES, tools=TOOLS)
    return [chunk.model_dump() for chunk in stream]


def tool_arguments(chunks: list[dict]) -> str:
    return "".join(call["function"]["arguments"] or ""
                   for chunk in chunks for choice in chunk["choices"]
                   for call in (choice["delta"].get("tool_calls") or []))


def served(proxy: Proxy) -> list[str]:
    """The upstream connections the proxy opened (the in-process replay server aside)."""
    return [line for line in proxy.output().splitlines() if "server connect" in line]


LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])
# The same, and the launcher with the direct front (vcr_front=direct: front/) serving replay.
STARTS = pytest.mark.parametrize("launcher", [False, True, "direct"],
                                 ids=["mitmdump", "vcr-proxy-start", "direct-front"])


def started_by(launcher, **options) -> dict:
    """Proxy's keyword arguments for a STARTS parameter."""
    if launcher == "direct":
        return {"launcher": True, "vcr_front": "direct", **options}
    return {"launcher": launcher, **options}


@pytest.mark.parametrize("mode", ["replay", "once"])
@STARTS
def test_recorded_openai_stream_replays_offline_with_the_same_chunks(tmp_path, certificate, mode, launcher):
    upstream = Upstream(*certificate).start()
    recorder = Proxy(tmp_path, upstream_ca=certificate[0], vcr_upstream=upstream.url).start()
    try:
        original = sdk_stream(recorder)
        recorded(recorder.cassettes / "default.yaml")
    finally:
        recorder.stop()
        upstream.stop()
    assert tool_arguments(original) == '{"location":"Florence, Italy"}'

    # No upstream, no key that works, and openrouter.ai does not resolve here.
    # (The launcher logs mitmproxy's connection lines only when asked.)
    player = Proxy(tmp_path, **started_by(launcher, vcr_mode=mode, termlog_verbosity="info")).start()
    try:
        replayed = sdk_stream(player)
    finally:
        player.stop()
    assert replayed == original
    assert all("openrouter" not in line and "server connect 127.0.0.1:" in line
               for line in served(player))


def corpus_requests():
    for path in corpus_files():
        cassette = load(path)
        yield path, cassette


@STARTS
def test_every_corpus_interaction_replays_byte_for_byte(tmp_path, launcher):
    proxy = Proxy(tmp_path, **started_by(launcher, vcr_mode="replay", vcr_hosts="*",
                                         vcr_dir=str(CORPUS))).start()
    checked = 0
    try:
        with proxy.client(timeout=60) as client:
            for path, cassette in corpus_requests():
                name = str(path.relative_to(CORPUS))
                for interaction in cassette.interactions:
                    request = interaction.request
                    headers = {k: v[0] for k, v in request.headers.items()}
                    headers["X-Vcr-Cassette"] = name
                    body = request.body.encode() if isinstance(request.body, str) else request.body
                    response = client.request(request.method, request.url, headers=headers,
                                              content=body)
                    expected = interaction.response.body
                    expected = expected.encode() if isinstance(expected, str) else expected
                    assert response.status_code == interaction.response.code, (name, response.text[:300])
                    assert response.content == expected, name
                    for header, values in interaction.response.headers.items():
                        if header.lower() not in ("content-length", "transfer-encoding"):
                            assert response.headers.get_list(header) == values, (name, header)
                    checked += 1
    finally:
        proxy.stop()
    assert checked == sum(len(c.interactions) for _, c in corpus_requests()) > 200
    assert served(proxy) == [] or all("server connect 127.0.0.1:" in line for line in served(proxy))


def _stream_cassette(folder, gaps: list[float], duration=0.05) -> list[float]:
    """A cassette whose stream events were recorded `gaps` apart; returns event offsets."""
    from proxy_addon.timing import Timing, body_hash, sidecar_path

    events = [f"data: {{\"n\": {n}}}\n\n" for n in range(len(gaps) + 1)] + ["data: [DONE]\n\n"]
    body = "".join(events)
    offsets, at = [], duration * 1e3
    for gap in [0.0] + gaps + [0.0]:
        at += gap * 1e3
        offsets.append(at)
    interaction = Interaction(
        id=0, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, url=CHAT, method="POST",
                              body='{"stream": true}', content_length=16),
        response=Response(proto="HTTP/2.0", proto_major=2, content_length=-1, body=body,
                          headers={"Content-Type": ["text/event-stream"]}, status="200 OK",
                          code=200, duration=int(duration * 1e9)))
    path = folder / "cassettes" / "paced.yaml"
    write_atomic(path, Cassette(interactions=[interaction]).dumps().encode())
    timing = Timing(0, body_hash(body), duration * 1e3, offsets, offsets[-1])
    write_atomic(sidecar_path(path), (timing.to_json() + "\n").encode())
    return offsets


def _event_arrivals(proxy: Proxy) -> tuple[float, list[float]]:
    with proxy.client() as client:
        started = time.monotonic()
        with client.stream("POST", CHAT, json={"stream": True},
                           headers={"X-Vcr-Cassette": "paced"}) as response:
            arrivals = [time.monotonic() - started for line in response.iter_lines() if line]
    return started, arrivals


@STARTS
def test_events_timing_follows_the_recorded_gaps(tmp_path, launcher):
    gaps = [0.3, 0.1, 0.4, 0.2]
    offsets = _stream_cassette(tmp_path, gaps)
    proxy = Proxy(tmp_path, **started_by(launcher, vcr_mode="replay", vcr_timing="events")).start()
    try:
        _, arrivals = _event_arrivals(proxy)
    finally:
        proxy.stop()
    measured = [b - a for a, b in zip(arrivals, arrivals[1:])]
    recorded_gaps = [(b - a) / 1e3 for a, b in zip(offsets, offsets[1:])]
    assert len(measured) == len(recorded_gaps)
    for got, want in zip(measured, recorded_gaps):
        assert got >= want * 0.8 - 0.005, (measured, recorded_gaps)
    # And the pacing is the recording's, not something slower by far.
    assert arrivals[-1] - arrivals[0] < sum(gaps) + 2.0


def test_speed_factor_and_no_timing(tmp_path):
    _stream_cassette(tmp_path, [0.4, 0.4])
    fast = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_speed="4").start()
    instant = Proxy(tmp_path / "i", vcr_mode="replay", vcr_dir=str(tmp_path / "cassettes")).start()
    try:
        _, paced = _event_arrivals(fast)
        _, unpaced = _event_arrivals(instant)
    finally:
        fast.stop()
        instant.stop()
    # Events are due at their recorded offsets from the request, a quarter of them at speed 4
    # (the last at 0.21 s): never sooner, however late the first one was.
    assert paced[-1] >= 0.8 * 0.2
    assert paced[-1] - paced[0] < 0.8
    assert unpaced[-1] - unpaced[0] < 0.4


def test_a_miss_is_a_json_error_naming_the_cassette_and_the_difference(tmp_path):
    path = tmp_path / "cassettes" / "default.yaml"
    interaction = Interaction(
        id=0, request=Request(url=CHAT, method="POST",
                              body=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
        response=Response(body='{"ok": true}', code=200, status="200 OK",
                          headers={"Content-Type": ["application/json"]}))
    write_atomic(path, Cassette(interactions=[interaction]).dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        with proxy.client() as client:
            # Same JSON, other key order and spacing: a hit.
            hit = client.post(CHAT, content=b'{"messages": [{"content": "hi", "role": "user"}], "model": "m"}')
            assert hit.status_code == 200 and hit.json() == {"ok": True}
            assert hit.headers["content-length"] == str(len(b'{"ok": true}'))
            assert hit.headers["content-type"] == "application/json"
            miss = client.post(CHAT, json={"model": "m", "messages": [{"role": "user", "content": "hello"}]})
        client = openai.OpenAI(api_key=TEST_KEY, http_client=proxy.client(),
                               base_url="https://openrouter.ai/api/v1", max_retries=0)
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "other"}])
    finally:
        proxy.stop()
    assert miss.status_code == 404
    message = miss.json()["error"]["message"]
    assert str(path) in message and "1 interaction(s)" in message
    assert '$.messages[0].content: recorded "hi", sent "hello"' in message
    assert "nearest is #0" in str(raised.value)
    assert message in proxy.output()


def test_identical_requests_replay_in_recorded_order_then_miss(tmp_path):
    path = tmp_path / "cassettes" / "default.yaml"
    interactions = [Interaction(id=n, request=Request(url=CHAT, method="POST", body="{}"),
                                response=Response(body=f"answer {n}", code=200, status="200 OK"))
                    for n in range(2)]
    write_atomic(path, Cassette(interactions=interactions).dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode="replay").start()
    repeating = Proxy(tmp_path / "r", vcr_mode="replay", vcr_allow_repeats="true",
                      vcr_dir=str(path.parent)).start()
    try:
        with proxy.client() as client:
            answers = [client.post(CHAT, content=b"{}") for _ in range(3)]
        with repeating.client() as client:
            repeated = [client.post(CHAT, content=b"{}").text for _ in range(3)]
    finally:
        proxy.stop()
        repeating.stop()
    assert [a.text for a in answers[:2]] == ["answer 0", "answer 1"]
    assert answers[2].status_code == 404 and "already replayed" in answers[2].json()["error"]["message"]
    assert repeated == ["answer 0", "answer 1", "answer 1"]


def test_fifty_concurrent_replays_all_succeed(tmp_path):
    _stream_cassette(tmp_path, [0.01, 0.01])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_allow_repeats="true", vcr_timing="events").start()

    async def one(client):
        async with client.stream("POST", CHAT, json={"stream": True},
                                 headers={"X-Vcr-Cassette": "paced"}) as response:
            return [line async for line in response.aiter_lines() if line]

    async def all_of_them():
        async with proxy.async_client() as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    try:
        results = asyncio.run(all_of_them())
    finally:
        proxy.stop()
    assert len(results) == 50 and all(r == results[0] for r in results)
    assert results[0][-1] == "data: [DONE]"


def test_a_changed_cassette_is_picked_up_and_a_broken_one_keeps_the_old(tmp_path):
    path = tmp_path / "cassettes" / "default.yaml"

    def cassette(text):
        return Cassette(interactions=[Interaction(id=0, request=Request(url=CHAT, method="POST", body="{}"),
                                                  response=Response(body=text, code=200, status="200 OK"))])

    write_atomic(path, cassette("first").dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_allow_repeats="true").start()
    try:
        with proxy.client() as client:
            assert client.post(CHAT, content=b"{}").text == "first"
            write_atomic(path, cassette("second").dumps().encode())
            assert client.post(CHAT, content=b"{}").text == "second"
            path.write_text("version: 2\ninteractions: [\n")
            assert client.post(CHAT, content=b"{}").text == "second"
    finally:
        proxy.stop()
    assert "still serving the previous contents" in proxy.output()


def test_new_episodes_replays_hits_and_records_misses(tmp_path, certificate):
    path = tmp_path / "cassettes" / "default.yaml"
    old = Interaction(id=0, request=Request(url=CHAT, method="POST", body='{"model": "old"}'),
                      response=Response(body="from the cassette", code=200, status="200 OK"))
    write_atomic(path, Cassette(interactions=[old]).dumps().encode())
    upstream = Upstream(*certificate).start()
    proxy = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="new-episodes",
                  vcr_upstream=upstream.url).start()
    try:
        with proxy.client() as client:
            assert client.post(CHAT, content=b'{"model": "old"}').text == "from the cassette"
            assert client.post(CHAT, json={"model": "new"}).json()["id"] == "gen-test-2"
    finally:
        proxy.stop()
        upstream.stop()
    cassette = recorded(path, 2)
    assert [i.id for i in cassette.interactions] == [0, 1]
    assert json.loads(cassette.interactions[1].request.body) == {"model": "new"}
    assert len(upstream.requests) == 1


def test_duration_timing_waits_the_recorded_time_to_headers(tmp_path):
    path = tmp_path / "cassettes" / "default.yaml"
    interaction = Interaction(id=0, request=Request(url=CHAT, method="POST", body="{}"),
                              response=Response(body='{"slow": true}', code=200, status="200 OK",
                                                duration=600_000_000,
                                                headers={"Content-Type": ["application/json"]}))
    write_atomic(path, Cassette(interactions=[interaction]).dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="duration").start()
    try:
        with proxy.client() as client:
            started = time.monotonic()
            response = client.post(CHAT, content=b"{}")
            took = time.monotonic() - started
    finally:
        proxy.stop()
    assert response.json() == {"slow": True}
    assert response.headers["content-length"] == str(len(b'{"slow": true}'))
    assert took >= 0.6 * 0.9


def anthropic_calls(proxy: Proxy, monkeypatch) -> list:
    import anthropic

    # The SDK's own HTTP client, configured by the environment alone.
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca))
    client = anthropic.Anthropic(api_key="sk-ant-api03-" + "k" * 40, max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-20250514", max_tokens=64,
                                     messages=[{"role": "user", "content": "Say hi in Italian"}])
    with client.messages.stream(model="claude-sonnet-4-20250514", max_tokens=64,
                                messages=[{"role": "user", "content": "Say hi in Italian"}]) as stream:
        events = [event.model_dump() for event in stream]
        final = stream.get_final_message().model_dump()
    return [message.model_dump(), events, final]


def test_anthropic_sdk_records_then_replays_offline(tmp_path, certificate, monkeypatch):
    upstream = Upstream(*certificate).start()
    recorder = Proxy(tmp_path, upstream_ca=certificate[0], vcr_upstream=upstream.url).start()
    try:
        original = anthropic_calls(recorder, monkeypatch)
        recorded(recorder.cassettes / "default.yaml", 2)
    finally:
        recorder.stop()
        upstream.stop()
    assert original[0]["content"][0]["text"] == "Ciao! 👋"
    assert original[2]["content"][0]["text"] == "Ciao! 👋"
    player = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        assert anthropic_calls(player, monkeypatch) == original
    finally:
        player.stop()
    assert "sk-ant-api03" not in (tmp_path / "cassettes" / "default.yaml").read_text()


@STARTS
def test_a_compressed_recording_goes_out_compressed_once(tmp_path, launcher):
    """A body recorded under Content-Encoding (a client that asked for gzip itself: go-vcr keeps
    its bytes as they came) goes out as it is; one kept decoded under that header is compressed
    as the header says. Never twice: the client decodes once and has the JSON."""
    import gzip

    from proxy_addon.timing import Timing, body_hash, sidecar_path

    payload = b'{"id": "gen-gzip", "choices": []}'
    stream = b'data: {"n": 0}\n\ndata: {"n": 1}\n\n'
    bodies = {"as-sent": gzip.compress(payload), "decoded": payload,
              "stream": gzip.compress(stream)}
    interactions = [
        Interaction(id=n, request=Request(url=CHAT, method="POST", body=json.dumps({"case": name})),
                    response=Response(body=body, code=200, status="200 OK",
                                      headers={"Content-Type": ["text/event-stream" if name == "stream"
                                                                else "application/json"],
                                               "Content-Encoding": ["gzip"]}))
        for n, (name, body) in enumerate(bodies.items())]
    path = tmp_path / "cassettes" / "default.yaml"
    write_atomic(path, Cassette(interactions=interactions).dumps().encode())
    timing = Timing(2, body_hash(interactions[2].response.body), 10, [20, 40], 40)
    write_atomic(sidecar_path(path), (timing.to_json() + "\n").encode())
    proxy = Proxy(tmp_path, **started_by(launcher, vcr_mode="replay", vcr_timing="events")).start()
    try:
        with proxy.client() as client:
            for name in bodies:
                with client.stream("POST", CHAT, content=json.dumps({"case": name})) as response:
                    raw = b"".join(response.iter_raw())
                assert response.status_code == 200, (name, raw[:300])
                assert response.headers["content-encoding"] == "gzip"
                assert gzip.decompress(raw) == (stream if name == "stream" else payload), name
    finally:
        proxy.stop()
