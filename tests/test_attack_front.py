"""Attacks on the direct replay front (vcr_front=direct, proxy_addon/front/): what a client can
send that mitmproxy's path answers, and the front must answer as well, in one line, without a
traceback in the log and without hanging the client."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from proxy_addon.cassette import load

from .proxy import Proxy
from .test_direct_front import _completion_cassette, _read_all, _tunnel, front  # noqa: F401 (a fixture)

COMPLETION = b'{"messages":[],"model":"m"}'
POST = (b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: openrouter.ai\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n")


def _quiet(proxy: Proxy) -> None:
    output = proxy.output()
    assert "Traceback" not in output and "Exception ignored" not in output, output


def test_malformed_chunk_sizes_are_refused_in_one_line(front):
    """A negative chunk size (int(-5, 16)) reached readexactly and a traceback; "0x1b", "+1b"
    and "1_b" were read as sizes that mitmproxy refuses; a chunk-size or trailer line past
    asyncio's limit raised LimitOverrunError, uncaught."""
    proxy, _ = front
    chunked = POST + b"Transfer-Encoding: chunked\r\n\r\n"
    for body in [b"-5\r\nabc\r\n0\r\n\r\n", b"0x1b\r\n%s\r\n0\r\n\r\n" % COMPLETION,
                 b"+1b\r\n%s\r\n0\r\n\r\n" % COMPLETION, b"1_b\r\n%s\r\n0\r\n\r\n" % COMPLETION,
                 b"1" * 70000, b"0\r\n" + b"X" * 70000]:
        sock = _tunnel(proxy)
        sock.sendall(chunked + body)
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 400") and b"chunked body" in answer, (body[:20], answer)
    # Chunk extensions, trailers and lower-case hex are still read.
    sock = _tunnel(proxy)
    sock.sendall(chunked + b"1B;name=value\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % COMPLETION)
    assert _read_all(sock).startswith(b"HTTP/1.1 200")
    _quiet(proxy)


def test_heads_ended_by_bare_line_feeds_are_answered(front):
    """mitmproxy reads lines ended by a bare LF; the front waited for a CRLF CRLF that never
    came, the client hung (both on the CONNECT and inside the tunnel)."""
    proxy, _ = front
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(b"CONNECT openrouter.ai:443 HTTP/1.1\nHost: openrouter.ai:443\n\n")
    assert raw.recv(100).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(proxy.ca))
    sock = context.wrap_socket(raw, server_hostname="openrouter.ai")
    sock.sendall(POST.replace(b"\r\n", b"\n") + b"Content-Length: %d\n\n%s" % (len(COMPLETION), COMPLETION))
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200") and b"gen-front-1" in answer, answer
    # A bare LF inside a CRLF head ends a line, as mitmproxy reads it: not a header's value.
    sock = _tunnel(proxy)
    sock.sendall(POST + b"X-A: 1\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 400")
    _quiet(proxy)


def test_a_client_hello_in_the_connects_packet_is_answered(front):
    """A client that sends its ClientHello right behind the CONNECT (without waiting for the
    200): the hello sat in the reader's buffer where start_tls never looked, and the handshake
    waited a minute for it."""
    proxy, _ = front
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=str(proxy.ca)).wrap_bio(
        incoming, outgoing, server_hostname="openrouter.ai")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    raw.sendall(b"CONNECT openrouter.ai:443 HTTP/1.1\r\n\r\n" + outgoing.read())
    received = b""
    while b"\r\n\r\n" not in received:
        received += raw.recv(65536)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    incoming.write(rest)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            piece = raw.recv(65536)
            assert piece, "closed during the handshake"
            incoming.write(piece)
    tls.write(POST + b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION))
    raw.sendall(outgoing.read())
    answer = b""
    while piece := raw.recv(65536):
        incoming.write(piece)
        try:
            answer += tls.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
    assert answer.startswith(b"HTTP/1.1 200") and b"gen-front-1" in answer, answer


def test_a_client_speaking_tls_to_the_proxy_is_mitmproxys(front):
    """`curl -x https://...` (TLS to the proxy itself, which mitmproxy accepts): the front
    waited for a head the client never sends before its handshake is answered. Every mode."""
    proxy, _ = front
    done = subprocess.run(["curl", "-sS", "--max-time", "20", "-x", f"https://127.0.0.1:{proxy.port}",
                           "--proxy-insecure", "--cacert", str(proxy.ca), "-H",
                           "Content-Type: application/json", "-d", COMPLETION.decode(),
                           "https://openrouter.ai/api/v1/chat/completions"],
                          capture_output=True, timeout=30)
    assert done.returncode == 0 and b"gen-front-1" in done.stdout, done


