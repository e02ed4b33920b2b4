"""Attacks on paced replay written straight onto the client's connection (paced.py): what a
client sees on the wire, and what the proxy keeps once a stream is over."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response
from proxy_addon.persisters.filesystem import write_atomic
from proxy_addon.timing import Timing, body_hash, sidecar_path

from .proxy import Proxy
from .reliability.test_big_bodies import rss_mib

CHAT = "https://openrouter.ai/api/v1/chat/completions"
PATH = "/api/v1/chat/completions"
MiB = 1 << 20


def _interaction(number: int, url: str, events: list[bytes], content_type: str,
                 trailer: dict | None = None) -> Interaction:
    body = b"".join(events).decode()
    return Interaction(
        id=number, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, url=url,
                                   method="POST", body="{}", content_length=2),
        response=Response(proto="HTTP/1.1", proto_major=1, proto_minor=1, content_length=-1,
                          body=body, headers={"Content-Type": [content_type]}, status="200 OK",
                          code=200, duration=int(0.01e9), trailer=trailer or {}))


def _cassette(folder: Path, name: str, streams: list[tuple[str, list[bytes], list[float]]],
              trailer: dict | None = None) -> None:
    """`name`: one interaction per (url, events, times in ms) stream, each with its timing."""
    interactions, lines = [], []
    for number, (url, events, times) in enumerate(streams):
        content_type = "text/event-stream" if times else "application/json"
        interaction = _interaction(number, url, events, content_type, trailer)
        interactions.append(interaction)
        body = interaction.response.body.encode()
        if times:
            lines.append(Timing(number, body_hash(body), 10.0, times, times[-1]).to_json() + "\n")
    path = folder / "cassettes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, Cassette(interactions=interactions).dumps().encode())
    write_atomic(sidecar_path(path), "".join(lines).encode())


def _events(count: int) -> list[bytes]:
    return [b'data: {"n": %d}\n\n' % n for n in range(count)]


def _head(name: str, version: str = "HTTP/1.1", target: str = PATH, body: bytes = b"{}") -> bytes:
    return (f"POST {target} {version}\r\nHost: openrouter.ai\r\nX-Vcr-Cassette: {name}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _through_tls(proxy: Proxy) -> ssl.SSLSocket:
    """A client's connection to openrouter.ai through the proxy (CONNECT, then TLS)."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    raw.sendall(b"CONNECT openrouter.ai:443 HTTP/1.1\r\nHost: openrouter.ai:443\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    context = ssl.create_default_context(cafile=str(proxy.ca))
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(raw, server_hostname="openrouter.ai")


def _h2_connection(proxy: Proxy) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    """An HTTP/2 connection to openrouter.ai through the proxy (CONNECT, TLS, h2)."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    raw.sendall(b"CONNECT openrouter.ai:443 HTTP/1.1\r\nHost: openrouter.ai:443\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(4096)
    context = ssl.create_default_context(cafile=str(proxy.ca))
    context.set_alpn_protocols(["h2"])
    connection = context.wrap_socket(raw, server_hostname="openrouter.ai")
    assert connection.selected_alpn_protocol() == "h2"
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    connection.sendall(client.data_to_send())
    return connection, client


def _h2_post(connection: ssl.SSLSocket, client: h2.connection.H2Connection, name: str) -> int:
    stream = client.get_next_available_stream_id()
    client.send_headers(stream, [(":method", "POST"), (":path", PATH), (":scheme", "https"),
                                 (":authority", "openrouter.ai"), ("x-vcr-cassette", name),
                                 ("content-type", "application/json")])
    client.send_data(stream, b"{}", end_stream=True)
    connection.sendall(client.data_to_send())
    return stream


def _h2_until(connection: ssl.SSLSocket, client: h2.connection.H2Connection, stream: int,
              done) -> list:
    """h2's events for `stream` until `done(event)` holds for one of them."""
    found = []
    while not any(done(event) for event in found):
        data = connection.recv(65536)
        assert data, found
        for event in client.receive_data(data):
            if getattr(event, "stream_id", None) == stream:
                found.append(event)
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        connection.sendall(client.data_to_send())
    return found


