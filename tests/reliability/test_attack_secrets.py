"""The credential promise attacked through the paths the compressed-bodies change left open: what
mitmproxy itself prints and saves of WebSocket messages, request trailers, refused CONNECTs and
malformed requests, a Content-Encoding spread over several header lines, and miss messages that
quote a cassette's header values. Real mitmdump, real sockets, loopback only."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import zlib

import brotli
import h2.config
import h2.connection
import h2.events
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from ..network import read_until_closed
from ..proxy import Proxy
from ..test_record import recorded
from .test_secrets import upstream  # noqa: F401  (the module's HTTPS upstream)

KEY = "sk-proj-" + "At7ackK3yQ" * 4  # a key by its shape
OPAQUE = "OpaqueT0ken-zq81Xv72Lp"  # a credential no shape rule knows: found by name only
FIELD = "FieldS3cret-9d2Kw0Pq4"
SECRETS = (KEY, OPAQUE, FIELD, "At7ackK3yQ")


def _tunnel(proxy: Proxy, alpn: list[str] | None = None) -> ssl.SSLSocket:
    """A TLS connection to openrouter.ai through the proxy's CONNECT, for hand-made requests."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"CONNECT openrouter.ai:443 HTTP/1.1\r\nHost: openrouter.ai:443\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(proxy.ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context.wrap_socket(sock, server_hostname="openrouter.ai")


def _assert_nothing_shown(proxy: Proxy, folder, *saved) -> None:
    """No secret in what mitmdump printed, nor in any file under the test's folder (flows, HAR,
    cassettes), decoded where a file holds compressed bytes."""
    texts = {"output": proxy.output()}
    for path in folder.rglob("*"):
        if path.is_file() and "mitmproxy" not in path.parts:
            texts[str(path)] = path.read_bytes().decode("latin-1")
    for path in saved:
        from mitmproxy import io

        with open(path, "rb") as handle:
            for flow in io.FlowReader(handle).stream():
                texts[f"{path} {flow.id}"] = _flow_text(flow)
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, (secret, where, text[-2000:])


def _flow_text(flow) -> str:
    parts = [flow.request.url, repr(flow.request.headers), repr(flow.request.trailers),
             repr(flow.request.get_content(strict=False)), repr(flow.error)]
    if flow.response is not None:
        parts += [repr(flow.response.headers), repr(flow.response.get_content(strict=False))]
    if flow.websocket is not None:
        parts += [repr(message.content) for message in flow.websocket.messages]
    return "\n".join(parts)


def test_websocket_messages_are_printed_and_saved_without_credentials(tmp_path, upstream):
    """A Realtime-style WebSocket passes through untouched, but mitmdump prints its messages
    (flow_detail 3) and save_stream_file and hardump save them: keys in them were shown."""
    flows, har = tmp_path / "flows.mitm", tmp_path / "flows.har"
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", flow_detail="3", save_stream_file=str(flows),
                  hardump=str(har)).start()
    try:
        sock = _tunnel(proxy)
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(ws.send(Request(host="openrouter.ai", target=f"/v1/realtime?key={OPAQUE}",
                                     extra_headers=[(b"authorization", f"Bearer {KEY}".encode())])))
        events = []
        while not any(isinstance(e, AcceptConnection) for e in events):
            ws.receive_data(sock.recv(65536))
            events += list(ws.events())
        update = {"type": "session.update", "session": {"api_key": FIELD, "note": f"key {KEY}"}}
        sock.sendall(ws.send(TextMessage(data=json.dumps(update))))
        while not any(isinstance(e, TextMessage) for e in events):
            ws.receive_data(sock.recv(65536))
            events += list(ws.events())
        assert KEY in next(e.data for e in events if isinstance(e, TextMessage))  # echoed as sent
        sock.sendall(ws.send(CloseConnection(code=1000)))
        read_until_closed(sock, 5.0)
        sock.close()
    finally:
        proxy.stop()
    assert "WebSocket text message" in proxy.output()
    assert b"_webSocketMessages" in har.read_bytes()
    _assert_nothing_shown(proxy, tmp_path, flows)


def _h2_post(proxy: Proxy, path: str, body: bytes, headers=(), trailers=None,
             validate: bool = True) -> list:
    sock = _tunnel(proxy, alpn=["h2"])
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=validate, normalize_outbound_headers=validate))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", "openrouter.ai"),
                          (":path", path), ("content-type", "application/json"), *headers])
    conn.send_data(1, body, end_stream=trailers is None)
    if trailers:
        conn.send_headers(1, trailers, end_stream=True)
    sock.sendall(conn.data_to_send())
    sock.settimeout(10)
    events = []
    try:
        while not any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset,
                                     h2.events.ConnectionTerminated)) for e in events):
            data = sock.recv(65536)
            if not data:
                break
            events += conn.receive_data(data)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return events


