"""The direct replay front (vcr_front=direct, proxy_addon/front/): replay-mode HTTPS connections
answered without mitmproxy's layers, by the addon's own request logic. The same replays as
mitmproxy's (tests/test_replay.py and test_faults.py run through both fronts too); here what is
the front's own: its connections, its parser, and what it hands to mitmproxy."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import httpx
import openai
import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.persisters.filesystem import write_atomic

from .proxy import Proxy
from .reliability.test_mode_switch import _connect
from .test_realtime_attacks import Bait
from .test_paced_replay import GAPS, PACED, _read_stream, _tcp_sockets
from .test_replay import _stream_cassette

CHAT = "https://openrouter.ai/api/v1/chat/completions"
CONTROL = "http://vcr-proxy.control"
KEY = "sk-or-v1-FRONTKEY0123456789abcdefSECRET"
COMPLETION = {"id": "gen-front-1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hello"}}]}


def _completion_cassette(folder) -> None:
    interaction = Interaction(
        id=0, request=Request(url=CHAT, method="POST", body='{"messages":[],"model":"m"}',
                              headers={"Content-Type": ["application/json"]}),
        response=Response(body=json.dumps(COMPLETION), code=200, status="200 OK",
                          headers={"Content-Type": ["application/json"]}))
    write_atomic(folder / "cassettes" / "default.yaml",
                 Cassette(interactions=[interaction]).dumps().encode())


@pytest.fixture
def front(tmp_path):
    offsets = _stream_cassette(tmp_path, GAPS)
    _completion_cassette(tmp_path)
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_timing="events",
                  vcr_allow_repeats="true", vcr_front="direct", vcr_max_body="100000").start()
    yield proxy, [offset / 1e3 for offset in offsets]
    proxy.stop()


def _front_status(proxy: Proxy) -> dict:
    with proxy.control() as control:
        return control.get(f"{CONTROL}/status").json()["front"]


def _tunnel(proxy: Proxy, host: str = "openrouter.ai", sni: str | None = None) -> ssl.SSLSocket:
    """A raw TLS connection through the proxy's CONNECT to `host` (SNI `sni`, else `host`)."""
    context = ssl.create_default_context(cafile=str(proxy.ca))
    return context.wrap_socket(_connect(proxy, f"{host}:443"), server_hostname=sni or host)


def _read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while piece := sock.recv(65536):
            data += piece
    except (ConnectionError, ssl.SSLError, TimeoutError):
        pass
    return data


def _no_key_anywhere(proxy: Proxy, folder) -> None:
    assert KEY not in proxy.output()
    for path in folder.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_sdk_requests_share_one_connection_and_streams_keep_their_gaps(front):
    proxy, offsets = front
    recorded = load(proxy.cassettes / "paced.yaml").interactions[0].response.body.encode()
    http_client = proxy.client()
    sdk = openai.OpenAI(api_key=KEY, base_url="https://openrouter.ai/api/v1", http_client=http_client,
                        max_retries=0)
    for _ in range(3):
        assert sdk.chat.completions.create(model="m", messages=[]).id == "gen-front-1"
    arrivals, body, version = _read_stream(http_client, CHAT, PACED)
    http_client.close()
    assert body == recorded and version == "HTTP/1.1"
    assert len(arrivals) == len(offsets)
    assert all(arrived >= due * 0.8 - 0.005 for arrived, due in zip(arrivals, offsets)), arrivals
    status = _front_status(proxy)
    assert status["kind"] == "direct" and status["connections"] == 1, status  # kept alive


def test_an_http2_client_is_answered_over_http1(front):
    proxy, _ = front
    with proxy.client(http2=True) as client:
        response = client.post(CHAT, json={"messages": [], "model": "m"})
    assert response.json()["id"] == "gen-front-1" and response.http_version == "HTTP/1.1"
    assert _front_status(proxy)["connections"] == 1


