"""The control endpoint: cassette and mode per test, eject with a report; never upstream."""

from __future__ import annotations

from .proxy import Proxy
from .test_record import CHAT, recorded
from .upstream import Upstream, make_certificate

CONTROL = "http://vcr-proxy.control"


def test_select_record_replay_and_eject(tmp_path):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="replay").start()
    try:
        with proxy.client() as client, proxy.client(headers={"X-Vcr-Control": "1"}) as control:
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


def test_control_requests_need_the_header_and_refuse_preflights_and_bad_bodies(tmp_path):
    proxy = Proxy(tmp_path, vcr_mode="passthrough").start()
    try:
        with proxy.client() as client:
            # What a web page could send: no custom header, or a CORS preflight.
            plain = client.post(f"{CONTROL}/cassette", json={"name": "x", "mode": "record"})
            preflight = client.options(f"{CONTROL}/cassette", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-vcr-control", "X-Vcr-Control": "1"})
            assert plain.status_code == 403 and "X-Vcr-Control: 1" in plain.json()["error"]["message"]
            assert preflight.status_code == 403
            headers = {"X-Vcr-Control": "1"}
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
