"""Attacks on the three promises: in replay mode nothing leaves the machine; only the user who
started the proxy steers it; bad input gets one clear line. Each test is one attack that once
worked, run with real processes against loopback addresses only."""

from __future__ import annotations

import os
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response
from proxy_addon.persisters.filesystem import write_atomic

from ..network import StandInNetwork, read_until_closed
from ..proxy import ROOT, Proxy, control_client, control_token
from ..test_record import CHAT
from ..upstream import Upstream, make_certificate
from .test_hermetic import network  # noqa: F401  (the stand-in network, logging every connection)
from .test_other_users import _listening_ports

# A DNS query for example.com (A), as sent over TCP: its length first.
_QUERY = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
DNS_QUERY = struct.pack(">H", len(_QUERY)) + _QUERY
# `mitmdump -s` calls the addon before mitmproxy's own next_layer addon, `vcr-proxy start` after.
LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])




def _tunnel(proxy: Proxy, target: str) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return raw




# -- DNS: mitmproxy's next_layer turns any opened-up connection to port 53 or 5353 into a DNS
# relay, past the request hook where replay answers.

@LAUNCHERS
@pytest.mark.parametrize("target", ["dns.example:53", "10.0.0.1:5353"])
def test_dns_through_a_tunnel_does_not_leave_in_replay(tmp_path, network, target, launcher):
    proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"upstream:{network.url}",
                  launcher=launcher).start()
    try:
        with _tunnel(proxy, target) as raw:
            raw.sendall(DNS_QUERY)
            answer = read_until_closed(raw)
    finally:
        proxy.stop()
    assert answer == b""
    assert network.connections == []
    assert "closed DNSLayer traffic" in proxy.output() and "Traceback" not in proxy.output()