def test_connect_targets_mitmproxy_refuses_are_refused(front):
    """Ports 0 and past 65535, and host names that are not names, were taken by the front (a
    non-ASCII host reached the certificate maker: a traceback); mitmproxy answers 400."""
    proxy, _ = front
    for target in [b"openrouter.ai:99999999", b"openrouter.ai:0", b"op\xffenrouter.ai:443"]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            raw.sendall(b"CONNECT %s HTTP/1.1\r\n\r\n" % target)
            assert raw.recv(100).startswith(b"HTTP/1.1 400"), target
    _quiet(proxy)


def test_server_names_spelt_otherwise_get_a_certificate_naming_them(front):
    """A trailing dot, or capitals, in the CONNECT host and SNI: mitmproxy's certificate names
    the SNI as sent; the front's named the normalised host only, and Python's client refused it."""
    proxy, _ = front
    for name in ["OPENROUTER.AI.", "openrouter.ai."]:
        sock = _tunnel(proxy, name)
        sock.sendall(POST.replace(b"openrouter.ai", name.encode())
                     + b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION))
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200") and b"gen-front-1" in answer, answer


def test_a_server_name_that_is_not_ascii_is_refused_quietly(front):
    """Python's ssl decodes the SNI before sni_callback and prints the failure with a
    traceback ("Exception ignored in: b'\\xc3...'")."""
    proxy, _ = front
    subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect",
                    "openrouter.ai:443", "-servername", "\u00e9x.com"],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    with proxy.client() as client:  # and the proxy goes on
        assert client.post("https://openrouter.ai/api/v1/chat/completions",
                           content=COMPLETION).status_code == 200
    _quiet(proxy)


def test_a_stop_with_connections_in_every_state_is_clean(front):
    """Stopped while a client's TLS handshake was under way: close_all closed it, asyncio's
    handshake ended with no transport, and StreamWriter.start_tls raised AttributeError (two
    tracebacks a connection, one an "Unhandled exception in client_connected_cb")."""
    proxy, _ = front
    sockets = []
    for _ in range(3):
        for opening in [b"CONNECT openrouter.ai:443 HTTP/1.1\r\nX-A: ",  # mid-head
                        b"CONNECT openrouter.ai:443 HTTP/1.1\r\n\r\n"]:  # the handshake, unbegun
            raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            raw.sendall(opening)
            sockets.append(raw)
        sockets.append(_tunnel(proxy))  # idle, after its handshake
        sock = _tunnel(proxy)  # mid-body
        sock.sendall(POST + b"Content-Length: 100\r\n\r\n{")
        sockets.append(sock)
    with proxy.client() as client:  # the handshakes above have reached the front
        assert client.post("https://openrouter.ai/api/v1/chat/completions",
                           content=COMPLETION).status_code == 200
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.process.wait(10) == 0
    output = proxy.output()
    assert "Traceback" not in output and "Unhandled" not in output and "Task was" not in output, output


def test_a_switch_to_record_while_a_large_body_is_viewed_records_nothing(tmp_path):
    """A large body's view is made in a thread, during which the request hook waits; a switch
    to record mode then began a recording of the front's request, which the front answered
    with its 502 ("would have left the machine") and saved in the new cassette as the API's
    answer. (Timing decides where the switch lands; wherever it does, nothing is recorded.)"""
    _completion_cassette(tmp_path)
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_front="direct",
                  vcr_max_body=str(400 << 20)).start()
    try:
        # Over a megabyte as sent (its view is made off the loop), and slow to decode and read.
        body = gzip.compress(json.dumps({"pad": base64.b64encode(os.urandom(1 << 20)).decode(),
                                         "messages": [{"role": "user", "content": "hello world " * 8}] * 1_000_000,
                                         "model": "m"}).encode())
        answers = []
        with proxy.client(timeout=120) as client:
            sender = threading.Thread(target=lambda: answers.append(client.post(
                "https://openrouter.ai/api/v1/chat/completions", content=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})))
            sender.start()
            time.sleep(0.2)  # the body sent, its view under way (it takes about half a second)
            with proxy.control() as control:
                assert control.post("http://vcr-proxy.control/cassette",
                                    json={"name": "fresh", "mode": "record"}).status_code == 200
            sender.join(120)
        # A 404: the switch came after the request was matched (a slow machine); never a 502.
        answer = answers[0]
        assert answer.status_code == 404 or (answer.status_code == 503
                                             and "switched to record mode" in answer.text), answer.text
        with proxy.control() as control:
            control.post("http://vcr-proxy.control/eject")
    finally:
        proxy.stop()
    fresh = tmp_path / "cassettes" / "fresh.yaml"
    assert not fresh.exists() or not load(fresh).interactions
    assert "recorded POST" not in proxy.output()


