"""Record mode end to end: real mitmdump, real clients, a real local upstream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time

import openai
import pytest

from proxy_addon.cassette import load
from proxy_addon.errors import CassetteError
from proxy_addon.timing import read_sidecar, sidecar_path

from .proxy import Proxy
from .upstream import Upstream, free_port, make_certificate

TEST_KEY = "sk-or-v1-TESTKEY0123456789abcdefSECRET"
GOOGLE_KEY = "AIzaTESTGOOGLEKEY0123456789SECRET"
SECRETS = [TEST_KEY, GOOGLE_KEY, "SECRET-COOKIE-VALUE", "x-api-key-SECRET", "session-SECRET"]
CHAT = "https://openrouter.ai/api/v1/chat/completions"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module", params=["h2", "http1"])
def upstream(request, certificate):
    server = Upstream(*certificate, http2=request.param == "h2").start()
    yield server
    server.stop()


@pytest.fixture(params=[False, True], ids=["mitmdump", "vcr-proxy-start"])
def proxy(request, tmp_path, upstream, certificate):
    # `mitmdump -s proxy_addon/addon.py`, and `vcr-proxy start` with its lean mitmproxy.
    running = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record",
                    vcr_upstream=upstream.url, launcher=request.param).start()
    running.http2 = upstream.http2
    yield running
    running.stop()


def assert_no_secrets(folder):
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".log":
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret} leaked into {path}"


def recorded(path, count=1, timeout=10.0):
    """The cassette once it holds `count` interactions. A client that reads a stream's last
    event may hang up before the upstream's end of stream reaches the proxy, which saves the
    interaction then: a few milliseconds after the client has everything."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cassette = load(path)
            if len(cassette.interactions) >= count:
                return cassette
        except CassetteError:
            pass
        assert time.monotonic() < deadline, f"{path} did not reach {count} interactions"
        time.sleep(0.02)


def openai_client(proxy):
    return openai.OpenAI(api_key=TEST_KEY, http_client=proxy.client(),
                         base_url="https://openrouter.ai/api/v1", max_retries=0)


def test_openai_sdk_stream_is_recorded_as_go_vcr_records_it(proxy, upstream):
    client = openai_client(proxy)
    stream = client.chat.completions.create(
        model="moonshotai/kimi-k2-0905", stream=True,
        messages=[{"role": "user", "content": "What's the weather in Florence?"}],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}])
    chunks = list(stream)
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                        for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert arguments == '{"location":"Florence, Italy"}'

    path = proxy.cassettes / "default.yaml"
    cassette = recorded(path)
    assert len(cassette.interactions) == 1
    interaction = cassette.interactions[0]
    request, response = interaction.request, interaction.response
    assert (interaction.id, request.proto, request.proto_major, request.proto_minor) == (0, "HTTP/1.1", 1, 1)
    assert request.url == CHAT and request.method == "POST" and request.host == ""
    assert request.content_length == len(request.body.encode())
    assert json.loads(request.body)["stream"] is True
    assert set(request.headers) == {"Accept", "Content-Type", "User-Agent"}
    assert request.headers["Content-Type"] == ["application/json"]
    expected_proto = ("HTTP/2.0", 2, 0) if upstream.http2 else ("HTTP/1.1", 1, 1)
    assert (response.proto, response.proto_major, response.proto_minor) == expected_proto
    assert response.transfer_encoding == ([] if expected_proto[1] == 2 else ["chunked"])
    assert response.content_length == -1 and not response.uncompressed
    assert response.headers == {"Content-Type": ["text/event-stream"]}
    assert (response.status, response.code) == ("200 OK", 200)
    assert response.body.endswith("data: [DONE]\n\n") and response.body.count("data: ") == 7
    assert 0 < response.duration < 5e9
    # The file is exactly what Go would write for it, in the default layout.
    assert path.read_text() == cassette.dumps()
    assert "\n  - id: 0\n    request:\n        proto: HTTP/1.1\n" in path.read_text()
    timing = read_sidecar(sidecar_path(path))[0]
    assert len(timing.events_ms) == 7
    assert timing.events_ms == sorted(timing.events_ms)
    assert timing.events_ms[-1] - timing.events_ms[0] >= 0.05 * 5 * 1e3 * 0.5
    assert_no_secrets(proxy.folder)