def _h2_exchange(proxy: Proxy, name: str) -> list:
    """One POST over HTTP/2 through the proxy; h2's events for its stream, to its end."""
    connection, client = _h2_connection(proxy)
    with connection:
        stream = _h2_post(connection, client, name)
        return _h2_until(connection, client, stream, lambda event: isinstance(
            event, (h2.events.StreamEnded, h2.events.StreamReset)))


def _until_closed(connection: socket.socket) -> bytes:
    received = b""
    while piece := connection.recv(65536):
        received += piece
    return received


def _bad_lines(proxy: Proxy) -> list[str]:
    return [line for line in proxy.output().splitlines()
            if any(word in line for word in ("crashed", "Traceback", "Addon error"))]


@pytest.mark.parametrize("transport", ["https", "plain-http"])
def test_an_http10_client_gets_the_recorded_bytes_without_chunk_framing(tmp_path, transport):
    """HTTP/1.0 has no chunked coding (RFC 9112 6.1: not sent unless the request is HTTP/1.1
    or later): a paced stream to an HTTP/1.0 client is its recorded bytes, ended by the close.
    It had each event wrapped in chunk sizes (`10\\r\\n...\\r\\n`), which such a client reads
    as part of the body."""
    events = _events(6)
    url = CHAT if transport == "https" else CHAT.replace("https://", "http://")
    _cassette(tmp_path, "paced", [(url, events, [20.0 * (n + 1) for n in range(6)])])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", launcher=True).start()
    try:
        if transport == "https":
            connection = _through_tls(proxy)
            connection.sendall(_head("paced", "HTTP/1.0"))
        else:
            connection = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
            connection.sendall(_head("paced", "HTTP/1.0", target=url))
        with connection:
            received = _until_closed(connection)
    finally:
        proxy.stop()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), received[:300]
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"".join(events), body
    assert not _bad_lines(proxy)


def test_memory_returns_after_big_paced_events(tmp_path):
    """A paced stream's chunks were held once it was over (the stream and its pacer hold each
    other, and no collection was asked for, as one is for a replayed body of that size), and an
    event written straight onto the connection was handed to OpenSSL whole, growing the
    connection's outgoing buffer to its size for as long as the connection stayed open: three
    streams with a 40 MiB event left the proxy at 3.4x its memory at rest."""
    big = b"data: " + b"x" * (40 * MiB) + b"\n\n"
    _cassette(tmp_path, "big", [
        (CHAT, [b"data: a\n\n", big, b"data: b\n\n", b"data: [DONE]\n\n"], [100, 300, 500, 600]),
        (CHAT + "?small", [b"{}"], []),
    ])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True).start()
    connections = []
    try:
        # At rest: the cassette loaded (a small answer from it), three connections open.
        for _ in range(3):
            connection = _through_tls(proxy)
            connection.sendall(_head("big", target=PATH + "?small"))
            answer = b""
            while not answer.endswith(b"{}"):
                answer += connection.recv(65536)
            connections.append(connection)
        time.sleep(0.5)
        at_rest = rss_mib(proxy.process.pid)
        for connection in connections:  # one stream each, the connections kept open
            connection.sendall(_head("big"))
            received = b""
            while not received.endswith(b"0\r\n\r\n"):
                received += connection.recv(MiB)
            assert len(received) > 40 * MiB
            del received
        # Looked at until it is back, for at most 20 s (the collector looks again for a while).
        deadline = time.monotonic() + 20
        after = rss_mib(proxy.process.pid)
        while after > 1.2 * at_rest + 10 and time.monotonic() < deadline:
            time.sleep(0.5)
            after = rss_mib(proxy.process.pid)
        assert after <= 1.2 * at_rest + 10, (at_rest, after)
    finally:
        for connection in connections:
            connection.close()
        proxy.stop()
    assert not _bad_lines(proxy)