def test_http2_request_trailers_are_printed_and_saved_without_credentials(tmp_path, upstream):
    """HTTP/2 lets a client send headers after the body: a key there was printed (flow_detail 2
    and up) and saved by save_stream_file as sent."""
    flows = tmp_path / "flows.mitm"
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", flow_detail="4", save_stream_file=str(flows)).start()
    try:
        events = _h2_post(proxy, "/api/v1/chat/completions?case=trailers", b'{"model": "m"}',
                          trailers=[("x-api-key", OPAQUE), ("x-request-note", f"key {KEY}")])
        assert any(isinstance(e, h2.events.ResponseReceived) for e in events), events
        recorded(proxy.cassettes / "default.yaml")
    finally:
        proxy.stop()
    assert "HTTP Trailers" in proxy.output()
    _assert_nothing_shown(proxy, tmp_path, flows)


def test_mitmproxys_own_lines_quote_no_raw_client_bytes(tmp_path, upstream):
    """mitmproxy logs the bytes of a request it cannot parse (a bad request line, a header line
    without a colon, headers cut off by the client, an HTTP/2 header value it refuses) and
    mitmdump prints and saves the error of a flow it refused (a bad Content-Length): each quoted
    the credential as the client sent it."""
    flows = tmp_path / "flows.mitm"
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", flow_detail="2", save_stream_file=str(flows)).start()
    head = b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\n"
    try:
        for raw in (f"POST /api/v1/chat/completions?key={OPAQUE} HTTP/1.1 extra\r\n\r\n".encode(),
                    head + f"Authorization Bearer {OPAQUE}\r\n\r\n".encode(),
                    head + f"Content-Length: 1{KEY}\r\n\r\n".encode()):
            sock = _tunnel(proxy)
            sock.sendall(raw)
            assert read_until_closed(sock, 5.0).startswith(b"HTTP/1.1 400"), raw
            sock.close()
        sock = _tunnel(proxy)  # headers the client gives up on before their end
        sock.sendall(head + f"Authorization: Bearer {OPAQUE}\r\nX-Note: {KEY}\r\n".encode())
        sock.close()
        _h2_post(proxy, "/api/v1/chat/completions?case=h2", b"{}", validate=False,
                 headers=[("authorization", f" Bearer {OPAQUE} ")])
    finally:
        proxy.stop()
    output = proxy.output()
    assert "Bad HTTP request line" in output and "Invalid header line" in output, output
    assert "before completing request headers" in output, output
    assert "HTTP/2 protocol error" in output and "content-length" in output, output
    _assert_nothing_shown(proxy, tmp_path, flows)