def test_client_sees_event_one_before_upstream_sends_event_three(proxy, upstream):
    upstream.gate.clear()
    upstream.released_by_test = None
    with proxy.client() as client:
        with client.stream("POST", CHAT, json={"stream": True, "gated": True},
                           headers={"Authorization": f"Bearer {TEST_KEY}"}) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert "Checking" not in first
            upstream.gate.set()
            rest = [line for line in lines if line.startswith("data: ")]
    assert upstream.released_by_test is True
    assert rest[-1] == "data: [DONE]"
    assert len(recorded(proxy.cassettes / "default.yaml").interactions) == 1


def test_gzip_json_is_recorded_decoded_while_the_client_gets_the_upstream_bytes(proxy):
    with proxy.client() as client:
        response = client.get("https://openrouter.ai/gzip", headers={"Accept-Encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["choices"][0]["message"]["content"] == "Olá! 👋"
    saved = recorded(proxy.cassettes / "default.yaml").interactions[0].response
    assert saved.uncompressed is True and saved.content_length == -1
    assert json.loads(saved.body)["choices"][0]["message"]["content"] == "Olá! 👋"
    assert saved.headers == {"Content-Type": ["application/json"]}


def test_error_status_and_credentials_never_reach_the_disk(tmp_path, upstream, certificate):
    proxy = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record", vcr_headers="all",
                  vcr_upstream=upstream.url).start()
    proxy.http2 = upstream.http2
    try:
        with proxy.client() as client:
            response = client.get(
                f"https://generativelanguage.googleapis.com/status/429?alt=sse&key={GOOGLE_KEY}",
                headers={"Authorization": f"Bearer {TEST_KEY}", "x-api-key": "x-api-key-SECRET",
                         "X-Goog-Api-Key": GOOGLE_KEY, "Cookie": "session=session-SECRET",
                         "Api-Key": TEST_KEY})
            assert response.status_code == 429
        # The upstream did get the credentials: only the disk must not.
        assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"
        interaction = recorded(proxy.cassettes / "default.yaml").interactions[0]
        # The key keeps its place, so the cassette shows it was sent.
        assert interaction.request.url == ("https://generativelanguage.googleapis.com/status/429"
                                           "?alt=sse&key=REDACTED")
        assert interaction.request.form == {"alt": ["sse"], "key": ["REDACTED"]}
        assert (interaction.response.status, interaction.response.code) == ("429 Too Many Requests", 429)
        assert "Set-Cookie" not in interaction.response.headers
        assert "Content-Length" in interaction.response.headers
        assert_no_secrets(tmp_path)
    finally:
        proxy.stop()


def test_curl_through_the_proxy_is_recorded(proxy):
    result = subprocess.run(
        ["curl", "-sS", "--http2" if proxy.http2 else "--http1.1", "--proxy", proxy.url, "--cacert", str(proxy.ca),
         "-H", f"Authorization: Bearer {TEST_KEY}", "-H", "Content-Type: application/json",
         "-d", '{"model": "m", "messages": []}', CHAT], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "gen-test-2"
    interaction = recorded(proxy.cassettes / "default.yaml").interactions[0]
    assert interaction.request.headers["User-Agent"][0].startswith("curl/")
    assert interaction.response.content_length == len(interaction.response.body.encode())
    assert_no_secrets(proxy.folder)


def test_fifty_concurrent_streams_make_fifty_whole_unmixed_interactions(proxy):
    async def one(client, n):
        async with client.stream("POST", CHAT, json={"stream": True, "n": n},
                                 headers={"X-Vcr-Cassette": "many/streams"}) as response:
            return [line async for line in response.aiter_lines() if line]

    async def all_of_them():
        async with proxy.async_client() as client:
            return await asyncio.gather(*(one(client, n) for n in range(50)))

    results = asyncio.run(all_of_them())
    assert all(r[-1] == "data: [DONE]" and len(r) == 7 for r in results)
    cassette = recorded(proxy.cassettes / "many" / "streams.yaml", 50)
    assert len(cassette.interactions) == 50
    assert sorted(i.id for i in cassette.interactions) == list(range(50))
    assert sorted(json.loads(i.request.body)["n"] for i in cassette.interactions) == list(range(50))
    for interaction in cassette.interactions:
        assert interaction.response.body.count("data: ") == 7
        assert interaction.response.body.endswith("data: [DONE]\n\n")
    timings = read_sidecar(sidecar_path(proxy.cassettes / "many" / "streams.yaml"))
    assert sorted(timings) == list(range(50))


def test_long_streams_are_recorded_whole_in_gos_bytes(tmp_path, upstream, certificate, go_oracle):
    # Bodies over a megabyte take the recorder's low-memory path: kept as bytes, written to
    # the file in batches. The first makes the file, the second is appended. (The oracle's
    # yaml.v3 writes the indent4 layout.)
    proxy = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record", vcr_upstream=upstream.url,
                  vcr_layout="indent4").start()
    received = []
    try:
        with proxy.client(timeout=60) as client:
            for n in (40, 41):
                with client.stream("GET", f"https://openrouter.ai/events?n={n}&pad=60000",
                                   headers={"X-Vcr-Cassette": "long"}) as response:
                    received.append(b"".join(response.iter_raw()).decode())
    finally:
        proxy.stop()
    path = proxy.cassettes / "long.yaml"
    cassette = recorded(path, 2)
    assert min(len(body) for body in received) > 2_000_000
    assert sorted(i.response.body for i in cassette.interactions) == sorted(received)
    status, stable, resaved = go_oracle.round_trip(path.read_bytes())
    assert (status, stable) == (0, True)
    assert resaved == path.read_bytes()


def big_request(n: int, size: int = 2 << 20) -> bytes:
    """A chat request of `size` bytes (an image's worth) with credentials by name and by value."""
    return json.dumps({"model": f"m{n}", "api_key": "x-api-key-SECRET", "pad": "A" * size,
                       "messages": [{"role": "user",
                                     "content": f"my keys: {TEST_KEY} {GOOGLE_KEY}"}]}).encode()


def test_a_big_request_body_is_recorded_scrubbed_while_it_goes_upstream(proxy, upstream):
    # A body of a megabyte or more is scrubbed for the cassette in a thread while the request
    # goes upstream as it was sent (addon.view_later): the first request (the cassette not open
    # yet) and the next alike.
    bodies = [big_request(n) for n in range(2)]
    with proxy.client(timeout=60) as client:
        for body in bodies:
            response = client.post(CHAT, content=body, headers={
                "Authorization": f"Bearer {TEST_KEY}", "X-Goog-Api-Key": GOOGLE_KEY,
                "Content-Type": "application/json", "X-Vcr-Cassette": "big"})
            assert response.status_code == 200, response.text[:300]
    assert all(any(sent["body"] == body for sent in upstream.requests) for body in bodies)
    cassette = recorded(proxy.cassettes / "big.yaml", 2)
    for n, interaction in enumerate(cassette.interactions):
        recorded_body = json.loads(interaction.request.body)
        assert recorded_body["model"] == f"m{n}" and recorded_body["pad"] == "A" * (2 << 20)
        assert recorded_body["api_key"] == "REDACTED"
    assert_no_secrets(proxy.folder)
    output = proxy.output()
    for secret in SECRETS:
        assert secret not in output


def test_a_big_request_body_whose_upstream_is_down_is_not_recorded(tmp_path, certificate):
    # The upstream refuses the connection before the body's scrubbed view is made (16 MB take
    # longer to scan than a refusal takes): the client gets mitmproxy's 502, the log says it was
    # not recorded, and holds no credential.
    proxy = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record", launcher=True,
                  vcr_upstream=f"https://127.0.0.1:{free_port()}").start()
    try:
        with proxy.client(timeout=60) as client:
            response = client.post(f"{CHAT}?key={GOOGLE_KEY}", content=big_request(0, 16 << 20), headers={
                "Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
        assert response.status_code == 502
        deadline = time.monotonic() + 10
        while "not recorded" not in proxy.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proxy.stop()
    output = proxy.output()
    assert "vcr-proxy: not recorded: POST https://openrouter.ai/api/v1/chat/completions?key=REDACTED" in output
    assert not list(tmp_path.rglob("*.yaml"))
    for secret in SECRETS:
        assert secret not in output
    assert_no_secrets(tmp_path)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "a\\b"])
