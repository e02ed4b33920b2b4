"""A connection opened before replay must not reach the network after it: replay decides per
request, whatever connection the request comes on. Each test opens a path to a real local
upstream while the proxy lets traffic through, switches the proxy to replay the ways a test
runner or a user does, and checks that the upstream hears nothing more."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

from ..proxy import Proxy, control_client
from ..test_pytest_plugin import upstream  # noqa: F401  (a local HTTPS upstream per test)

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
OPTION_SWITCH = HERE / "option_switch.py"


def _trusting(*cafiles: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafiles[0]))
    for cafile in cafiles[1:]:
        context.load_verify_locations(cafile=str(cafile))
    return context


def _connect(proxy: Proxy, target: str) -> socket.socket:
    """A socket through which the proxy has opened a CONNECT tunnel to `target`."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return raw


def _connect_tunnel(proxy: Proxy, port: int, cafile: Path) -> ssl.SSLSocket:
    """CONNECT 127.0.0.1:port through the proxy, TLS inside: a client's pooled connection."""
    return _trusting(cafile).wrap_socket(_connect(proxy, f"127.0.0.1:{port}"),
                                         server_hostname="127.0.0.1")


def _chat(port: int, n: int) -> bytes:
    body = json.dumps({"n": n}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _answer(tls: ssl.SSLSocket) -> bytes:
    """What comes back for one request: the response head and body, or b"" if the connection
    was closed instead."""
    data = b""
    try:
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if _ and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return data
    except (ConnectionError, ssl.SSLError, TimeoutError):
        return data


def _switch(proxy: Proxy, how: str, mode: str = "replay") -> None:
    """Put the proxy in `mode` the way a runner or a user does."""
    if how == "http":
        with control_client(proxy) as control:
            answer = control.post("http://vcr-proxy.control/cassette", json={"name": "t", "mode": mode})
            assert answer.status_code == 200, answer.text
    elif how == "socket":
        with socket.socket(socket.AF_UNIX) as channel:
            channel.settimeout(30)
            channel.connect(proxy.control_socket)
            channel.sendall(json.dumps({"method": "POST", "path": "/cassette",
                                        "body": {"name": "t", "mode": mode}}).encode() + b"\n")
            line = channel.makefile("rb").readline()
            assert json.loads(line)["status"] == 200, line
    elif how == "eject":  # the configured mode is replay; a selection let traffic through
        with control_client(proxy) as control:
            assert control.post("http://vcr-proxy.control/eject").status_code == 200
    elif how == "option":  # vcr_mode itself changed while the proxy runs
        with httpx.Client(proxy=proxy.url) as client:
            assert client.get(f"http://option-switch.test/?vcr_mode={mode}").status_code == 200
    else:
        raise AssertionError(how)


def _proxy(tmp_path: Path, how: str, launcher: bool = False, **options) -> Proxy:
    if how == "eject":
        options.setdefault("vcr_mode", "replay")
    else:
        options.setdefault("vcr_mode", "passthrough")
    if how == "socket":
        options["vcr_control_socket"] = str(tmp_path / "control")
    proxy = Proxy(tmp_path, launcher=launcher, **options)
    proxy.control_socket = options.get("vcr_control_socket")
    if how == "option":
        proxy.args += ["-s", str(OPTION_SWITCH)]
    proxy.start()
    if how == "eject":
        _switch(proxy, "http", mode="passthrough")
    return proxy


@pytest.mark.parametrize("how", ["http", "socket", "eject", "option"])
def test_a_tunnel_opened_before_replay_is_closed_at_the_switch(tmp_path, upstream, how):
    proxy = _proxy(tmp_path, how, launcher=how == "socket")
    try:
        tls = _connect_tunnel(proxy, upstream.port, upstream.cert)
        with tls:
            tls.sendall(_chat(upstream.port, 0))
            assert _answer(tls).startswith(b"HTTP/1.1 200")  # the tunnel reaches the upstream
            _switch(proxy, how)
            # The same connection, after the switch: closed, nothing relayed.
            try:
                tls.sendall(_chat(upstream.port, 1))
            except (ConnectionError, ssl.SSLError):
                pass
            assert _answer(tls) == b""
        # The client reconnects: the new connection is opened up and answered from cassettes.
        with httpx.Client(proxy=proxy.url, verify=_trusting(proxy.ca), timeout=30) as client:
            miss = client.post(f"https://127.0.0.1:{upstream.port}/v1/chat/completions", json={"n": 2})
        assert miss.status_code == 404 and "vcr-proxy" in miss.text
    finally:
        proxy.stop()
    assert [json.loads(r["body"]) for r in upstream.requests] == [{"n": 0}]
    assert "closed a tunnel to 127.0.0.1" in proxy.output()
    assert "Traceback" not in proxy.output()


def test_a_passthrough_host_tunnel_stays_open_in_replay(tmp_path, upstream):
    proxy = _proxy(tmp_path, "http", vcr_passthrough_hosts="127.0.0.1")
    try:
        with _connect_tunnel(proxy, upstream.port, upstream.cert) as tls:
            tls.sendall(_chat(upstream.port, 0))
            assert _answer(tls).startswith(b"HTTP/1.1 200")
            _switch(proxy, "http")
            tls.sendall(_chat(upstream.port, 1))
            assert _answer(tls).startswith(b"HTTP/1.1 200")
    finally:
        proxy.stop()
    assert len(upstream.requests) == 2


def test_an_http2_client_pooled_before_replay_does_not_reach_the_upstream(tmp_path, upstream):
    """httpx with HTTP/2 keeps one connection per host and never notices a close while idle:
    its next request fails once on the closed tunnel, and the one after is answered here."""
    proxy = _proxy(tmp_path, "http")
    url = f"https://127.0.0.1:{upstream.port}/v1/chat/completions"
    try:
        with httpx.Client(proxy=proxy.url, verify=_trusting(upstream.cert, proxy.ca), http2=True,
                          timeout=30) as client:
            warm = client.post(url, json={"n": 0})
            assert warm.status_code == 200 and warm.http_version == "HTTP/2"
            _switch(proxy, "http")
            answers = []
            for n in (1, 2):
                try:
                    answers.append(client.post(url, json={"n": n}).status_code)
                except httpx.TransportError:
                    answers.append("closed")
    finally:
        proxy.stop()
    assert answers in (["closed", 404], [404, 404])
    assert [json.loads(r["body"]) for r in upstream.requests] == [{"n": 0}]


def _websocket_open(proxy: Proxy, host: str) -> tuple[ssl.SSLSocket, WSConnection]:
    tls = _trusting(proxy.ca).wrap_socket(_connect(proxy, f"{host}:443"), server_hostname=host)
    connection = WSConnection(ConnectionType.CLIENT)
    tls.sendall(connection.send(Request(host=host, target="/v1/realtime")))
    while True:
        events = _events(tls, connection)
        assert events is not None, "the WebSocket was not accepted"
        if any(isinstance(event, AcceptConnection) for event in events):
            return tls, connection


def _events(tls: ssl.SSLSocket, connection: WSConnection) -> list | None:
    """What the next read brought; None once the connection has closed."""
    try:
        data = tls.recv(65536)
    except (ConnectionError, ssl.SSLError, TimeoutError):
        data = b""
    if not data:
        return None
    connection.receive_data(data)
    return list(connection.events())


def _echo(tls: ssl.SSLSocket, connection: WSConnection, text: str) -> str | None:
    """The upstream's echo of `text`, or None if the connection closed instead."""
    try:
        tls.sendall(connection.send(Message(data=text)))
    except (ConnectionError, ssl.SSLError):
        return None
    while (events := _events(tls, connection)) is not None:
        for event in events:
            if isinstance(event, TextMessage):
                return event.data
            if isinstance(event, CloseConnection):
                return None
    return None


def test_a_websocket_opened_before_replay_is_closed_at_the_switch(tmp_path, upstream):
    # Recorded hosts' WebSockets pass through untouched (and unrecorded) outside replay.
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record").start()
    try:
        tls, connection = _websocket_open(proxy, "openrouter.ai")
        with tls:
            assert _echo(tls, connection, "before") == "echo: before"
            _switch(proxy, "http")
            assert _echo(tls, connection, "after") is None
    finally:
        proxy.stop()
    assert "closed a WebSocket to openrouter.ai" in proxy.output()


class _PlainUpstream(http.server.ThreadingHTTPServer):
    """A plain-HTTP upstream with keep-alive that counts what reaches it."""

    daemon_threads = True

    def __init__(self):
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_plain_http_keep_alive_connection_is_answered_here_after_the_switch(tmp_path):
    plain = _PlainUpstream()
    proxy = _proxy(tmp_path, "http")
    url = f"http://127.0.0.1:{plain.server_address[1]}"
    try:
        with httpx.Client(proxy=proxy.url, timeout=30) as client:
            assert client.get(f"{url}/before").text == "ok"
            _switch(proxy, "http")
            after = client.get(f"{url}/after")
    finally:
        proxy.stop()
        plain.shutdown()
    assert after.status_code == 404 and "vcr-proxy" in after.text
    assert plain.paths == ["/before"]


SESSION_CLIENT_TEST = '''
import os

import httpx
import pytest

URL = "https://127.0.0.1:{port}/v1/chat/completions"


@pytest.fixture(scope="session")
def client():
    # One client for the whole session, explicit proxy (the plugin exported its address
    # before this module was imported), no certificate checks: its pooled connection outlives
    # the test that opened it.
    with httpx.Client(proxy=os.environ["VCR_PROXY_URL"], verify=False, timeout=30) as client:
        yield client


def test_warm_up(client, vcr_proxy_url):  # unmarked: the proxy lets it through
    # (vcr_proxy_url: waits for the proxy to listen, as a marked test's selection does)
    assert client.post(URL, json={{"n": 0}}).status_code == 200


@pytest.mark.vcr_proxy
def test_replayed(client):
    print("STATUS", client.post(URL, json={{"n": 1}}).status_code)
'''


def test_a_session_client_warmed_up_before_a_replayed_test_is_answered_from_cassettes(
        pytester: pytest.Pytester, tmp_path, upstream):
    """Through the pytest plugin: the proxy lets unmarked tests through; the marked test that
    follows, under --vcr-mode=replay, must get its answer from the (missing) cassette, and
    fail for the miss, rather than reach the upstream on the warmed-up connection."""
    pytester.makepyfile(test_session_client=SESSION_CLIENT_TEST.format(port=upstream.port))
    result = pytester.runpytest_subprocess(f"--vcr-confdir={tmp_path / 'conf'}", "-p",
                                           "no:cacheprovider", "--vcr-mode=replay", "-s")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "STATUS 404" in output
    assert f"miss: vcr-proxy: POST https://127.0.0.1:{upstream.port}/v1/chat/completions" in output
    assert [json.loads(r["body"]) for r in upstream.requests] == [{"n": 0}]


def _wait_for_a_blocked_flock(path: Path, timeout: float = 20) -> None:
    """Until some process waits for the flock on `path` (a `->` line of /proc/locks names its
    inode): the proxy has the request, and is waiting on the lock."""
    import os
    import time

    inode = os.stat(path).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as locks:
            if any("->" in line and line.split()[-3].endswith(f":{inode}") for line in locks):
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing waited for the lock on {path}")


def test_a_request_waiting_for_the_disk_at_the_switch_to_replay_is_not_forwarded(tmp_path, upstream):
    """Once mode decided to record a missing cassette, and the request waits for the cassette's
    lock; meanwhile the proxy is switched to replay. Released, it must not go upstream."""
    import fcntl
    import os
    import threading

    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="once").start()
    lock = os.open(cassettes / ".waits.yaml.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    answers = []
    try:
        with proxy.client(timeout=30) as client, control_client(proxy) as control:
            waiting = threading.Thread(target=lambda: answers.append(client.post(
                "https://openrouter.ai/api/v1/chat/completions", json={"n": 1},
                headers={"X-Vcr-Cassette": "waits"})))
            waiting.start()
            _wait_for_a_blocked_flock(cassettes / ".waits.yaml.lock")
            assert waiting.is_alive()
            switched = control.post("http://vcr-proxy.control/cassette",
                                    json={"name": "other", "mode": "replay"})
            assert switched.status_code == 200
            os.close(lock)  # the waiting request may go on
            lock = None
            waiting.join(20)
    finally:
        if lock is not None:
            os.close(lock)
        proxy.stop()
    assert len(answers) == 1
    assert answers[0].status_code == 404 and "switched to replay" in answers[0].text
    assert not [r for r in upstream.requests if r["path"].endswith("/chat/completions")]