def test_curl_over_http10_and_head_requests(front):
    proxy, _ = front
    recorded = load(proxy.cassettes / "paced.yaml").interactions[0].response.body.encode()
    base = ["curl", "-sS", "-x", proxy.url, "--cacert", str(proxy.ca)]
    # HTTP/1.0 knows no chunks: the stream's bytes as recorded, ended by the connection's end.
    old = subprocess.run(base + ["--http1.0", "-H", "X-Vcr-Cassette: paced", "-d", '{"stream": true}',
                                 CHAT], capture_output=True, timeout=30)
    assert old.returncode == 0 and old.stdout == recorded, old
    head = subprocess.run(base + ["-I", CHAT], capture_output=True,
                          timeout=30, text=True)
    assert head.stdout.startswith("HTTP/1.1 200 Connection established")
    assert "HTTP/1.1 404" in head.stdout  # a HEAD was never recorded: its miss, without a body


def test_fifty_concurrent_connections_each_get_their_stream(front):
    proxy, offsets = front
    recorded = load(proxy.cassettes / "paced.yaml").interactions[0].response.body.encode()
    bodies: list[bytes] = []

    def one() -> None:
        with proxy.client() as client:
            bodies.append(_read_stream(client, CHAT, PACED)[1])

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert bodies == [recorded] * 50
    status = _front_status(proxy)
    assert status["connections"] == 50 and status["open"] == 0, status


def test_a_miss_names_the_cassette_and_holds_no_credential(front, tmp_path):
    proxy, _ = front
    with proxy.client() as client:
        response = client.post(CHAT, json={"messages": [{"role": "user", "content": KEY}], "model": "m"},
                               headers={"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY})
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "default.yaml" in message and "nearest is #0" in message and "\n" not in message
    assert KEY not in response.text
    _no_key_anywhere(proxy, tmp_path)


def test_bad_requests_get_one_line_and_no_echo(front, tmp_path):
    proxy, _ = front
    sock = _tunnel(proxy)
    sock.sendall(f"POST /api/v1/chat {KEY} completions HTTP/1.1\r\nHost: openrouter.ai\r\n\r\n".encode())
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400") and KEY.encode() not in answer, answer
    assert b"could not be read as HTTP/1.1" in answer

    # Past vcr_max_body: refused on its headers, the body never read.
    sock = _tunnel(proxy)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\n"
                 b"Content-Length: 5000000\r\n\r\n")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"vcr_max_body" in answer, answer

    # Both a length and chunks: which one ends the body is ambiguous (request smuggling).
    sock = _tunnel(proxy)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\n"
                 b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 400")

    # A chunked body, and Expect: 100-continue, are read as any client sends them.
    sock = _tunnel(proxy)
    body = b'{"messages":[],"model":"m"}'
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\nConnection: close\r\n"
                 b"Expect: 100-continue\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200") and b"gen-front-1" in answer
    output = proxy.output()
    assert "Traceback" not in output and KEY not in output
    _no_key_anywhere(proxy, tmp_path)


def test_host_and_sni_must_name_the_tunnel_target(front):
    proxy, _ = front
    sock = _tunnel(proxy, sni="api.openai.com")  # the certificate names both: the 400 is read
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\nContent-Length: 2\r\n\r\n{}")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"api.openai.com" in answer, answer
    sock = _tunnel(proxy)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"not forwarded" in answer, answer
    # Absolute-form targets inside a tunnel are not requests for the tunnel's host.
    sock = _tunnel(proxy)
    sock.sendall(b"GET https://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 400")


def test_websockets_are_refused_in_one_line(front):
    proxy, _ = front
    sock = _tunnel(proxy, "api.openai.com")
    sock.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 501") and b"vcr_front=mitmproxy" in answer, answer


def test_nothing_leaves_the_machine_and_no_socket_is_opened(tmp_path):
    _stream_cassette(tmp_path, GAPS)
    upstream = Bait()
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_timing="events",
                  vcr_front="direct", vcr_upstream=f"https://127.0.0.1:{upstream.port}").start()
    try:
        with proxy.client() as client:
            assert client.post(CHAT, json={"other": 1}, headers=PACED).status_code == 404
            assert client.post(CHAT, json={}, headers={"X-Vcr-Cassette": "missing"}).status_code == 404
            with client.stream("POST", CHAT, json={"stream": True}, headers=PACED) as response:
                pieces = response.iter_raw()
                next(pieces)
                mine = _tcp_sockets(proxy.process.pid)
                for _ in pieces:
                    pass
        assert _front_status(proxy)["connections"] == 1
    finally:
        proxy.stop()
        upstream.socket.close()
    assert upstream.accepted == 0
    remote = [port for _, port in mine if port and port != proxy.port]
    assert len(remote) == 1, mine  # the client's connection, and nothing of the proxy's own