def test_cassette_header_outside_the_folder_is_refused(proxy, name):
    with proxy.client() as client:
        response = client.post(CHAT, json={}, headers={"X-Vcr-Cassette": name})
    assert response.status_code == 400
    assert "X-Vcr-Cassette" in response.json()["error"]["message"]
    assert not (proxy.cassettes.exists() and any(proxy.cassettes.rglob("*.yaml")))


def test_kill_9_mid_recording_leaves_a_cassette_that_loads(proxy, upstream):
    with proxy.client() as client:
        for _ in range(3):
            client.post(CHAT, json={"model": "m"})

    stop = threading.Event()

    def hammer():
        with proxy.client() as client:
            while not stop.is_set():
                try:
                    client.post(CHAT, json={"stream": True})
                except Exception:
                    return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    threading.Event().wait(1.0)
    proxy.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    cassette = recorded(proxy.cassettes / "default.yaml")
    assert len(cassette.interactions) >= 3
    assert (proxy.cassettes / "default.yaml").read_text() == cassette.dumps()


def test_a_cassette_that_does_not_load_is_never_overwritten(proxy):
    proxy.cassettes.mkdir(parents=True, exist_ok=True)
    broken = proxy.cassettes / "default.yaml"
    broken.write_text("version: 2\ninteractions: [\n")
    with proxy.client() as client:
        response = client.post(CHAT, json={})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert str(broken) in message and "\n" not in message
    assert broken.read_text() == "version: 2\ninteractions: [\n"
    assert "refusing to record over a cassette that does not load" in proxy.output()


