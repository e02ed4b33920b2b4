"""The control endpoint: cassette and mode per test, eject with a report; never upstream."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from proxy_addon.cassette import load

from .proxy import Proxy, control_headers
from .test_record import CHAT, recorded
from .upstream import Upstream, make_certificate

CONTROL = "http://vcr-proxy.control"


def test_select_record_replay_and_eject(tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="replay").start()
    try:
        with proxy.client() as client, proxy.control() as control:
            selected = control.post(f"{CONTROL}/cassette", json={"name": "suite/test_one", "mode": "once"})
            assert selected.json()["cassette"] == "suite/test_one" and selected.json()["mode"] == "once"
            assert client.post(CHAT, json={"model": "m"}).status_code == 200
            report = control.post(f"{CONTROL}/eject").json()
            assert (report["recorded"], report["replayed"], report["misses"]) == ([0], [], [])
            recorded(proxy.cassettes / "suite" / "test_one.yaml")
            upstream.stop()
            # Selected again: the cassette exists now, so once replays it, offline.
            control.post(f"{CONTROL}/cassette", json={"name": "suite/test_one", "mode": "once"})
            assert client.post(CHAT, json={"model": "m"}).json()["id"] == "gen-test-2"
            miss = client.post(CHAT, json={"model": "other"})
            report = control.post(f"{CONTROL}/eject").json()
            assert miss.status_code == 404
            assert report["recorded"] == [] and report["replayed"] == [0] and len(report["misses"]) == 1
            status = control.get(f"{CONTROL}/status").json()
            assert (status["cassette"], status["mode"]) == ("default", "replay")
            bad = control.post(f"{CONTROL}/cassette", json={"name": "../x"})
            assert bad.status_code == 400 and "must not contain '..'" in bad.json()["error"]["message"]
    finally:
        proxy.stop()
    assert "vcr-proxy.control" not in "".join(r["headers"].get("host", "") for r in upstream.requests)
    assert len(upstream.requests) == 1


def test_control_requests_need_the_token_and_refuse_preflights_and_bad_bodies(tmp_path):
    proxy = Proxy(tmp_path, vcr_mode="passthrough").start()
    try:
        headers = control_headers(proxy)
        token_file = proxy.confdir / "vcr-proxy-control-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert headers["X-Vcr-Control"] == token_file.read_text().strip()
        with proxy.client() as client:
            # What a web page could send: no custom header, or a CORS preflight; what another
            # local user could: the header without the token, or with a guess.
            plain = client.post(f"{CONTROL}/cassette", json={"name": "x", "mode": "record"})
            preflight = client.options(f"{CONTROL}/cassette", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-vcr-control", **headers})
            guesses = [client.post(f"{CONTROL}/cassette", json={"name": "x", "mode": "record"},
                                   headers={"X-Vcr-Control": guess})
                       for guess in ("1", "", headers["X-Vcr-Control"][:-1], headers["X-Vcr-Control"] + "x")]
            message = plain.json()["error"]["message"]
            assert plain.status_code == 403 and "X-Vcr-Control: <token>" in message
            assert str(token_file) in message and "VCR_PROXY_CONTROL_TOKEN" in message
            assert "\n" not in message and headers["X-Vcr-Control"] not in message
            assert preflight.status_code == 403
            assert [guess.status_code for guess in guesses] == [403] * 4
            for body in (b"[]", b"null", b"5", b'"x"', b"true", b'{"name": "x", "bogus": 1}',
                         b'{"name": 5}', b"{not json"):
                bad = client.post(f"{CONTROL}/cassette", content=body, headers=headers)
                assert bad.status_code == 400, body
                assert "\n" not in bad.json()["error"]["message"]
            status = client.get(f"{CONTROL}/status", headers=headers).json()
            assert status["mode"] == "passthrough" and status["failed"] == []
            # Over a tunnel too (CONNECT vcr-proxy.control:443), in passthrough mode.
            tunnelled = client.get("https://vcr-proxy.control/status", headers=headers)
            assert tunnelled.status_code == 200
    finally:
        proxy.stop()


def _call(channel, replies, line: bytes, events: list | None = None) -> dict:
    """Send one line, return the answer; event lines before it go to `events`."""
    channel.sendall(line + b"\n")
    while "event" in (message := json.loads(replies.readline())):
        if events is None:
            raise AssertionError(f"unexpected event {message}")
        events.append(message["event"])
    return message


def test_the_control_socket_answers_the_same_calls_as_json_lines(tmp_path):
    """What the pytest plugin uses: the control calls on a Unix socket only its owner can
    open, one JSON line each way, through mitmdump -s and vcr-proxy start alike."""
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    for launcher in (False, True):
        folder = tmp_path / ("launcher" if launcher else "mitmdump")
        private = Path(tempfile.mkdtemp(prefix="vcr-test-"))
        path = private / "control"
        proxy = Proxy(folder, upstream_ca=cert, launcher=launcher, vcr_upstream=upstream.url,
                      vcr_mode="passthrough", vcr_control_socket=str(path)).start()
        try:
            _wait_for(path)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            with socket.socket(socket.AF_UNIX) as channel, channel.makefile("rb") as replies:
                channel.settimeout(30)
                channel.connect(str(path))
                events: list[str] = []
                call = lambda line: _call(channel, replies, line, events)  # noqa: E731
                selected = call(b'{"method": "POST", "path": "/cassette", "body": {"name": "s/t", "mode": "once"}}')
                assert selected["status"] == 200 and selected["body"]["cassette"] == "s/t"
                with proxy.client() as client:
                    assert client.post(CHAT, json={"model": "m"}).status_code == 200
                    report = call(b'{"method": "POST", "path": "/report"}')["body"]
                    assert report["recorded"] == [0] and report["cassette"] == "s/t"
                    # /report leaves the selection as it was; the next selection closes it.
                    assert client.post(CHAT, json={"model": "n"}).status_code == 200
                    answer = call(b'{"method": "POST", "path": "/cassette", "body": {"name": "s/t", "mode": "replay"}}')
                    assert answer["body"]["previous"]["recorded"] == [0, 1]
                    assert events == ["record", "record"]
                    # A miss is told on the socket before the client has its answer.
                    assert client.post(CHAT, json={"model": "m"}).status_code == 200
                    assert client.post(CHAT, json={"model": "unrecorded"}).status_code == 404
                    channel.setblocking(False)
                    assert json.loads(replies.readline()) == {"event": "miss"}
                    channel.setblocking(True)
                    channel.settimeout(30)
                    events.clear()
                    assert call(b'{"method": "POST", "path": "/eject"}')["body"]["misses"]
                    assert events == []
                for line in (b"{not json", b"[]", b'{"method": 5, "path": "/eject"}',
                             b'{"path": "/eject"}', b'{"method": "POST", "path": "/cassette", "body": {"name": "../x"}}',
                             b'{"method": "POST", "path": "/cassette", "body": {"name": "x", "mode": "bogus"}}',
                             b"[" * 100_000):
                    answer = call(line)
                    assert answer["status"] == 400, line[:60]
                    assert "\n" not in answer["body"]["error"]["message"]
                assert call(b'{"method": "GET", "path": "/nothing"}')["status"] == 404
                assert call(b'{"method": "GET", "path": "/status"}')["body"]["mode"] == "passthrough"
                # A line over the limit (1 MiB) ends the connection; the proxy carries on.
                try:
                    channel.sendall(b"x" * (2 << 20) + b"\n")
                    assert replies.readline() == b""
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed while the line was still being sent
            with socket.socket(socket.AF_UNIX) as again:
                again.connect(str(path))
                again.sendall(b'{"method": "GET", "path": "/status"}\n')
                assert b'"status": 200' in again.recv(65536)
        finally:
            proxy.stop()
        assert not path.exists()  # removed at shutdown
        assert len(load(folder / "cassettes" / "s" / "t.yaml").interactions) == 2
        shutil.rmtree(private)
    upstream.stop()


def test_a_control_socket_path_that_is_taken_is_one_clear_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("someone else's file")
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="passthrough", vcr_control_socket=str(taken))
    with pytest.raises(RuntimeError):
        proxy.start()
    assert proxy.process.wait(10) != 0
    proxy.stop()
    assert f"vcr_control_socket: {taken} exists; give a path where no file is" in proxy.output()
    assert "Traceback" not in proxy.output()
    assert taken.read_text() == "someone else's file"
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="passthrough",
                  vcr_control_socket=str(tmp_path / "no-such-folder" / "control"))
    try:
        proxy.start()  # the proxy listens for a moment before it finds it cannot make the socket
    except RuntimeError:
        pass
    assert proxy.process.wait(10) == 1
    proxy.stop()
    assert "vcr_control_socket: cannot listen on" in proxy.output()
    assert "Traceback" not in proxy.output()


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_test_that_sends_nothing_reports_its_whole_cassette_unused(tmp_path):
    """The report right after a selection (a test that never called its API) comes while the
    selected cassette is still being read ahead: every interaction is unused, not none."""
    from proxy_addon.cassette import Cassette, Interaction, Request, Response
    from proxy_addon.persisters.filesystem import write_atomic

    interactions = [Interaction(id=n, request=Request(url=CHAT, method="POST", body=json.dumps({"n": n})),
                                response=Response(body=f"answer {n}", code=200, status="200 OK"))
                    for n in range(300)]
    write_atomic(tmp_path / "cassettes" / "s" / "t.yaml", Cassette(interactions=interactions).dumps().encode())
    private = Path(tempfile.mkdtemp(prefix="vcr-test-"))
    path = private / "control"
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="passthrough", vcr_control_socket=str(path)).start()
    try:
        _wait_for(path)
        with socket.socket(socket.AF_UNIX) as channel, channel.makefile("rb") as replies:
            channel.settimeout(30)
            channel.connect(str(path))
            for mode in ("replay", "once"):
                selection = json.dumps({"method": "POST", "path": "/cassette",
                                        "body": {"name": "s/t", "mode": mode}}).encode()
                assert _call(channel, replies, selection)["status"] == 200
                report = _call(channel, replies, b'{"method": "POST", "path": "/report"}')["body"]
                assert report["unused"] == list(range(300)), mode
                # The selection after it closes this one with the same report.
                again = _call(channel, replies, selection)["body"]["previous"]
                assert again["unused"] == list(range(300)), mode
    finally:
        proxy.stop()
        shutil.rmtree(private)
    assert "Traceback" not in proxy.output()


def test_once_decides_at_the_first_request_not_at_the_selection(tmp_path):
    """A cassette put in place after its selection (by a fixture, say) is replayed in once
    mode, not recorded over; one deleted after it is recorded, not missed."""
    from proxy_addon.cassette import Cassette, Interaction, Request, Response
    from proxy_addon.persisters.filesystem import write_atomic

    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, launcher=True, vcr_upstream=upstream.url,
                  vcr_mode="passthrough").start()
    placed = proxy.cassettes / "placed.yaml"
    cassette = Cassette(interactions=[Interaction(
        id=0, request=Request(url=CHAT, method="POST", body="{}"),
        response=Response(body="from the placed cassette", code=200, status="200 OK"))])
    try:
        with proxy.client() as client, proxy.control() as control:
            control.post(f"{CONTROL}/cassette", json={"name": "placed", "mode": "once"})
            write_atomic(placed, cassette.dumps().encode())
            assert client.post(CHAT, content=b"{}").text == "from the placed cassette"
            assert control.post(f"{CONTROL}/eject").json()["replayed"] == [0]
            assert upstream.requests == []
            control.post(f"{CONTROL}/cassette", json={"name": "placed", "mode": "once"})
            placed.unlink()
            assert client.post(CHAT, json={"model": "m"}).status_code == 200
            assert control.post(f"{CONTROL}/eject").json()["recorded"] == [0]
    finally:
        proxy.stop()
        upstream.stop()
    assert len(upstream.requests) == 1
    assert "placed cassette" not in placed.read_text()


def test_without_the_http_endpoint_the_control_host_is_answered_here_and_nowhere_else(tmp_path):
    """vcr_control_http=false (the pytest plugin's setting): the socket is the only way in; a
    request to the control host, with any header, gets a one-line 404 from the proxy itself."""
    from .network import StandInNetwork

    network = StandInNetwork().start()
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_control_http="false",
                  mode=f"upstream:{network.url}").start()
    try:
        with proxy.client(headers={"X-Vcr-Control": "1"}) as client:
            answers = [client.post(f"{CONTROL}/cassette", json={"name": "x", "mode": "passthrough"}),
                       client.get(f"{CONTROL}/status"),
                       client.get("https://vcr-proxy.control/status")]
    finally:
        proxy.stop()
        network.stop()
    for answer in answers:
        message = answer.json()["error"]["message"]
        assert answer.status_code == 404 and "no HTTP control endpoint" in message and "\n" not in message
    assert network.connections == []
    assert not (proxy.confdir / "vcr-proxy-control-token").exists()


def test_a_token_given_to_the_proxy_is_the_one_it_requires(tmp_path):
    token = "given-by-the-runner-0123456789"
    proxy = Proxy(tmp_path, launcher=True, vcr_mode="replay", vcr_control_token=token).start()
    try:
        with proxy.client() as client:
            taken = client.get(f"{CONTROL}/status", headers={"X-Vcr-Control": token})
            refused = client.get(f"{CONTROL}/status", headers={"X-Vcr-Control": "1"})
    finally:
        proxy.stop()
    assert taken.status_code == 200 and refused.status_code == 403
    assert "the token given to this proxy in vcr_control_token" in refused.json()["error"]["message"]
    assert token not in refused.text and token not in proxy.output()
    assert not (proxy.confdir / "vcr-proxy-control-token").exists()
