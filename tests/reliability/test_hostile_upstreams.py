"""What upstreams and disks do that a plain request/response does not: WebSockets, HTTP/2
trailers, a full disk. Each through the real proxy."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request, TextMessage

from proxy_addon.cassette import Cassette, Interaction, Request as RecordedRequest, Response
from proxy_addon.persisters.filesystem import write_atomic

from ..proxy import Proxy
from ..test_record import recorded
from ..upstream import Upstream, make_certificate

HOST = "openrouter.ai"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = Upstream(cert, key, http2=True).start()
    server.cert = cert
    yield server
    server.stop()


def websocket(proxy: Proxy, path: str, text: str) -> str | int:
    """One message over a WebSocket through the proxy: the echo, or the refusal's status."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        with ssl.create_default_context(cafile=proxy.ca).wrap_socket(raw, server_hostname=HOST) as tls:
            connection = WSConnection(ConnectionType.CLIENT)
            tls.sendall(connection.send(Request(host=HOST, target=path)))
            while True:
                connection.receive_data(tls.recv(65536) or None)
                for event in connection.events():
                    if isinstance(event, AcceptConnection):
                        tls.sendall(connection.send(Message(data=text)))
                    elif isinstance(event, RejectConnection):
                        return event.status_code
                    elif isinstance(event, TextMessage):
                        tls.sendall(connection.send(CloseConnection(code=1000)))
                        return event.data
                    elif isinstance(event, CloseConnection):
                        return event.code


@pytest.mark.parametrize("mode", ["record", "new-episodes", "once"])
def test_websockets_are_recorded_beside_the_cassette(tmp_path, upstream, mode):
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode=mode).start()
    try:
        assert websocket(proxy, "/v1/realtime?model=gpt-realtime", "hello") == "echo: hello"
        time.sleep(0.3)  # the hooks that follow a WebSocket's end
    finally:
        proxy.stop()
    output = proxy.output()
    assert "recorded WebSocket wss://openrouter.ai/v1/realtime?model=gpt-realtime: 2 messages" in output
    assert "Traceback" not in output and "Addon error" not in output
    # The go-vcr cassette holds HTTP exchanges only: the session goes to its sidecar.
    assert not (proxy.cassettes / "default.yaml").exists()
    lines = (proxy.cassettes / "default.realtime.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["open", "message", "message", "close"]


def test_websockets_without_a_recording_are_refused_in_replay_mode(tmp_path):
    proxy = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        assert websocket(proxy, "/v1/realtime", "hello") == 404
    finally:
        proxy.stop()
    assert "holds no WebSocket session" in proxy.output() and "Traceback" not in proxy.output()


def _curl_http2(proxy: Proxy, url: str) -> str:
    result = subprocess.run(["curl", "-s", "--http2", "--proxy", proxy.url, "--cacert", str(proxy.ca),
                             "-H", "TE: trailers", "-D", "-", "-o", "/dev/null", url],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.lower()


def test_http2_trailers_are_recorded_and_replayed(tmp_path, upstream):
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode="record",
                      vcr_headers="all").start()
    try:
        assert "grpc-status: 0" in _curl_http2(recording, f"https://{HOST}/trailers")
        interaction = recorded(recording.cassettes / "default.yaml").interactions[0]
    finally:
        recording.stop()
    assert interaction.response.trailer == {"Grpc-Status": ["0"], "Grpc-Message": ["fine"]}
    replaying = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        replayed = _curl_http2(replaying, f"https://{HOST}/trailers")
    finally:
        replaying.stop()
    assert "grpc-status: 0" in replayed and "grpc-message: fine" in replayed


@pytest.fixture
def full_disk(tmp_path):
    """A real 256 KiB tmpfs (root may mount one), else a folder where every write fails."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_an_interaction_that_cannot_be_saved_is_loud(tmp_path, upstream, full_disk):
    folder, mounted = full_disk
    # Without a tmpfs, a body over vcr_max_body is the failure to save.
    extra = {} if mounted else {"vcr_max_body": "1000"}
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode="record",
                  vcr_dir=str(folder), launcher=True, **extra)
    proxy.start()
    try:
        with proxy.control() as client:
            client.post("http://vcr-proxy.control/cassette", json={"name": "t", "mode": "record"})
            with client.stream("GET", f"https://{HOST}/events?n=40&pad=20000") as response:
                body = b"".join(response.iter_bytes())
            assert response.status_code == 200 and body.count(b"data: ") == 40  # the client is served
            report = client.post("http://vcr-proxy.control/eject").json()
        assert report["recorded"] == [] and len(report["failed"]) == 1
        assert "GET https://openrouter.ai/events" in report["failed"][0]
        proxy.process.send_signal(signal.SIGINT)
        assert proxy.process.wait(20) == 1
    finally:
        proxy.stop()
    output = proxy.output()
    assert "1 interaction(s) could not be saved" in output and "Traceback" not in output


def test_grpc_trailers_in_a_cassette_are_served_over_http2(tmp_path):
    interaction = Interaction(
        id=0, request=RecordedRequest(url=f"https://{HOST}/g", method="GET"),
        response=Response(proto="HTTP/2.0", proto_major=2, body="ok", status="200 OK", code=200,
                          headers={"Content-Type": ["text/plain"]},
                          trailer={"Grpc-Status": ["7"], "Grpc-Message": ["denied"]}))
    write_atomic(tmp_path / "cassettes" / "default.yaml", Cassette(interactions=[interaction]).dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        replayed = _curl_http2(proxy, f"https://{HOST}/g")
    finally:
        proxy.stop()
    assert "grpc-status: 7" in replayed and "grpc-message: denied" in replayed