def test_plain_http_inside_a_tunnel_is_answered_or_explained(front):
    """`curl -p` (and Node's tunnelling agents) send plain HTTP inside a CONNECT tunnel: the
    front started TLS on it, the handshake failed and the client had an empty reply, with
    nothing in the log (mitmproxy answers it)."""
    proxy, _ = front
    base = ["curl", "-sS", "--max-time", "20", "-p", "-x", proxy.url, "-d", COMPLETION.decode(),
            "-H", "Content-Type: application/json"]
    port80 = subprocess.run(base + ["http://openrouter.ai/api/v1/chat/completions"],
                            capture_output=True, timeout=30, text=True)
    assert "default.yaml" in port80.stdout, port80  # mitmproxy's miss: http:// was not recorded
    other = subprocess.run(base + ["http://openrouter.ai:8443/api/v1/chat/completions"],
                           capture_output=True, timeout=30, text=True)
    assert other.returncode != 0
    assert "plain HTTP inside a CONNECT tunnel to openrouter.ai:8443" in proxy.output()
    _quiet(proxy)


def test_credentials_in_headers_quoted_by_refusals_are_scrubbed(front, tmp_path):
    """The Host header (a host mismatch), X-Vcr-Fault and X-Vcr-Cassette are quoted in their
    400s, and the Host one in the log too, as sent: a key there was printed (both fronts: the
    addon's messages)."""
    proxy, _ = front
    key = "sk-or-v1-QUOTEDKEY0123456789abcdefSECRET"
    for header in [f"Host: {key}", f"X-Vcr-Fault: {key}", f"X-Vcr-Cassette: ../{key}"]:
        sock = _tunnel(proxy)
        sock.sendall(POST.replace(b"Host: openrouter.ai\r\n", b"") + header.encode()
                     + b"\r\nContent-Length: 2\r\n\r\n{}")
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 400") and key.encode() not in answer, answer
    assert key not in proxy.output()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_absolute_form_targets_inside_a_tunnel_are_read_as_mitmproxy_reads_them(front):
    """RFC 9112 asks servers to accept an absolute-form target; mitmproxy, in a tunnel, reads
    it as a request to the tunnel's target (then checks the Host header). The front refused
    every one with a 400."""
    proxy, _ = front
    for target in [b"https://openrouter.ai/api/v1/chat/completions",
                   b"https://OPENROUTER.AI./api/v1/chat/completions"]:
        sock = _tunnel(proxy)
        sock.sendall(POST.replace(b"/api/v1/chat/completions", target)
                     + b"Content-Length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION))
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200") and b"gen-front-1" in answer, answer
    sock = _tunnel(proxy)  # another host in the Host header: refused, as before
    sock.sendall(b"GET https://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"not forwarded" in answer, answer


def test_certificates_for_many_server_names_are_kept_to_a_hundred(front):
    """Each server name a client sends gets a certificate naming it: kept like mitmproxy's
    store (100), not one more per name for the proxy's life."""
    from .reliability.test_mode_switch import _connect
    from .test_direct_front import _front_status

    proxy, _ = front
    context = ssl.create_default_context(cafile=str(proxy.ca))
    context.check_hostname = False  # the names differ from the tunnel's host on purpose
    for n in range(120):
        with context.wrap_socket(_connect(proxy, "openrouter.ai:443"),
                                 server_hostname=f"n{n}.openrouter.ai"):
            pass
    assert _front_status(proxy)["certificates"] == 100
    with proxy.client() as client:  # the tunnel's own host still gets its certificate
        assert client.post("https://openrouter.ai/api/v1/chat/completions",
                           content=COMPLETION).status_code == 200
