"""Replay never touches the network: vcr-proxy chained to a stand-in network that logs every
connection serves the whole corpus with default options, and the stand-in sees nothing."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load
from proxy_addon.persisters.filesystem import write_atomic

from ..conftest import CORPUS, corpus_files
from ..network import StandInNetwork
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
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionError):
            pass
    return answer


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
