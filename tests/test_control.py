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
        with proxy.client() as client:
            selected = client.post(f"{CONTROL}/cassette", json={"name": "suite/test_one", "mode": "once"})
            assert selected.json()["cassette"] == "suite/test_one" and selected.json()["mode"] == "once"
            assert client.post(CHAT, json={"model": "m"}).status_code == 200
            report = client.post(f"{CONTROL}/eject").json()
            assert (report["recorded"], report["replayed"], report["misses"]) == ([0], [], [])
            recorded(proxy.cassettes / "suite" / "test_one.yaml")
            upstream.stop()
            # Selected again: the cassette exists now, so once replays it, offline.
            client.post(f"{CONTROL}/cassette", json={"name": "suite/test_one", "mode": "once"})
            assert client.post(CHAT, json={"model": "m"}).json()["id"] == "gen-test-2"
            miss = client.post(CHAT, json={"model": "other"})
            report = client.post(f"{CONTROL}/eject").json()
            assert miss.status_code == 404
            assert report["recorded"] == [] and report["replayed"] == [0] and len(report["misses"]) == 1
            status = client.get(f"{CONTROL}/status").json()
            assert (status["cassette"], status["mode"]) == ("default", "replay")
            bad = client.post(f"{CONTROL}/cassette", json={"name": "../x"})
            assert bad.status_code == 400 and "must not contain '..'" in bad.json()["error"]["message"]
    finally:
        proxy.stop()
    assert "vcr-proxy.control" not in "".join(r["headers"].get("host", "") for r in upstream.requests)
    assert len(upstream.requests) == 1