def test_a_stream_the_upstream_cut_off_is_kept_marked_partial(proxy):
    with proxy.client() as client:
        client.post(CHAT, json={"model": "m"})
        with pytest.raises(Exception):
            with client.stream("GET", "https://openrouter.ai/drop") as response:
                for _ in response.iter_bytes():
                    pass
    cassette = recorded(proxy.cassettes / "default.yaml", 2)
    assert [i.request.url for i in cassette.interactions] == [CHAT, "https://openrouter.ai/drop"]
    partial = cassette.interactions[1]
    assert partial.response.headers["X-Vcr-Partial"] == ["true"]
    assert partial.response.body == "data: 1\n\n"
    assert "recorded as partial: GET https://openrouter.ai/drop" in proxy.output()


def test_a_client_that_hangs_up_mid_stream_leaves_no_half_interaction(proxy):
    with proxy.client() as client:
        client.post(CHAT, json={"model": "m"})
        with client.stream("GET", "https://openrouter.ai/hang") as response:
            assert next(response.iter_lines()) == "data: 1"
    deadline = time.monotonic() + 10
    while "not recorded: GET https://openrouter.ai/hang" not in proxy.output():
        assert time.monotonic() < deadline, proxy.output()
        time.sleep(0.05)
    cassette = recorded(proxy.cassettes / "default.yaml")
    assert [i.request.url for i in cassette.interactions] == [CHAT]


def test_sequential_exchanges_are_saved_in_the_order_they_ended(proxy):
    """Saves run after the client has its answer; a large exchange takes longer to turn into
    an interaction than a small one that ends just after it, and must still come first in the
    file: go-vcr replays identical requests in file order."""
    large = json.dumps({"messages": [{"role": "user", "content": f"line {n} " * 20}
                                     for n in range(4000)]})
    with proxy.client() as client:
        for _ in range(3):
            assert client.post("https://openrouter.ai/echo", content=large).status_code == 200
            assert client.post(CHAT, json={"n": 1}).status_code == 200
    cassette = recorded(proxy.cassettes / "default.yaml", 6)
    assert [i.id for i in cassette.interactions] == [0, 1, 2, 3, 4, 5]


def test_an_error_the_api_said_not_to_retry_is_not_retried_on_replay(tmp_path, certificate):
    # OpenAI marks some errors `x-should-retry: false`; the SDK retries a 500 without it. Were
    # the header not recorded, the replayed 500 would be retried, and the retry be a miss.
    upstream = Upstream(*certificate, http2=False).start()

    def call(proxy: Proxy):
        http_client = proxy.client()
        client = openai.OpenAI(api_key=TEST_KEY, base_url="https://api.openai.com", max_retries=2,
                               http_client=http_client)
        with pytest.raises(openai.APIStatusError) as raised:
            client.get("/status/500", cast_to=object, options={"params": {"no_retry": "1"}})
        http_client.close()
        return raised.value.status_code

    try:
        recording = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record",
                          vcr_upstream=upstream.url).start()
        try:
            assert call(recording) == 500
        finally:
            recording.stop()
        assert len(upstream.requests) == 1
        replaying = Proxy(tmp_path, vcr_mode="replay").start()
        try:
            assert call(replaying) == 500
        finally:
            replaying.stop()
        assert len(upstream.requests) == 1
    finally:
        upstream.stop()