def test_a_mode_switch_closes_front_connections_unforwarded(tmp_path):
    """A connection the front took while replaying is not reused to record: its next request
    is answered 503 and not forwarded, and the client's next connection goes to mitmproxy."""
    _completion_cassette(tmp_path)
    upstream = Bait()
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_front="direct",
                  vcr_allow_repeats="true", vcr_upstream=f"https://127.0.0.1:{upstream.port}").start()
    try:
        with proxy.client() as client, proxy.control() as control:
            assert client.post(CHAT, json={"messages": [], "model": "m"}).status_code == 200
            selected = control.post(f"{CONTROL}/cassette", json={"name": "fresh", "mode": "record"})
            assert selected.status_code == 200
            stale = client.post(CHAT, json={"messages": [], "model": "m"})
            assert stale.status_code == 503 and "switched to record mode" in stale.text
            assert stale.headers["connection"] == "close"
            assert upstream.accepted == 0
            # A new connection: mitmproxy's, recording (the upstream here accepts and hangs up).
            client.post(CHAT, json={"messages": [], "model": "m"})
            assert upstream.accepted >= 1
            control.post(f"{CONTROL}/eject")
        with proxy.client() as client:  # replaying again: the front's
            assert client.post(CHAT, json={"messages": [], "model": "m"}).status_code == 200
        assert _front_status(proxy)["connections"] == 2
    finally:
        proxy.stop()
        upstream.socket.close()


def test_other_connections_go_to_mitmproxy(tmp_path):
    _completion_cassette(tmp_path)
    passthrough = Bait()
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_front="direct",
                  vcr_passthrough_hosts="localhost").start()
    try:
        # The control host, over plain HTTP; a passthrough host's tunnel, relayed untouched.
        with proxy.control() as control:
            assert control.get(f"{CONTROL}/status").status_code == 200
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            raw.sendall(f"CONNECT localhost:{passthrough.port} HTTP/1.1\r\n\r\n".encode())
            assert raw.recv(100).startswith(b"HTTP/1.1 200")
            raw.sendall(b"hello")
            deadline = time.monotonic() + 10
            while not passthrough.accepted and time.monotonic() < deadline:
                time.sleep(0.05)
        assert passthrough.accepted == 1
        assert _front_status(proxy)["connections"] == 0
        # Any other host is replayed, or missed, as mitmproxy's path does in replay mode.
        with proxy.client() as client:
            missed = client.get("https://example.com/")
        assert missed.status_code == 404 and "default.yaml" in missed.text
        assert _front_status(proxy)["connections"] == 1
    finally:
        proxy.stop()
        passthrough.socket.close()


def test_clients_leaving_mid_stream_and_a_stop_leave_no_trace(front):
    proxy, offsets = front
    for _ in range(3):
        with proxy.client() as client:
            with client.stream("POST", CHAT, json={"stream": True}, headers=PACED) as response:
                next(response.iter_raw())
    time.sleep(sum(GAPS) + 0.2)
    assert _front_status(proxy)["open"] == 0
    # Streams under way when the proxy is told to stop: it stops, in one piece.
    clients = [subprocess.Popen(["curl", "-sS", "-N", "-x", proxy.url, "--cacert", str(proxy.ca),
                                 "-H", "X-Vcr-Cassette: paced", "-d", "{}", CHAT],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(5)]
    time.sleep(0.3)
    os.killpg(proxy.process.pid, signal.SIGTERM)
    assert proxy.process.wait(10) is not None
    for curl in clients:
        curl.wait(10)
    output = proxy.output()
    assert "Traceback" not in output and "Task was destroyed" not in output, output


def test_workers_serve_through_the_direct_front_by_default(tmp_path):
    _stream_cassette(tmp_path, [0.05])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True, workers=2).start()
    try:
        with proxy.client() as client:
            for _ in range(4):
                assert _read_stream(client, CHAT, PACED)[1].endswith(b"data: [DONE]\n\n")
        assert _front_status(proxy)["kind"] == "direct"
    finally:
        proxy.stop()
