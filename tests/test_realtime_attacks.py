"""Realtime sessions attacked: credentials hidden where a recording or mitmproxy's printers
could show them, replay that must not reach the network nor hang, and hostile sidecar files.
Real mitmproxy, real clients (the `websockets` library, raw sockets), real local servers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from proxy_addon.realtime import format as sidecar

from .proxy import Proxy
from .realtime_upstream import EPHEMERAL_SECRET, RealtimeUpstream
from .test_realtime import (TIMEOUT, client_context, no_secret_on_disk, recording_proxy,
                            replaying_proxy)
from .upstream import make_certificate

# Credentials no key shape finds: only the rules by name and place can.
PROTOCOL_KEY = "plainkeyvalue9876543210abcdefXYZ"  # openai-insecure-api-key.<key>
TOKEN_KEY = "a3f9c2e17b4d4e0f9a8b7c6d5e4f3a2b1c0d9e8f"  # Deepgram's ["token", "<key>"]
HEADER_KEY = "hdrsecret0123456789abcdefghij"  # x-goog-api-key
URL_KEY = "urlsecret0123456789abcdefghij"  # %6Bey= (key=, percent-encoded)
FIELD_KEY = "fieldsecret0123456789abcdefgh"  # "api_key" in a session.update
BINARY_KEY = "binsecret0123456789abcdefghijk"  # "apiKey" in JSON sent as a binary frame
SECRETS = (PROTOCOL_KEY, TOKEN_KEY, HEADER_KEY, URL_KEY, FIELD_KEY, BINARY_KEY, EPHEMERAL_SECRET)


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


@pytest.fixture
def upstream(certificate):
    server = RealtimeUpstream(*certificate).start()
    yield server
    server.stop()


def echo_session(proxy: Proxy) -> list:
    """A session with an upstream that echoes everything, credentials in every place a client
    puts them; what the client received."""
    seen: list = []
    with connect(f"wss://speech.example.com/v1/echo?%6Bey={URL_KEY}", ssl=client_context(proxy),
                 proxy=proxy.url, open_timeout=TIMEOUT,
                 subprotocols=["realtime", f"openai-insecure-api-key.{PROTOCOL_KEY}", "token", TOKEN_KEY],
                 additional_headers={"x-goog-api-key": HEADER_KEY}) as websocket:
        seen.append(websocket.recv(TIMEOUT))
        for message in (json.dumps({"type": "session.update", "session": {"api_key": FIELD_KEY}}),
                        json.dumps({"setup": {"apiKey": BINARY_KEY}}).encode(),
                        json.dumps({"type": "note", "text": f"an ephemeral key: {EPHEMERAL_SECRET}"}),
                        json.dumps({"type": "echo", "text": " ".join(SECRETS)})):
            websocket.send(message)
            seen.append(websocket.recv(TIMEOUT))
        websocket.send("close")
        with pytest.raises(ConnectionClosed):
            websocket.recv(TIMEOUT)
    return seen


def test_credentials_in_handshake_and_messages_reach_no_file_and_no_printed_flow(
        tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com",
                               flow_detail="3")
    try:
        recorded = echo_session(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    headers = upstream.handshakes[0]["headers"]
    assert headers["x-goog-api-key"] == HEADER_KEY and TOKEN_KEY in headers["Sec-WebSocket-Protocol"]
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert session.subprotocols == ["realtime", "openai-insecure-api-key.REDACTED", "token", "REDACTED"]
    assert session.url == "wss://speech.example.com/v1/echo?%6Bey=REDACTED"

    replayer = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com", flow_detail="3")
    try:
        replayed = echo_session(replayer)
    finally:
        replayer.stop()
    assert len(replayed) == len(recorded)
    no_secret_on_disk(tmp_path, *SECRETS)
    for proxy in (recorder, replayer):
        output = proxy.output()
        # mitmproxy printed the handshake (its headers: flow_detail 2 and up) and each message.
        assert "Addon error" not in output and "Sec-WebSocket-Protocol" in output
        assert output.count("WebSocket text message") >= 8
        for secret in SECRETS:
            assert secret not in output, secret
