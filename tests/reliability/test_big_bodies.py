"""One big request must not stall or break the proxy: a body past vcr_max_body is refused with a
one-line 413 as it arrives, whatever way it is sent (a declared length, chunks, HTTP/2), in
record and in replay; memory stays where it was, the upstream never sees it, and every other
client is answered meanwhile."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.proxy import Proxy
from tests.upstream import Upstream, make_certificate

MiB = 1 << 20
URL = "https://openrouter.ai/api/v1/chat/completions"
LIMIT = MiB
SIZE = 200 * MiB


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream")
    cert, key = make_certificate(folder)
    server = Upstream(cert, key).start()
    server.cert = cert
    yield server
    server.stop()


def refused(text: str) -> bool:
    return ("vcr-proxy: refused POST https://openrouter.ai/api/v1/chat/completions" in text
            and "larger than vcr_max_body (1,048,576 bytes)" in text and "\n" not in text.strip())


@pytest.mark.parametrize("mode", ["record", "replay"])
def test_a_body_past_vcr_max_body_is_refused_as_it_arrives(tmp_path, upstream, mode):
    proxy = Proxy(tmp_path / "proxy", upstream_ca=upstream.cert, vcr_mode=mode,
                  vcr_upstream=upstream.url, vcr_max_body=str(LIMIT)).start()
    try:
        at_rest = rss_mib(proxy.process.pid)
        sparse = tmp_path / "big.json"
        with open(sparse, "wb") as handle:
            handle.truncate(SIZE)  # 200 MiB the client sends with a Content-Length
        curl = ["curl", "-sS", "-x", proxy.url, "--cacert", str(proxy.ca), "-w", "\n%{http_code}",
                "-H", "Content-Type: application/json"]
        probes: list[int] = []
        stop = threading.Event()

        def probe():  # another client, answered all along
            with proxy.client(timeout=30) as client:
                while not stop.is_set():
                    probes.append(client.post(URL, json={"model": "probe", "messages": []}).status_code)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            declared = subprocess.run(curl + ["--http1.1", "--data-binary", f"@{sparse}", URL],
                                      capture_output=True, text=True, timeout=120)
            chunked = subprocess.run(
                f"head -c {SIZE} /dev/zero | " + shlex.join(curl) +
                f" --http1.1 -H 'Transfer-Encoding: chunked' --data-binary @- {URL}",
                shell=True, capture_output=True, text=True, timeout=120)
            with proxy.client(http2=True, timeout=60) as client:
                over_h2 = client.post(URL, content=(bytes(MiB) for _ in range(SIZE // MiB)))
        finally:
            stop.set()
            prober.join(60)
        for result in (declared, chunked):
            body, _, status = result.stdout.rpartition("\n")
            assert status == "413", (result.stdout[-500:], result.stderr[-500:])
            assert refused(body), body
        assert over_h2.status_code == 413 and refused(over_h2.text), over_h2.text
        # The probe was answered throughout: recorded (200) or missed (404), never stalled.
        assert probes and set(probes) <= {200, 404}, probes
        assert rss_mib(proxy.process.pid) < 1.5 * at_rest + 20
        # Nothing of it reached the upstream, nor a cassette.
        assert not [r for r in upstream.requests if len(r["body"]) > LIMIT]
        for path in (tmp_path / "proxy").rglob("*.yaml"):
            assert path.stat().st_size < LIMIT
        assert proxy.output().count("larger than vcr_max_body") == 3
        # And a request within the limit on a new connection is handled as ever.
        with proxy.client() as client:
            small = client.post(URL, content=b'{"model": "m", "messages": [], "pad": "'
                                + b"x" * (LIMIT // 2) + b'"}')
        assert small.status_code == (200 if mode == "record" else 404)
    finally:
        proxy.stop()


def test_a_body_within_the_limit_to_a_passthrough_host_is_not_refused(tmp_path, upstream):
    # The limit is vcr-proxy's, for what it records or replays: a host it lets through (a
    # download in a dev shell) is none of its business.
    proxy = Proxy(tmp_path / "proxy", upstream_ca=upstream.cert, vcr_mode="record",
                  vcr_max_body=str(LIMIT)).start()
    try:  # 127.0.0.1 is no recorded host: its TLS passes through, the upstream's own
        with httpx.Client(proxy=proxy.url, verify=str(upstream.cert)) as client:
            response = client.post(f"{upstream.url}/v1/chat/completions",
                                   content=b'{"pad": "' + b"x" * (2 * LIMIT) + b'"}')
        assert response.status_code == 200
    finally:
        proxy.stop()


def write_large_cassette(path, count: int) -> None:
    """`count` distinct chat interactions: a cassette that takes many seconds to load."""
    from proxy_addon.cassette import Cassette, Interaction, Request, Response

    interactions = [Interaction(
        id=n, request=Request(url=URL, method="POST", headers={"Content-Type": ["application/json"]},
                              body=f'{{"model": "m", "messages": [{{"role": "user", "content": "question {n}"}}]}}'),
        response=Response(body=f'{{"id": "gen-{n}", "choices": [{{"message": {{"content": "answer {n}"}}}}]}}',
                          code=200, status="200 OK", headers={"Content-Type": ["application/json"]}))
        for n in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    # A comment is not what Go writes: the fast reader leaves the file to PyYAML, whose load
    # of it takes seconds (the fast reader's takes about one).
    path.write_text("# slow to load\n" + Cassette(interactions=interactions).dumps())


def test_sigterm_stops_the_proxy_while_a_large_cassette_loads(tmp_path):
    # Loading 50,000 interactions through PyYAML takes far longer than the wait below (16 s
    # here): the proxy must not wait for the load to finish before it stops.
    write_large_cassette(tmp_path / "proxy" / "cassettes" / "default.yaml", 50_000)
    proxy = Proxy(tmp_path / "proxy", launcher=True, vcr_mode="replay").start()
    answered: list[str] = []

    def ask():
        try:
            with proxy.client(timeout=120) as client:
                answered.append(str(client.post(URL, content=b"{}").status_code))
        except Exception as error:  # the proxy stopped under it: expected
            answered.append(type(error).__name__)

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(2)  # the request is in, the cassette loading
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.process.wait(timeout=10) == 0, proxy.output()[-2000:]
    asker.join(30)
    assert answered and answered[0] != "200"


BIG_BODIES = 6
BIG_BODY = 32 * MiB


def image_request(seed: int) -> bytes:
    """A chat request carrying an image as base64, as a multimodal client sends it."""
    image = base64.b64encode(os.urandom(BIG_BODY * 3 // 4)).decode()
    return json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"What is in picture {seed}?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]}).encode()


@pytest.fixture(scope="module")
def http1_upstream(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream")
    cert, key = make_certificate(folder)
    server = Upstream(cert, key, http2=False).start()
    server.cert = cert
    yield server
    server.stop()


def test_memory_returns_after_big_bodies_are_recorded(tmp_path, http1_upstream):
    # Each body was held after it was recorded: by mitmproxy's flow objects, reference cycles the
    # garbage collector was in no hurry to free (it counts objects made, not bytes), and by the
    # upstream connection's TLS buffer, grown to the largest body sent and never shrunk. Six
    # bodies of 50 MB left the proxy at 6.6x its RSS at rest.
    upstream = http1_upstream  # an HTTP/2 stand-in takes seconds to read each body
    proxy = Proxy(tmp_path / "proxy", upstream_ca=upstream.cert, launcher=True, vcr_mode="record",
                  vcr_upstream=upstream.url).start()
    try:
        with proxy.client(timeout=120) as client:
            # At rest: started, and one small request recorded (what recording loads is loaded).
            assert client.post(URL, json={"model": "m", "messages": []}).status_code == 200
            deadline = time.monotonic() + 30
            while "recorded POST" not in proxy.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            at_rest = rss_mib(proxy.process.pid)
            for seed in range(BIG_BODIES):
                body = image_request(seed)
                response = client.post(URL, content=body,
                                       headers={"Content-Type": "application/json"})
                assert response.status_code == 200, response.text[:300]
                del body
                upstream.requests.clear()  # the stand-in's copies, not the proxy's
            # Every body recorded (each on disk when its save completes)...
            deadline = time.monotonic() + 120
            while (proxy.output().count("recorded POST") < BIG_BODIES + 1
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            assert proxy.output().count("recorded POST") == BIG_BODIES + 1, proxy.output()[-2000:]
            cassette = tmp_path / "proxy" / "cassettes" / "default.yaml"
            assert cassette.stat().st_size > BIG_BODIES * BIG_BODY
            # ... and the memory they took handed back, the client still connected: looked at
            # until it is, for at most 20 s (the proxy looks again for a few seconds).
            deadline = time.monotonic() + 20
            after = rss_mib(proxy.process.pid)
            while after > 1.5 * at_rest and time.monotonic() < deadline:
                time.sleep(0.5)
                after = rss_mib(proxy.process.pid)
            assert after <= 1.5 * at_rest, (at_rest, after)
    finally:
        proxy.stop()


def test_a_cassette_load_freezes_no_garbage():
    """collector.settle() (after each cassette load) takes what is alive out of the collector's
    sight: a dead flow's reference cycle not yet collected then must not go with it, or every
    cassette a test run loads keeps one more for good."""
    import gc
    import weakref

    from proxy_addon import collector

    class Cycle:
        pass

    dead = Cycle()
    dead.itself, dead.body = dead, bytes(1 << 20)
    gone = weakref.ref(dead)
    del dead
    try:
        collector.settle()
        assert gone() is None
    finally:
        gc.unfreeze()