@pytest.mark.parametrize("timing", ["none", "events"])
def test_recorded_trailers_reach_an_http2_client_of_a_paced_stream_too(tmp_path, timing):
    """A recorded response's trailers are replayed to an HTTP/2 client (playback.py): they were
    dropped when the stream was paced (timing events), and sent when it was not."""
    events = _events(4)
    _cassette(tmp_path, "paced", [(CHAT, events, [20.0, 40.0, 60.0, 80.0])],
              trailer={"X-Checksum": ["abc123"]})
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing=timing, launcher=True).start()
    try:
        found = _h2_exchange(proxy, "paced")
    finally:
        proxy.stop()
    body = b"".join(event.data for event in found if isinstance(event, h2.events.DataReceived))
    assert body == b"".join(events)
    trailers = [event.headers for event in found if isinstance(event, h2.events.TrailersReceived)]
    assert trailers == [[(b"x-checksum", b"abc123")]], [type(event).__name__ for event in found]
    assert isinstance(found[-1], h2.events.StreamEnded)
    assert not _bad_lines(proxy)


def test_an_http2_stream_the_client_resets_lets_go_of_its_events(tmp_path):
    """An HTTP/2 client that resets a paced stream (RST_STREAM) keeps its connection: the
    stream's next wakeup stays pending until that chunk was due, and it held the whole plan
    until then (20 resets of a stream with a 4 MiB event due after 60 s: +84 MiB for 60 s)."""
    events = [b"data: a\n\n", b"data: " + b"q" * (4 * MiB) + b"\n\n", b"data: [DONE]\n\n"]
    _cassette(tmp_path, "paced", [(CHAT, events, [10.0, 60000.0, 60010.0])])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True).start()
    connection, client = _h2_connection(proxy)

    def first_event_then_reset() -> None:
        stream = _h2_post(connection, client, "paced")
        _h2_until(connection, client, stream, lambda event: isinstance(event, h2.events.DataReceived))
        client.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        connection.sendall(client.data_to_send())

    try:
        first_event_then_reset()  # the cassette loaded
        time.sleep(0.5)
        at_rest = rss_mib(proxy.process.pid)
        for _ in range(20):
            first_event_then_reset()
        deadline = time.monotonic() + 20
        after = rss_mib(proxy.process.pid)
        while after > at_rest + 20 and time.monotonic() < deadline:
            time.sleep(0.5)
            after = rss_mib(proxy.process.pid)
        assert after <= at_rest + 20, (at_rest, after)
    finally:
        connection.close()
        proxy.stop()
    assert not _bad_lines(proxy)


@pytest.mark.parametrize("timing", ["none", "events"])
def test_an_injected_disconnect_over_http2_cuts_after_all_its_events(tmp_path, timing):
    """X-Vcr-Fault: disconnect-after-events=N over HTTP/2: the stream is reset after its N
    events. The reset went out as soon as the last of them was handed to the connection, and
    dropped what HTTP/2 flow control still held back: with the client's default 64 KiB window
    and the events due at once (--timing none), 153 of 250 events arrived."""
    events = [b'data: {"choices":[{"delta":{"content":"' + b"w" * 380 + b'"}}]}\n\n'
              for _ in range(300)]
    _cassette(tmp_path, "paced", [(CHAT, events, [10.0 + n for n in range(300)])])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing=timing, launcher=True).start()
    try:
        connection, client = _h2_connection(proxy)
        with connection:
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, [(":method", "POST"), (":path", PATH), (":scheme", "https"),
                                         (":authority", "openrouter.ai"), ("x-vcr-cassette", "paced"),
                                         ("x-vcr-fault", "disconnect-after-events=250"),
                                         ("content-type", "application/json")])
            client.send_data(stream, b"{}", end_stream=True)
            connection.sendall(client.data_to_send())
            found = _h2_until(connection, client, stream, lambda event: isinstance(
                event, (h2.events.StreamEnded, h2.events.StreamReset)))
    finally:
        proxy.stop()
    body = b"".join(event.data for event in found if isinstance(event, h2.events.DataReceived))
    assert body == b"".join(events[:250]), body.count(b"\n\n")
    assert isinstance(found[-1], h2.events.StreamReset)
    assert not _bad_lines(proxy)
