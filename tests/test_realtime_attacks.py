"""Realtime sessions attacked: credentials hidden where a recording or mitmproxy's printers
could show them, replay that must not reach the network nor hang, and hostile sidecar files.
Real mitmproxy, real clients (the `websockets` library, raw sockets), real local servers."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from proxy_addon.realtime import format as sidecar

from .proxy import Proxy
from .realtime_upstream import EPHEMERAL_SECRET
from .test_realtime import (TIMEOUT, certificate, client_context, no_secret_on_disk,  # noqa: F401
                            recording_proxy, replaying_proxy, upstream)

# Credentials no key shape finds: only the rules by name and place can.
PROTOCOL_KEY = "plainkeyvalue9876543210abcdefXYZ"  # openai-insecure-api-key.<key>
TOKEN_KEY = "a3f9c2e17b4d4e0f9a8b7c6d5e4f3a2b1c0d9e8f"  # Deepgram's ["token", "<key>"]
HEADER_KEY = "hdrsecret0123456789abcdefghij"  # x-goog-api-key
URL_KEY = "urlsecret0123456789abcdefghij"  # %6Bey= (key=, percent-encoded)
FIELD_KEY = "fieldsecret0123456789abcdefgh"  # "api_key" in a session.update
BINARY_KEY = "binsecret0123456789abcdefghijk"  # "apiKey" in JSON sent as a binary frame
SECRETS = (PROTOCOL_KEY, TOKEN_KEY, HEADER_KEY, URL_KEY, FIELD_KEY, BINARY_KEY, EPHEMERAL_SECRET)


def echo_session(proxy: Proxy) -> list:
    """A session with an upstream that echoes everything, credentials in every place a client
    puts them; what the client received."""
    seen: list = []
    with connect(f"wss://speech.example.com/v1/echo?%6Bey={URL_KEY}", ssl=client_context(proxy),
                 proxy=proxy.url, open_timeout=TIMEOUT,
                 subprotocols=["realtime", f"openai-insecure-api-key.{PROTOCOL_KEY}", "token", TOKEN_KEY],
                 additional_headers={"x-goog-api-key": HEADER_KEY}) as websocket:
        seen.append(websocket.recv(TIMEOUT))
        for message in (json.dumps({"type": "session.update", "session": {"api_key": FIELD_KEY}}),
                        json.dumps({"setup": {"apiKey": BINARY_KEY}}).encode(),
                        json.dumps({"type": "note", "text": f"an ephemeral key: {EPHEMERAL_SECRET}"}),
                        json.dumps({"type": "echo", "text": " ".join(SECRETS)})):
            websocket.send(message)
            seen.append(websocket.recv(TIMEOUT))
        websocket.send("close")
        with pytest.raises(ConnectionClosed):
            websocket.recv(TIMEOUT)
    return seen


def test_credentials_in_handshake_and_messages_reach_no_file_and_no_printed_flow(
        tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com",
                               flow_detail="3")
    try:
        recorded = echo_session(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    headers = upstream.handshakes[0]["headers"]
    assert headers["x-goog-api-key"] == HEADER_KEY and TOKEN_KEY in headers["Sec-WebSocket-Protocol"]
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert session.subprotocols == ["realtime", "openai-insecure-api-key.REDACTED", "token", "REDACTED"]
    assert session.url == "wss://speech.example.com/v1/echo?%6Bey=REDACTED"

    replayer = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", flow_detail="3")
    try:
        replayed = echo_session(replayer)
    finally:
        replayer.stop()
    assert len(replayed) == len(recorded)
    no_secret_on_disk(tmp_path, *SECRETS)
    for proxy in (recorder, replayer):
        output = proxy.output()
        # mitmproxy printed the handshake (its headers: flow_detail 2 and up) and each message.
        assert "Addon error" not in output and "Sec-WebSocket-Protocol" in output
        assert output.count("WebSocket text message") >= 8
        for secret in SECRETS:
            assert secret not in output, secret


# -- hostile sidecar files --

HOSTILE_URL = "wss://speech.example.com/v1/"


def open_line(number: int, path: str, **fields) -> str:
    return json.dumps({"type": "open", "session": number, "format": 1, "url": HOSTILE_URL + path,
                       "at": "", "handshake_ms": 1, "subprotocols": [], "protocol": None,
                       "request_headers": {}, "status": 101, "response_headers": {}, **fields})


def message_line(number: int, sender: str, ms, **payload) -> str:
    return json.dumps({"type": "message", "session": number, "from": sender, "ms": ms, **payload})


def close_line(number: int, ms, code, reason: str = "") -> str:
    return json.dumps({"type": "close", "session": number, "ms": ms, "code": code, "reason": reason,
                       "by": "server"})


def hostile_sidecar() -> bytes:
    week = 6.9 * 24 * 3600 * 1e3
    lines = [
        # 0: a text that cannot be sent (a lone surrogate), then one that can.
        open_line(0, "surrogate"),
        message_line(0, "server", 1, text="\ud800"),
        message_line(0, "server", 2, text="ok-0"),
        # 1: a handshake and a message claiming days: played within a minute (1000x: 60 ms).
        open_line(1, "slow", handshake_ms=week),
        message_line(1, "server", week, text="ok-1"),
        message_line(1, "server", week + 1, text="ok-1b"),
        # 2: a reason too long for a close frame, and a close code no endpoint may send first.
        open_line(2, "reason"),
        message_line(2, "server", 1, text="ok-2"),
        close_line(2, 2, 1006),
        close_line(2, 3, 4000, "r" * 500),
        # 3: invalid base64, a torn line, bytes that are not UTF-8, then a good binary message.
        open_line(3, "junk"),
        message_line(3, "server", 1, binary="!!not base64!!"),
        message_line(3, "server", 1, text="torn")[:-9],
        '{"type":"message","session":3,"from":"server","ms":1,"text":"\xff\xfe"}',
        message_line(3, "server", 2, binary="b2stMw=="),  # ok-3
        # 4: a handshake header that would split the player's response in two: not a session.
        open_line(4, "split", response_headers={"X-Ok": ["a\r\nSet-Cookie: x=1"]}),
        message_line(4, "server", 1, text="never"),
    ]
    data = "\n".join(lines).encode("utf-8", "surrogatepass").replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe")
    giant = b'{"type":"message","session":3,"from":"server","ms":1,"text":"' + b"x" * (8 << 20)  # torn, 8 MB
    return data + b"\n" + giant + b"\n" + message_line(3, "server", 3, text="ok-3b").encode() + b"\n"


def receive(proxy: Proxy, path: str, count: int) -> list:
    """`count` messages of a session that needs no client message, then how it closed."""
    seen: list = []
    with connect(HOSTILE_URL + path, ssl=client_context(proxy), proxy=proxy.url,
                 open_timeout=TIMEOUT) as websocket:
        for _ in range(count):
            seen.append(websocket.recv(TIMEOUT))
        try:
            websocket.recv(TIMEOUT) if path == "reason" else None
        except ConnectionClosed as closed:
            seen.append((closed.rcvd.code, closed.rcvd.reason))
    return seen


def test_hostile_sidecar_lines_are_skipped_and_never_hang_a_replay(tmp_path):
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").write_bytes(hostile_sidecar())
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", vcr_speed="1000")
    try:
        assert receive(proxy, "surrogate", 1) == ["ok-0"]
        assert receive(proxy, "slow", 2) == ["ok-1", "ok-1b"]
        assert receive(proxy, "reason", 1) == ["ok-2", (4000, "r" * 120 + "...")]
        assert receive(proxy, "junk", 2) == [b"ok-3", "ok-3b"]
        with pytest.raises(Exception) as refused:
            receive(proxy, "split", 1)
        assert "404" in str(refused.value)
    finally:
        proxy.stop()
    output = proxy.output()
    assert "Traceback" not in output and "Set-Cookie" not in output
    from .test_realtime import show
    shown = show(folder / "default.yaml")
    assert "session 3" in shown and "split" not in shown


def test_a_symlinked_sidecar_is_not_replayed(tmp_path):
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text("\n".join([open_line(0, "x"), message_line(0, "server", 1, text="from elsewhere")]) + "\n")
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").symlink_to(elsewhere)
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com")
    try:
        with pytest.raises(Exception) as refused:
            receive(proxy, "x", 1)
    finally:
        proxy.stop()
    assert "404" in str(refused.value)
    assert "default.realtime.jsonl: is a symlink" in proxy.output()


# -- replay stays on the machine, and never hangs --

class Bait:
    """A local server that counts the connections it gets: a replay must give it none."""

    def __init__(self) -> None:
        import socket
        import threading
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()


def echo_sidecar(sessions: int) -> str:
    lines = []
    for number in range(sessions):
        lines += [open_line(number, "echo"), message_line(number, "server", 1, text="hello"),
                  message_line(number, "client", 10, text="a"), message_line(number, "server", 12, text="a"),
                  message_line(number, "client", 20, text="b"), message_line(number, "server", 300, text="b"),
                  message_line(number, "client", 310, text="close"), close_line(number, 311, 1000, "bye")]
    return "\n".join(lines) + "\n"


def test_replay_answers_every_upgrade_itself_and_survives_rude_clients(tmp_path):
    bait = Bait()
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").write_text(echo_sidecar(5))
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com")
    try:
        for url in (f"wss://127.0.0.1:{bait.port}/v1/echo",  # a host no cassette names
                    "wss://speech.example.com/v1/other"):  # a recorded host, no such session
            with pytest.raises(Exception) as refused:
                connect(url, ssl=client_context(proxy), proxy=proxy.url, open_timeout=TIMEOUT)
            assert "404" in str(refused.value)
        # Faster than recorded: everything sent before anything is read.
        with connect(HOSTILE_URL + "echo", ssl=client_context(proxy), proxy=proxy.url,
                     open_timeout=TIMEOUT) as websocket:
            for text in ("a", "b", "close"):
                websocket.send(text)
            seen = [websocket.recv(TIMEOUT) for _ in range(3)]
            with pytest.raises(ConnectionClosed) as closed:
                websocket.recv(TIMEOUT)
        assert seen == ["hello", "a", "b"] and closed.value.rcvd.code == 1000
        # Gone mid-stream, without a close; then one that sends nothing and leaves.
        websocket = connect(HOSTILE_URL + "echo", ssl=client_context(proxy), proxy=proxy.url,
                            open_timeout=TIMEOUT)
        websocket.send("a")
        assert websocket.recv(TIMEOUT) == "hello"
        websocket.close_socket()
        # Its reading thread may still write (a close frame) to the file descriptor number the
        # next socket gets: seen as a TLS record before that connection's ClientHello.
        websocket.recv_events_thread.join(TIMEOUT)
        with connect(HOSTILE_URL + "echo", ssl=client_context(proxy), proxy=proxy.url,
                     open_timeout=TIMEOUT) as websocket:
            assert websocket.recv(TIMEOUT) == "hello"
        # And the proxy still plays the next session whole.
        with connect(HOSTILE_URL + "echo", ssl=client_context(proxy), proxy=proxy.url,
                     open_timeout=TIMEOUT) as websocket:
            websocket.send("a")
            assert [websocket.recv(TIMEOUT), websocket.recv(TIMEOUT)] == ["hello", "a"]
        # One left open, waiting for the client, as the proxy stops.
        idle = connect(HOSTILE_URL + "echo", ssl=client_context(proxy), proxy=proxy.url,
                       open_timeout=TIMEOUT)
        assert idle.recv(TIMEOUT) == "hello"
    finally:
        proxy.stop()
    assert proxy.process.returncode == 0
    assert bait.accepted == 0
    output = proxy.output()
    assert "Traceback" not in output and "Task was destroyed" not in output


# -- upgrades as HTTP allows them: list-valued headers; a 101 in a go-vcr cassette --

def raw_upgrade(proxy: Proxy, headers: list[tuple[str, str]], path: str = "/v1/echo"):
    """A handshake sent by hand through the proxy (CONNECT, TLS): the response's head, and the
    TLS socket with what followed it."""
    import socket

    sock = socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), timeout=TIMEOUT)
    sock.sendall(b"CONNECT speech.example.com:443 HTTP/1.1\r\nHost: speech.example.com:443\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200")
    tls = client_context(proxy).wrap_socket(sock, server_hostname="speech.example.com")
    lines = [f"GET {path} HTTP/1.1", "Host: speech.example.com"] + [f"{n}: {v}" for n, v in headers]
    tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), tls, rest


def websocket_headers(upgrade: str, connection: str) -> list[tuple[str, str]]:
    import base64
    import os
    return [("Upgrade", upgrade), ("Connection", connection),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()), ("Sec-WebSocket-Version", "13")]


def echo_over(tls, rest: bytes) -> list:
    """Over a raw WebSocket (wsproto as the client): the first message, then "a" sent and its
    echo; what came back."""
    from wsproto import ConnectionType
    from wsproto.connection import Connection
    from wsproto.events import CloseConnection, Message, TextMessage

    connection = Connection(ConnectionType.CLIENT)
    connection.receive_data(rest)
    seen: list = []
    sent = False
    while len(seen) < 2:
        for event in connection.events():
            if isinstance(event, Message):
                seen.append(event.data)
            elif isinstance(event, CloseConnection):
                return seen + [("close", event.code)]
        if seen and not sent:
            tls.sendall(connection.send(TextMessage("a")))
            sent = True
        if len(seen) < 2:
            data = tls.recv(65536)
            if not data:
                return seen + ["eof"]
            connection.receive_data(data)
    tls.sendall(connection.send(CloseConnection(1000)))
    return seen


@pytest.mark.parametrize("upgrade, connection", [
    ("websocket, foo", "Upgrade"),
    ("foo, WebSocket", "keep-alive, Upgrade"),
    ("websocket/13", "Upgrade, keep-alive"),
    ("websocket", "keep-alive, Upgrade"),
])
def test_list_valued_upgrade_headers_are_websocket_upgrades(tmp_path, upgrade, connection):
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").write_text(echo_sidecar(1))
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", vcr_timing="none")
    try:
        head, tls, rest = raw_upgrade(proxy, websocket_headers(upgrade, connection), "/v1/echo")
        assert head.startswith("HTTP/1.1 101 "), head
        assert "replayed " in head and "default.realtime.jsonl#session 0" in head
        assert echo_over(tls, rest) == ["hello", "a"]
        tls.close()
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.output()


def test_a_101_replayed_from_a_go_vcr_cassette_never_breaks_the_connection(tmp_path):
    from proxy_addon.cassette import Cassette, Interaction, Request, Response

    folder = tmp_path / "cassettes"
    folder.mkdir()
    # What go-vcr records of a WebSocket: the handshake as an HTTP exchange, no messages.
    switch = Interaction(0, Request(body="", url="https://speech.example.com/v1/echo", method="GET",
                                    headers={"Upgrade": ["websocket"], "Connection": ["Upgrade"],
                                             "Sec-Websocket-Version": ["13"]}),
                         Response(body="", headers={"Upgrade": ["websocket"], "Connection": ["Upgrade"],
                                                    "Sec-Websocket-Accept": ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]},
                                  status="101 Switching Protocols", code=101, duration=1_000_000))
    (folder / "default.yaml").write_text(Cassette([switch]).dumps())
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", vcr_allow_repeats="true")
    try:
        # A WebSocket handshake whose Upgrade names no WebSocket (mitmproxy's own test reads
        # only the 101's): an HTTP request, matched by the recorded 101.
        head, tls, rest = raw_upgrade(proxy, websocket_headers("foo", "Upgrade"))
        assert head.startswith("HTTP/1.1 501 "), head
        tls.close()
        # A plain GET: the same answer, and the connection still serves the next request.
        with proxy.client() as client:
            for _ in range(2):
                answer = client.get("https://speech.example.com/v1/echo")
                assert answer.status_code == 501
                assert "HTTP 101 (Switching Protocols) recorded as an HTTP exchange" in answer.text
                assert "default.yaml#0" in answer.text
        # And a real WebSocket upgrade is a realtime session: no sidecar, a 404 miss.
        with pytest.raises(Exception) as refused:
            connect("wss://speech.example.com/v1/echo", ssl=client_context(proxy), proxy=proxy.url,
                    open_timeout=TIMEOUT)
        assert "404" in str(refused.value)
    finally:
        proxy.stop()
    output = proxy.output()
    assert "Traceback" not in output and "KeyError" not in output
    assert proxy.process.returncode == 0


# -- client messages past the recording: what the recording still holds is sent first --

def tail_sidecar(by: str) -> str:
    """A session whose last answer is paced a second after the client's last message, then
    closed by `by`."""
    lines = [open_line(0, "tail"), message_line(0, "server", 1, text="hello"),
             message_line(0, "client", 10, text="a"), message_line(0, "server", 12, text="a"),
             message_line(0, "server", 1010, text="late answer")]
    close = json.loads(close_line(0, 1011, 1000, "bye"))
    close["by"] = by
    return "\n".join(lines + [json.dumps(close)]) + "\n"


@pytest.mark.parametrize("by", ["server", "client"])
def test_client_messages_past_the_recording_still_get_its_remaining_server_messages(tmp_path, by):
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").write_text(tail_sidecar(by))
    proxy = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", vcr_timing="events")
    try:
        with connect(HOSTILE_URL + "tail", ssl=client_context(proxy), proxy=proxy.url,
                     open_timeout=TIMEOUT) as websocket:
            websocket.send("a")
            websocket.send("more")  # the recording holds no such message: sent at once
            seen = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seen.append(websocket.recv(TIMEOUT))
    finally:
        proxy.stop()
    assert seen[:3] == ["hello", "a", "late answer"], seen
    if by == "server":  # the server was closing: the recorded close, nothing more
        assert seen == ["hello", "a", "late answer"]
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "bye")
        assert "no match" not in proxy.output()
    else:  # a message the recording never had: a miss, once the recording is played out
        assert closed.value.rcvd.code == 1008 and "no match" in closed.value.rcvd.reason
        assert "client message #1 (text): the recording holds 1 client message(s)" in proxy.output()
    assert "Traceback" not in proxy.output()
