"""Replay never touches the network: vcr-proxy chained to a stand-in network that logs every
connection serves the whole corpus with default options, and the stand-in sees nothing."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.persisters.filesystem import write_atomic

from ..conftest import CORPUS, corpus_files
from ..network import StandInNetwork, read_until_closed
from ..proxy import Proxy
from ..test_record import CHAT, recorded
from ..upstream import Upstream, make_certificate

LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])


@pytest.fixture
def network():
    stand_in = StandInNetwork().start()
    yield stand_in
    stand_in.stop()


def _body(value) -> bytes:
    return value.encode() if isinstance(value, str) else value


@LAUNCHERS
def test_replay_serves_the_corpus_and_nothing_reaches_the_network(tmp_path, network, launcher):
    # Default hosts and matching; duration pacing (sped up) sends every stream through the
    # in-process replay server, which must not go through the upstream proxy either.
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_dir=str(CORPUS), mode=f"upstream:{network.url}",
                  vcr_timing="duration", vcr_speed="5000", launcher=launcher).start()
    checked, hosts = 0, set()
    try:
        with proxy.client(timeout=60) as client:
            for path in corpus_files():
                cassette = load(path)
                name = str(path.relative_to(CORPUS))
                for interaction in cassette.interactions:
                    request = interaction.request
                    headers = {k: v[0] for k, v in request.headers.items()}
                    headers["X-Vcr-Cassette"] = name
                    response = client.request(request.method, request.url, headers=headers,
                                              content=_body(request.body))
                    assert response.status_code == interaction.response.code, (name, response.text[:300])
                    assert response.content == _body(interaction.response.body), name
                    hosts.add(response.request.url.host)
                    checked += 1
            # Hosts no cassette holds, spelled to slip past a naive host check, and a Host
            # header that disagrees with the tunnel's target: answered here, never forwarded.
            unknown = client.post("https://unknown-llm.example/v1/chat/completions", json={})
            dotted = client.post("https://api.openai.com./v1/chat/completions", json={"model": "x"})
            upper = client.post("https://API.OpenAI.COM/v1/chat/completions", json={"model": "x"})
            mismatch = client.post("https://unknown-llm.example/v1/chat/completions", json={},
                                   headers={"Host": "api.openai.com"})
            plain = client.get("http://unknown-llm.example/")
    finally:
        proxy.stop()
    assert checked == sum(len(load(p).interactions) for p in corpus_files()) > 200
    assert {"bedrock-runtime.us-east-1.amazonaws.com", "api.cerebras.ai", "localhost",
            "127.0.0.1"} <= hosts
    for miss in (unknown, dotted, upper, plain):
        assert miss.status_code == 404 and "vcr-proxy" in miss.json()["error"]["message"], miss.text
    assert mismatch.status_code == 400 and "not the connection's target" in mismatch.text
    assert network.connections == []


def test_passthrough_host_reaches_the_network_in_replay_mode(tmp_path, network):
    proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"upstream:{network.url}",
                  vcr_passthrough_hosts="*.allowed.example").start()
    try:
        with proxy.client() as client:
            # The stand-in refuses the tunnel: what matters is that the proxy tried.
            response = client.get("https://api.allowed.example/")
            assert response.status_code == 502
            blocked = client.post(CHAT, json={"model": "m"})
            assert blocked.status_code == 404
    except Exception as error:  # a refused tunnel may surface as a client-side error
        assert "502" in str(error) or "Connect" in type(error).__name__, error
    finally:
        proxy.stop()
    assert network.connections == ["CONNECT api.allowed.example:443 HTTP/1.1"]


def test_recording_goes_through_the_corporate_proxy_and_replay_does_not(tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    network = StandInNetwork(forward_to=("127.0.0.1", upstream.port)).start()
    try:
        recording = Proxy(tmp_path, upstream_ca=cert, vcr_mode="record",
                          mode=f"upstream:{network.url}").start()
        try:
            with recording.client() as client:
                with client.stream("POST", CHAT, json={"stream": True}) as response:
                    recorded_stream = b"".join(response.iter_bytes())
                assert client.post(CHAT, json={"model": "m"}).status_code == 200
        finally:
            recording.stop()
        recorded(recording.cassettes / "default.yaml", 2)
        assert network.connections == ["CONNECT openrouter.ai:443 HTTP/1.1"]
        network.connections.clear()
        replaying = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events",
                          mode=f"upstream:{network.url}").start()
        try:
            with replaying.client() as client:
                with client.stream("POST", CHAT, json={"stream": True}) as response:
                    assert b"".join(response.iter_bytes()) == recorded_stream
        finally:
            replaying.stop()
        assert network.connections == []
    finally:
        network.stop()
        upstream.stop()


@pytest.mark.parametrize("mode", ["once", "new-episodes"])
def test_hosts_named_in_cassettes_are_replayed_in_every_mode(tmp_path, network, mode):
    url = "https://llm.internal.example/v1/chat/completions"
    interaction = Interaction(
        id=0, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, url=url,
                              method="POST", body='{"model": "m"}', content_length=14),
        response=Response(proto="HTTP/2.0", proto_major=2, content_length=-1, body='{"ok": true}',
                          headers={"Content-Type": ["application/json"]}, status="200 OK", code=200))
    write_atomic(tmp_path / "cassettes" / "default.yaml", Cassette(interactions=[interaction]).dumps().encode())
    proxy = Proxy(tmp_path, vcr_mode=mode, mode=f"upstream:{network.url}").start()
    try:
        with proxy.client() as client:
            assert client.post(url, json={"model": "m"}).json() == {"ok": True}
    finally:
        proxy.stop()
    assert network.connections == []


def _raw_tunnel(proxy: Proxy, target: str, payload: bytes) -> bytes:
    """CONNECT `target`, then bytes that are neither TLS nor HTTP; what came back."""
    import socket

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode() + payload)
        return read_until_closed(raw)


def test_replay_relays_nothing_that_is_not_http(tmp_path, network):
    proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"upstream:{network.url}", launcher=True).start()
    try:
        _raw_tunnel(proxy, "api.openai.com:443", b"\x00\x01\x02binary-payload-S3CR3T")
        _raw_tunnel(proxy, "10.0.0.1:22", b"SSH-2.0-OpenSSH_9.0\r\n")
    finally:
        proxy.stop()
    assert network.connections == []


def test_options_that_would_send_requests_before_they_are_matched_are_refused(tmp_path):
    for option in ("stream_large_bodies=1k", "ignore_hosts=.*", "allow_hosts=api.openai.com",
                   "tcp_hosts=.*"):
        name, value = option.split("=")
        proxy = Proxy(tmp_path, vcr_mode="replay", launcher=True, **{name: value})
        with pytest.raises(RuntimeError, match=name):
            proxy.start()
        proxy.log.close()


def test_passthrough_patterns_do_not_span_labels_and_hosts_must_agree(tmp_path, network):
    proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"upstream:{network.url}",
                  vcr_passthrough_hosts="127.0.0.*,localhost").start()
    try:
        with proxy.client() as client:
            spoofed = client.get("https://127.0.0.1.attacker.example/")
            plain = client.get("http://127.0.0.1.attacker.example/x")
            mismatch = client.get("http://localhost/v1/models", headers={"Host": "api.openai.com"})
            deep = client.post(CHAT, content=b"[" * 3000)
            long_name = client.post(CHAT, json={}, headers={"X-Vcr-Cassette": "a/" * 3000})
    finally:
        proxy.stop()
    assert spoofed.status_code == 404 and plain.status_code == 404
    assert mismatch.status_code == 400
    assert deep.status_code == 404 and long_name.status_code == 400
    assert network.connections == []
    assert "Traceback" not in proxy.output()


# -- mitmproxy modes that carry raw TCP, UDP or DNS (issue 19) --

def _exit_of(proxy: Proxy, timeout: float = 30) -> tuple[int, str]:
    """Run the proxy's command until it exits by itself: its status and output (a proxy still
    running after `timeout` seconds fails the test instead)."""
    import subprocess

    proxy.folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(proxy.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               cwd=proxy.folder, start_new_session=True, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the proxy started and kept running: {output[-2000:]}")
    return process.returncode, output


RAW_MODES = ["reverse:tcp://127.0.0.1:{port}", "reverse:udp://127.0.0.1:{port}",
             "reverse:tls://127.0.0.1:{port}", "dns@{free}", "reverse:dns://127.0.0.1:{port}",
             "wireguard@{free}", "transparent"]


@LAUNCHERS
@pytest.mark.parametrize("mode", RAW_MODES)
def test_replay_refuses_modes_that_relay_raw_bytes_or_resolve_names(tmp_path, network, mode, launcher):
    from ..upstream import free_port

    spec = mode.format(port=network.port, free=free_port())
    status, output = _exit_of(Proxy(tmp_path, vcr_mode="replay", mode=spec, launcher=launcher))
    assert status != 0
    assert "Traceback" not in output and "Addon error" not in output, output
    lines = [line for line in output.splitlines() if "relays raw TCP, UDP or DNS" in line]
    assert len(lines) == 1 and spec in lines[0], output
    assert network.connections == []


def test_a_control_selection_cannot_switch_a_raw_mode_to_replay(tmp_path, network):
    import json
    import socket
    import time

    control = tmp_path / "control.sock"
    proxy = Proxy(tmp_path, vcr_mode="passthrough", vcr_control_socket=str(control))
    proxy.args += ["--mode", "regular", "--mode", f"reverse:tcp://127.0.0.1:{network.port}@0"]
    proxy.start()
    try:
        deadline = time.monotonic() + 10
        while not control.exists():  # made once the proxy runs
            assert time.monotonic() < deadline, proxy.output()
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(str(control))
            reader = raw.makefile("rb")

            def call(body: dict) -> dict:
                raw.sendall(json.dumps({"method": "POST", "path": "/cassette", "body": body}).encode() + b"\n")
                return json.loads(reader.readline())

            refused = call({"name": "t", "mode": "replay"})
            accepted = call({"name": "t", "mode": "record"})
            status = call({"name": "t"})
    finally:
        proxy.stop()
    assert refused["status"] == 400, refused
    message = refused["body"]["error"]["message"]
    assert "replay mode refused" in message and "reverse:tcp://" in message and "\n" not in message
    assert accepted["status"] == 200 and status["status"] == 200 and status["body"]["mode"] == "passthrough"
    assert "Traceback" not in proxy.output()


def _cassette_for(url: str, path) -> None:
    interaction = Interaction(
        id=0, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, url=url,
                              method="POST", body='{"model": "m"}', content_length=14),
        response=Response(proto="HTTP/2.0", proto_major=2, content_length=-1, body='{"ok": true}',
                          headers={"Content-Type": ["application/json"]}, status="200 OK", code=200))
    write_atomic(path, Cassette(interactions=[interaction]).dumps().encode())


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_replay_still_serves_a_reverse_http_proxy(tmp_path, network, scheme):
    import ssl

    import httpx

    # The target is the stand-in network: replay answers from the cassette and never dials it.
    _cassette_for(f"{scheme}://127.0.0.1:{network.port}/v1/chat/completions",
                  tmp_path / "cassettes" / "default.yaml")
    proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"reverse:{scheme}://127.0.0.1:{network.port}").start()
    try:
        verify = ssl.create_default_context(cafile=proxy.ca) if scheme == "https" else True
        if scheme == "https":
            verify.check_hostname = False  # mitmproxy's certificate names the target, not 127.0.0.1
        with httpx.Client(verify=verify, timeout=30, trust_env=False) as client:
            response = client.post(f"{scheme}://127.0.0.1:{proxy.port}/v1/chat/completions",
                                   json={"model": "m"})
    finally:
        proxy.stop()
    assert response.status_code == 200 and response.json() == {"ok": True}, response.text
    assert response.headers["X-Vcr-Proxy"].startswith("replayed ")
    assert network.connections == []


def test_replay_still_serves_a_socks5_proxy(tmp_path, network):
    import subprocess

    _cassette_for(CHAT, tmp_path / "cassettes" / "default.yaml")
    proxy = Proxy(tmp_path, vcr_mode="replay", mode="socks5").start()
    try:
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "--socks5-hostname", f"127.0.0.1:{proxy.port}",
             "--cacert", str(proxy.ca), "-H", "Content-Type: application/json",
             "-d", '{"model": "m"}', CHAT], capture_output=True, text=True, timeout=60)
    finally:
        proxy.stop()
    assert result.returncode == 0 and result.stdout == '{"ok": true}', (result.stdout, result.stderr)
    assert network.connections == []


def test_replay_closes_udp_rather_than_relaying_it(tmp_path):
    """reverse:https also listens for QUIC (local mode carries UDP too): in replay mode each
    UDP flow is closed at once, and no QUIC handshake completes."""
    import asyncio
    import socket
    import ssl
    import time

    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target:
        target.bind(("127.0.0.1", 0))
        target.setblocking(False)
        port = target.getsockname()[1]
        proxy = Proxy(tmp_path, vcr_mode="replay", mode=f"reverse:https://127.0.0.1:{port}").start()
        try:
            async def handshake() -> bool:
                configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"],
                                                  server_name="openrouter.ai", verify_mode=ssl.CERT_NONE)
                try:
                    async with asyncio.timeout(5):
                        async with connect("127.0.0.1", proxy.port, configuration=configuration,
                                           wait_connected=True):
                            return True
                except (TimeoutError, ConnectionError):
                    return False

            completed = asyncio.run(handshake())
            deadline = time.monotonic() + 10
            while "closed UDP from" not in proxy.output():
                assert time.monotonic() < deadline, proxy.output()
                time.sleep(0.05)
        finally:
            proxy.stop()
        with pytest.raises(BlockingIOError):
            target.recvfrom(65535)
    assert not completed
    assert "Traceback" not in proxy.output()
