"""The pytest plugin with realtime sessions: a test's sessions go in its cassette's sidecar, a
client message that misses fails the test, and a session never opened is reported."""

from __future__ import annotations

import pytest

from proxy_addon.realtime import format as sidecar

from .realtime_upstream import RealtimeUpstream
from .upstream import make_certificate

pytest_plugins = ["pytester"]

KEY = "AIzaSyD4kL8pZ3wY6tH1jF5dS0aGRt7xQ2mN9vB"

PROJECT = '''
import json
import os

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

URL = ("wss://generativelanguage.googleapis.com/ws/"
       "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=KEY")


def live(text):
    """A Gemini Live turn through HTTPS_PROXY (the plugin's), the proxy's CA from SSL_CERT_FILE."""
    seen = []
    with connect(URL, open_timeout=20) as websocket:
        websocket.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}}))
        seen.append(websocket.recv(20))
        websocket.send(json.dumps({"clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}))
        try:
            while b"usageMetadata" not in seen[-1]:
                seen.append(websocket.recv(20))
        except ConnectionClosed:
            pass  # swallowed: the plugin fails the test anyway
    return seen


@pytest.mark.vcr_proxy
def test_live():
    seen = live(os.environ.get("LIVE_TEXT", "hello"))
    assert seen[0] == b'{"setupComplete": {}}'


@pytest.mark.vcr_proxy
def test_quiet():
    if os.environ.get("LIVE_QUIET"):
        return
    live("hi")
'''.replace("KEY", KEY)


@pytest.fixture
def upstream(tmp_path):
    cert, key = make_certificate(tmp_path)
    server = RealtimeUpstream(cert, key, delay=0.0).start()
    server.cert = cert
    yield server
    server.stop()


def common(tmp_path) -> list[str]:
    return [f"--vcr-confdir={tmp_path / 'conf'}", "-p", "no:cacheprovider"]


def test_plugin_records_sessions_per_test_and_judges_their_replay(pytester: pytest.Pytester, tmp_path,
                                                                  upstream, monkeypatch):
    pytester.makepyfile(test_live=PROJECT)
    first = pytester.runpytest_subprocess(*common(tmp_path), f"--vcr-upstream={upstream.url}",
                                          f"--vcr-set=ssl_verify_upstream_trusted_ca={upstream.cert}")
    first.assert_outcomes(passed=2)
    upstream.stop()
    folder = pytester.path / "tests" / "cassettes" / "test_live"
    for name in ("test_live", "test_quiet"):
        (session,) = sidecar.read(folder / f"{name}.realtime.jsonl")
        assert session.url.endswith("?key=REDACTED")
        assert KEY.encode() not in (folder / f"{name}.realtime.jsonl").read_bytes()

    # Replayed offline, as recorded: both pass.
    pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay").assert_outcomes(passed=2)

    # A user message that differs: the proxy closes the session, and the test fails even though
    # it swallowed the close.
    monkeypatch.setenv("LIVE_TEXT", "something else")
    missed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    missed.assert_outcomes(passed=1, failed=1)
    output = missed.stdout.str()
    assert "miss: vcr-proxy: WebSocket wss://generativelanguage.googleapis.com/ws/" in output
    assert 'recorded "hello", sent "something else"' in output
    monkeypatch.delenv("LIVE_TEXT")

    # A session the test no longer opens: a warning, an error under --vcr-strict.
    monkeypatch.setenv("LIVE_QUIET", "1")
    quiet = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay")
    quiet.assert_outcomes(passed=2, warnings=1)
    assert "WebSocket session(s) #0 never opened" in quiet.stdout.str()
    strict = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
    strict.assert_outcomes(passed=2, errors=1)
    assert "1 WebSocket session(s) never opened in test_live/test_quiet" in strict.stdout.str()
    assert "test_quiet holds WebSocket session(s) #0 that this test never opened" in strict.stdout.str()