def test_a_content_encoding_over_several_header_lines_is_decoded_whole(tmp_path, upstream):
    """`Content-Encoding: identity` and `Content-Encoding: br` on two lines mean `identity, br`
    (RFC 9110 5.3), as mitmproxy and the upstream read them; the view read the first line only,
    so the body was scrubbed (and shown, and saved) still compressed, the key inside it."""
    flows = tmp_path / "flows.mitm"
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", flow_detail="3", save_stream_file=str(flows)).start()
    # Latin-1 text: not UTF-8, so no later guess at an old cassette's coding decodes it either.
    plain = json.dumps({"model": "m", "api_key": FIELD, "note": f"caf\xe9 {KEY}"},
                       ensure_ascii=False).encode("latin-1")
    cases = {"br": ("br", brotli.compress), "deflate": ("deflate", zlib.compress)}
    try:
        for case, (coding, encode) in cases.items():
            body = encode(plain)
            sock = _tunnel(proxy)
            sock.sendall(f"POST /echo?case={case} HTTP/1.1\r\n"
                         f"Host: openrouter.ai\r\nContent-Type: application/json\r\n"
                         f"Content-Encoding: identity\r\nContent-Encoding: {coding}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            read_until_closed(sock, 5.0)
            sock.close()
        cassette = recorded(proxy.cassettes / "default.yaml", len(cases))
    finally:
        proxy.stop()
    for interaction in cassette.interactions:
        body = interaction.request.body
        body = body.encode("latin-1") if isinstance(body, str) else body
        assert b'"api_key": "REDACTED"' in body and b"caf\xe9 REDACTED" in body, body  # decoded
    _assert_nothing_shown(proxy, tmp_path, flows)


def test_a_miss_shows_a_recorded_header_value_scrubbed(tmp_path):
    """Under header matching a miss names the header and both values: the recorded one was
    quoted from the cassette as it stands, a JWT from an older recording included."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdHRhY2sifQ.c2lnbmF0dXJlLWF0dGFjaw"
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.yaml").write_text(
        "---\nversion: 2\ninteractions:\n  - id: 0\n    request:\n        proto: HTTP/1.1\n"
        "        proto_major: 1\n        proto_minor: 1\n        content_length: 0\n"
        '        host: ""\n        body: ""\n        headers:\n            A-Trace:\n'
        f"              - {jwt}\n        url: https://openrouter.ai/api/v1/models\n"
        "        method: GET\n    response:\n        proto: HTTP/1.1\n        proto_major: 1\n"
        '        proto_minor: 1\n        content_length: 2\n        body: "{}"\n'
        "        headers: {}\n        status: 200 OK\n        code: 200\n        duration: 1ms\n")
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_headers="all",
                  vcr_match="method,url,headers").start()
    try:
        with proxy.client() as client:
            miss = client.get("https://openrouter.ai/api/v1/models", headers={"A-Trace": "other"})
    finally:
        proxy.stop()
    assert miss.status_code == 404 and "header A-Trace" in miss.text, miss.text
    for text in (miss.text, proxy.output()):
        assert jwt not in text and "eyJzdWIiOiJhdHRhY2sifQ" not in text, text[-2000:]


def test_a_refused_connect_is_printed_without_its_proxy_credentials(tmp_path):
    """A CONNECT that mitmproxy refuses (proxyauth's 407) is printed by mitmdump; its request
    never reaches the addon's request hook, so its Proxy-Authorization was printed as sent."""
    proxy = Proxy(tmp_path, vcr_mode="replay", flow_detail="2", proxyauth="user:right-password").start()
    credentials = base64.b64encode(f"user:{OPAQUE}".encode()).decode()
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(f"CONNECT openrouter.ai:443 HTTP/1.1\r\nHost: openrouter.ai:443\r\n"
                     f"Proxy-Authorization: Basic {credentials}\r\n\r\n".encode())
        assert read_until_closed(sock, 2).startswith(b"HTTP/1.1 407")
        sock.close()
    finally:
        proxy.stop()
    output = proxy.output()
    assert "CONNECT openrouter.ai:443" in output, output
    assert credentials not in output and OPAQUE not in output, output



def _br_bomb(prefix: bytes, mebibytes: int) -> bytes:
    """Brotli that decodes to `prefix` and `mebibytes` MiB of zeros (a few KB)."""
    compressor = brotli.Compressor(quality=5)
    pieces = [compressor.process(prefix)]
    zeros = bytes(1 << 20)
    pieces += [compressor.process(zeros) for _ in range(mebibytes)]
    return b"".join(pieces) + compressor.finish()


def test_check_finds_keys_in_old_compressed_bodies_that_decode_to_binary_or_past_the_limit(tmp_path):
    """An older release stored compressed request bodies as sent. `check` decoded them only when
    the result was UTF-8 text, and skipped a brotli body that decodes past vcr_max_body: a key
    in a zstd or zlib body of binary data (msgpack, protobuf), or in front of a brotli bomb,
    passed `check` (and `redact` left it)."""
    try:
        from compression import zstd
    except ImportError:  # Python < 3.14: the backport mitmproxy itself depends on
        from backports import zstd

    from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
    from ..test_cli import _cli

    binary = b"\x82\xa5model\xa1m\xa7api_key\xd9\x20" + KEY.encode()  # msgpack-like, not UTF-8
    bodies = {"zstd": zstd.compress(binary), "deflate": zlib.compress(binary),
              "br-bomb": _br_bomb(b'{"api_key": "' + KEY.encode() + b'", "pad": "', 257)}
    for name, body in bodies.items():
        interaction = Interaction(
            id=0, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1,
                                  content_length=len(body), body=body, method="POST",
                                  headers={"Content-Type": ["application/octet-stream"]},
                                  url=f"https://openrouter.ai/api/v1/upload?case={name}"),
            response=Response(proto="HTTP/1.1", proto_major=1, proto_minor=1, body="{}", headers={},
                              status="200 OK", code=200, content_length=2))
        (tmp_path / f"{name}.yaml").write_text(Cassette(interactions=[interaction]).dumps())
    result = _cli("check", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    for name in bodies:
        assert f"{name}.yaml: interaction #0 request body" in result.stderr, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert _cli("redact", str(tmp_path)).returncode == 0
    after = _cli("check", str(tmp_path))
    assert after.returncode == 0, after.stderr
    for name in bodies:
        body = load(tmp_path / f"{name}.yaml").interactions[0].request.body
        body = body.encode() if isinstance(body, str) else body
        assert KEY.encode() not in body and b"At7ackK3yQ" not in body, (name, body[:200])