class _DnsServer(socketserver.ThreadingTCPServer):
    """Answers every DNS query over TCP (its header's QR bit set), and counts them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.queries = 0
        super().__init__(("127.0.0.1", 0), _DnsHandler)


class _DnsHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        stream = self.request.makefile("rb")
        while len(length := stream.read(2)) == 2:
            message = bytearray(stream.read(struct.unpack(">H", length)[0]))
            self.server.queries += 1
            message[2] |= 0x80
            self.request.sendall(length + bytes(message))


def _read_dns(raw: socket.socket) -> bytes:
    data = b""
    while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
        chunk = raw.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


@LAUNCHERS
def test_dns_relayed_before_the_switch_to_replay_is_closed_at_it(tmp_path, launcher):
    """A recorded host is opened up in once mode; on its port 53 mitmproxy relays DNS, never
    seen by the request hook: the switch to replay must close it like any other relay."""
    dns = _DnsServer()
    threading.Thread(target=dns.serve_forever, daemon=True).start()
    network = StandInNetwork(forward_to=dns.server_address).start()
    proxy = Proxy(tmp_path, vcr_mode="once", vcr_hosts="dns.example",
                  mode=f"upstream:{network.url}", launcher=launcher).start()
    try:
        with _tunnel(proxy, "dns.example:53") as raw:
            raw.sendall(DNS_QUERY)
            first = _read_dns(raw)
            with control_client(proxy) as control:
                assert control.post("http://vcr-proxy.control/cassette",
                                    json={"name": "t", "mode": "replay"}).status_code == 200
            try:
                raw.sendall(DNS_QUERY)
            except OSError:
                pass
            after = read_until_closed(raw)
    finally:
        proxy.stop()
        network.stop()
        dns.shutdown()
        dns.server_close()
    assert len(first) == len(DNS_QUERY) and first[4] & 0x80  # relayed while the mode let it
    assert after == b""
    assert dns.queries == 1
    assert "closed a raw relay to dns.example:53" in proxy.output()


# -- the control token: a secret that steers the proxy, never to be shown, saved, recorded or
# forwarded.

def test_the_control_token_is_never_shown_saved_recorded_or_forwarded(tmp_path):
    """A session client that sends the control header with every request (tests/proxy.py's
    control_client does), through mitmdump printing whole flows and saving them, recording
    every header."""
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    flows = tmp_path / "flows"
    proxy = Proxy(tmp_path / "proxy", upstream_ca=cert, vcr_mode="record", vcr_upstream=upstream.url,
                  vcr_headers="all", flow_detail="4", save_stream_file=str(flows)).start()
    try:
        token = control_token(proxy)
        with control_client(proxy) as client:
            assert client.get("http://vcr-proxy.control/status").status_code == 200
            assert client.post(CHAT, json={"model": "m"}).status_code == 200
    finally:
        proxy.stop()
        upstream.stop()
    assert len(upstream.requests) == 1
    for request in upstream.requests:
        assert "x-vcr-control" not in request["headers"], request["headers"]
        assert token not in str(request)
    assert token not in proxy.output()
    assert token.encode() not in flows.read_bytes()
    cassettes = list(proxy.cassettes.rglob("*.yaml"))
    assert cassettes and all(token not in path.read_text() for path in cassettes)


# -- the in-process replay server: its port is open to every local user.

def _replay_server_port(proxy: Proxy) -> int:
    for _ in range(200):
        ports = [port for port in _listening_ports(proxy.process.pid) if port != proxy.port]
        if ports:
            return ports[0]
        time.sleep(0.05)
    raise AssertionError("the replay server is not listening")


def test_the_replay_server_survives_an_oversized_or_endless_head(tmp_path):
    """A local user sends the replay server a request head over its reader's limit (once a
    traceback in the proxy's log), and opens a connection that never sends one (once held
    open for good): the first is closed quietly, the second closed after a while."""
    proxy = Proxy(tmp_path, vcr_mode="replay", launcher=True).start()
    try:
        port = _replay_server_port(proxy)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as silent, \
                socket.create_connection(("127.0.0.1", port), timeout=30) as huge:
            try:
                huge.sendall(b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n")
            except OSError:
                pass  # closed while sending: what is wanted
            try:
                huge_answer = huge.recv(100)
            except ConnectionError:
                huge_answer = b""
            try:
                silent_answer = silent.recv(100)  # b"" when the server closes it (in 10 s)
            except TimeoutError:
                silent_answer = None  # still held open 30 s later
        with proxy.client() as client:  # still serving
            miss = client.post(CHAT, json={"model": "m"})
    finally:
        proxy.stop()
    assert huge_answer == b"" and silent_answer == b""
    assert miss.status_code == 404
    assert "Traceback" not in proxy.output(), proxy.output()


# -- `vcr-proxy report -o`: the report replaces its output whole, by a rename.

CLI = [sys.executable, str(ROOT / "scripts" / "vcr-proxy")]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _a_cassette(folder: Path) -> Path:
    path = folder / "c.yaml"
    interaction = Interaction(id=0, request=Request(url=CHAT, method="POST", body="{}"),
                              response=Response(body="{}", code=200, status="200 OK"))
    write_atomic(path, Cassette(interactions=[interaction]).dumps().encode())
    return path


def test_report_never_replaces_a_device_a_fifo_or_a_link(tmp_path):
    """`-o /dev/null` run as root once left a regular file where the device was (for every
    program on the machine); here a device node, a FIFO and a link to one in a folder of the
    test's own stand in for /dev/null and /dev/stdout."""
    cassette = _a_cassette(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    targets = [fifo]
    if os.geteuid() == 0:
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append(null)
    stdout = tmp_path / "stdout"
    stdout.symlink_to(fifo)
    for target in [*targets, stdout]:
        result = _cli("report", "-o", str(target), str(cassette), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "not a regular file; choose another -o path" in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stdout.is_symlink()
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)
    # A link to a file (or to where one is to be) is written through, and stays a link.
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "real.html")
    result = _cli("report", "-o", str(link), str(cassette), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and "<html" in (tmp_path / "real.html").read_text().lower()


def test_report_names_a_symlink_loop_in_one_line(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    result = _cli("report", "a.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[0].startswith("a.yaml: ")


# -- Ctrl-C with clients still connected.

@LAUNCHERS
def test_stopping_with_a_client_still_connected_prints_no_traceback(tmp_path, launcher):
    """A tunnel still open when the user stops the proxy was cancelled with the event loop,
    which `mitmdump -s` printed as a traceback."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = Proxy(tmp_path, vcr_mode="passthrough", launcher=launcher).start()
    try:
        with _tunnel(proxy, f"127.0.0.1:{listener.getsockname()[1]}") as raw:
            raw.sendall(b"hello")
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.recv(5) == b"hello"
                proxy.stop()
                assert proxy.process.returncode == 0
    finally:
        proxy.stop()
        listener.close()
    assert "Traceback" not in proxy.output(), proxy.output()
