"""Paced replay written straight onto the client's connection (paced.py), and replay workers
sharing one port (`vcr-proxy start --workers N`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from proxy_addon.cassette import Cassette, load
from proxy_addon.persisters.filesystem import write_atomic
from proxy_addon.timing import sidecar_path

from .proxy import ROOT, Proxy
from .test_replay import _stream_cassette

PACED = {"X-Vcr-Cassette": "paced"}
GAPS = [0.15, 0.05, 0.2, 0.1]


def _plain_http_copy(folder) -> None:
    """The paced cassette again, as `plain`, recorded over plain HTTP."""
    path = folder / "cassettes" / "paced.yaml"
    cassette = load(path)
    interaction = cassette.interactions[0]
    interaction.request.url = interaction.request.url.replace("https://", "http://")
    plain = folder / "cassettes" / "plain.yaml"
    write_atomic(plain, Cassette(interactions=[interaction]).dumps().encode())
    write_atomic(sidecar_path(plain), sidecar_path(path).read_bytes())


def _curl_streams(proxy: Proxy, url: str, headers: dict, count: int) -> tuple[list[list[float]], bytes, str]:
    """`count` paced streams over one HTTP/2 connection with curl (httpx offers HTTP/1.1 first
    through a proxy, and mitmproxy takes the client's first choice): each stream's event
    arrivals, all bodies, the HTTP version."""
    command = ["curl", "-sS", "-N", "--http2", "-x", proxy.url, "--cacert", str(proxy.ca),
               "-H", "Content-Type: application/json", "-d", '{"stream": true}',
               "-w", "%{http_version}\n"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    curl = subprocess.Popen(command + [url] * count, stdout=subprocess.PIPE)
    started, streams, output = time.monotonic(), [[]], b""
    while piece := os.read(curl.stdout.fileno(), 65536):
        for line in piece.splitlines(keepends=True):
            output += line
            if line.startswith(b"data:"):
                streams[-1].append(time.monotonic() - started)
            elif line.strip() == b"2":  # curl's -w after each transfer
                streams.append([])
                started = time.monotonic()
    assert curl.wait(30) == 0
    versions = {line for line in output.splitlines() if line.strip() == b"2"}
    return streams[:-1], output, "HTTP/2" if versions == {b"2"} else "?"


def _read_stream(client: httpx.Client, url: str, headers: dict) -> tuple[list[float], bytes, str]:
    started = time.monotonic()
    arrivals, body = [], b""
    with client.stream("POST", url, json={"stream": True}, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for piece in response.iter_raw():
            body += piece
            arrivals += [time.monotonic() - started] * piece.count(b"\n\n")
        version = response.http_version
    return arrivals, body, version


@pytest.fixture
def paced_proxy(tmp_path):
    offsets = _stream_cassette(tmp_path, GAPS)
    _plain_http_copy(tmp_path)
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True).start()
    yield proxy, [offset / 1e3 for offset in offsets]
    proxy.stop()


@pytest.mark.parametrize("transport", ["https-http1", "https-http2", "plain-http"])
def test_paced_streams_keep_their_gaps_and_the_connection(paced_proxy, transport):
    """Two paced streams, one after the other on one kept-alive connection: each arrives
    whole, byte for byte, every event no sooner than recorded; over HTTP/1.1 the chunked
    framing written straight onto the socket leaves the connection usable for the next."""
    proxy, offsets = paced_proxy
    recorded = load(proxy.cassettes / "paced.yaml").interactions[0].response.body.encode()
    url = "https://openrouter.ai/api/v1/chat/completions"
    headers = dict(PACED)
    if transport == "plain-http":
        url, headers = url.replace("https://", "http://"), {"X-Vcr-Cassette": "plain"}
    if transport == "https-http2":
        streams, output, version = _curl_streams(proxy, url, headers, 2)
        assert version == "HTTP/2" and output == (recorded + b"2\n") * 2
    else:
        streams = []
        with proxy.client() as client:
            for _ in range(2):
                arrivals, body, version = _read_stream(client, url, headers)
                assert body == recorded and version == "HTTP/1.1"
                streams.append(arrivals)
    assert len(streams) == 2
    for arrivals in streams:
        assert len(arrivals) == len(offsets)
        # Gaps as recorded (curl's -w line may come late: the second stream's start is not
        # known to the microsecond, so the gaps are what is compared).
        for arrived, due in zip(arrivals, offsets):
            assert arrived - arrivals[0] >= (due - offsets[0]) * 0.8 - 0.005, (arrivals, offsets)
    assert all(arrived >= due * 0.8 - 0.005 for arrived, due in zip(streams[0], offsets))
    assert "crashed" not in proxy.output() and "Traceback" not in proxy.output()


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_client_leaving_mid_stream_stops_its_stream_only(paced_proxy, http2):
    proxy, offsets = paced_proxy
    url = "https://openrouter.ai/api/v1/chat/completions"
    for _ in range(3):
        if http2:
            curl = subprocess.Popen(["curl", "-sS", "-N", "--http2", "-x", proxy.url, "--cacert",
                                     str(proxy.ca), "-H", "X-Vcr-Cassette: paced", "-d", "{}", url],
                                    stdout=subprocess.PIPE)
            curl.stdout.readline()  # the first event, then gone
            curl.kill()
            curl.wait()
        else:
            with proxy.client() as client:
                with client.stream("POST", url, json={"stream": True}, headers=PACED) as response:
                    next(response.iter_raw())
    time.sleep(sum(GAPS) + 0.2)  # past when the abandoned streams' events were due
    if http2:
        streams, _, version = _curl_streams(proxy, url, PACED, 1)
        assert version == "HTTP/2" and len(streams[0]) == len(offsets)
    else:
        with proxy.client() as client:
            _, body, _ = _read_stream(client, url, PACED)
        assert body.count(b"\n\n") == len(offsets)
    output = proxy.output()
    assert "crashed" not in output and "Traceback" not in output, output


def test_an_injected_disconnect_cuts_a_paced_stream_after_its_events(paced_proxy):
    proxy, _ = paced_proxy
    with proxy.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            with client.stream("POST", "https://openrouter.ai/api/v1/chat/completions",
                               json={"stream": True},
                               headers={**PACED, "X-Vcr-Fault": "disconnect-after-events=2"}) as response:
                received = b""
                for piece in response.iter_raw():
                    received += piece
    assert received.count(b"\n\n") == 2
    assert "crashed" not in proxy.output()


def test_a_paced_replay_opens_no_socket(paced_proxy):
    """Events are written onto the client's own connection: the proxy listens on no other TCP
    port for them, and opens no connection of its own while it paces a stream."""
    proxy, _ = paced_proxy
    with proxy.client() as client:
        with client.stream("POST", "https://openrouter.ai/api/v1/chat/completions",
                           json={"stream": True}, headers=PACED) as response:
            pieces = response.iter_raw()
            next(pieces)
            mine = _tcp_sockets(proxy.process.pid)
            for _ in pieces:
                pass
    ports = {local for local, _ in mine}
    # Its own port, and the realtime player's (WebSocket sessions only) at most.
    assert proxy.port in ports and len(ports - {proxy.port}) <= 1, mine
    peers = [remote for _, remote in mine if remote]
    client_ports = [port for port in peers if port != proxy.port]
    assert len(client_ports) == 1, mine  # the client's connection, nothing else


def _tcp_sockets(pid: int) -> list[tuple[int, int | None]]:
    """(local port, remote port or None when listening) of each TCP socket `pid` holds."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    local = int(fields[1].rsplit(":", 1)[1], 16)
                    remote = int(fields[2].rsplit(":", 1)[1], 16)
                    found.append((local, None if fields[3] == "0A" else remote))
    return found


# -- workers

def test_workers_share_the_port_and_refuse_control_selections(tmp_path):
    _stream_cassette(tmp_path, [0.05])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True, workers=2).start()
    try:
        pids = set()
        deadline = time.monotonic() + 60  # the second worker may still be starting
        while time.monotonic() < deadline:  # each a new connection, spread over the workers
            with proxy.control() as control:
                status = control.get("http://vcr-proxy.control/status").json()
            assert status["workers"] == 2
            pids.add(status["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2 and proxy.process.pid in pids, pids
        child = (pids - {proxy.process.pid}).pop()
        with proxy.client() as client:
            for _ in range(6):
                _, body, _ = _read_stream(client, "https://openrouter.ai/api/v1/chat/completions", PACED)
                assert body.endswith(b"data: [DONE]\n\n")
        with proxy.control() as control:
            refused = control.post("http://vcr-proxy.control/cassette", json={"name": "other"})
        assert refused.status_code == 409
        message = refused.json()["error"]["message"]
        assert "2 replay workers" in message and "X-Vcr-Cassette" in message
        assert "\n" not in message
    finally:
        proxy.stop()
    assert proxy.process.returncode == 0
    _gone(child)


def test_workers_stop_when_their_first_is_killed(tmp_path):
    _stream_cassette(tmp_path, [0.05])
    proxy = Proxy(tmp_path, vcr_mode="replay", launcher=True, workers=2).start()
    try:
        children = _children(proxy.process.pid)
        assert len(children) == 1
        os.kill(proxy.process.pid, signal.SIGKILL)
        proxy.process.wait(10)
        _gone(children[0])
    finally:
        proxy.kill()
        proxy.log.close()


@pytest.mark.parametrize("mode", ["record", "once"])
def test_workers_replay_only(tmp_path, mode):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "start", "--mode", mode,
                             "--workers", "2", "--port", str(_free_port()), "--dir", str(tmp_path),
                             "--confdir", str(tmp_path / "conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 2" in lines[0] and "--mode replay" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [int(child) for task in os.listdir(f"/proc/{pid}/task")
                 for child in open(f"/proc/{pid}/task/{task}/children").read().split()]
        if found:
            return found
        time.sleep(0.05)
    return []


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return  # ended; its parent (gone too) never reaped it
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still runs 30 s after")
