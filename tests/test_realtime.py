"""Realtime WebSocket sessions recorded beside the cassette and replayed from it, with real
clients (the openai SDK's realtime client, the `websockets` library) through the real proxy,
against a local wss:// stand-in (realtime_upstream.py) that the replay never reaches."""

from __future__ import annotations

import base64
import json
import os
import random
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from proxy_addon.realtime import format as sidecar

from .proxy import ROOT, Proxy
from .realtime_upstream import EPHEMERAL_SECRET, RealtimeUpstream
from .upstream import make_certificate

OPENAI_KEY = "sk-proj-" + "Rt7xQ2mN9vB4kL8pZ3wY6tH1jF5dS0aG" * 2
GOOGLE_KEY = "AIzaSyD" + "4kL8pZ3wY6tH1jF5dS0aGRt7xQ2mN9vB4"[:32]
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
TIMEOUT = 20  # seconds: only so that a broken test fails rather than hangs


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


@pytest.fixture
def upstream(certificate):
    server = RealtimeUpstream(*certificate).start()
    yield server
    server.stop()


@pytest.fixture
def through(monkeypatch):
    """Point clients in this process at a proxy: HTTPS_PROXY, and its CA as the only trust."""
    def use(proxy: Proxy) -> None:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
    return use


def recording_proxy(tmp_path: Path, certificate, upstream: RealtimeUpstream, **options) -> Proxy:
    return Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="record", vcr_upstream=upstream.url,
                 **options).start()


def replaying_proxy(tmp_path: Path, **options) -> Proxy:
    options.setdefault("vcr_timing", "events")
    return Proxy(tmp_path, vcr_mode="replay", **options).start()


def no_secret_on_disk(root: Path, *secrets: str) -> None:
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".pem", ".p12", ".cer") and "mitmproxy" not in path.parts:
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret[:8]}... is in {path}"


def client_context(proxy: Proxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=proxy.ca)


def show(cassette: Path) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "show", str(cassette)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- the openai SDK's realtime client --

TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]


def openai_conversation(question: str = "What's the weather in Paris?") -> dict:
    """Two turns with the SDK: a function call, its output, a text answer. What the client saw."""
    import openai

    client = openai.OpenAI(api_key=OPENAI_KEY, max_retries=0)
    seen: dict = {"events": [], "arguments": "", "text": "", "call": None, "errors": []}
    times: dict = {}
    with client.realtime.connect(model="gpt-realtime") as connection:
        connection.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "tools": TOOLS})
        connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]})
        times["first_request"] = time.monotonic()
        connection.response.create()
        for event in connection:
            seen["events"].append(event.type)
            if event.type == "error":
                seen["errors"].append(event.error.message)
                break
            if event.type == "response.function_call_arguments.delta":
                seen["arguments"] += event.delta
                times["last_argument_delta"] = time.monotonic()
            if event.type == "response.function_call_arguments.done":
                seen["call"] = (event.name, event.arguments, event.call_id)
            if event.type == "response.done":
                break
        if seen["errors"]:
            try:
                for event in connection:  # the proxy closes the session after its error
                    seen["events"].append(event.type)
            except ConnectionClosed as closed:
                seen["close"] = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None
            return seen
        connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": seen["call"][2],
            "output": json.dumps({"temperature_c": 22, "sky": "sunny"})})
        connection.response.create()
        for event in connection:
            seen["events"].append(event.type)
            if event.type == "response.output_text.delta":
                seen["text"] += event.delta
            if event.type == "response.done":
                seen["usage"] = event.response.usage.total_tokens
                break
    seen["times"] = times
    return seen


def test_openai_realtime_session_recorded_and_replayed_offline(tmp_path, certificate, upstream, through):
    recorder = recording_proxy(tmp_path, certificate, upstream)
    through(recorder)
    try:
        recorded = openai_conversation()
    finally:
        recorder.stop()
    assert recorded["call"][:2] == ("get_weather", '{"location": "Paris, France"}')
    assert recorded["text"] == "It is 22 degrees and sunny in Paris."
    assert upstream.handshakes[0]["headers"]["Authorization"] == f"Bearer {OPENAI_KEY}"
    upstream.stop()  # offline from here on

    cassette = tmp_path / "cassettes" / "default.yaml"
    assert not cassette.exists()  # no HTTP exchange: the go-vcr cassette is not touched
    sessions = sidecar.read(sidecar.sidecar_path(cassette))
    assert len(sessions) == 1
    session = sessions[0]
    assert session.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert session.protocol is None and session.close is not None and session.close.by_client
    client_sent = [json.loads(m.data)["type"] for m in session.client_messages]
    assert client_sent == ["session.update", "conversation.item.create", "response.create",
                           "conversation.item.create", "response.create"]
    deltas = [m for m in session.messages if not m.from_client and "arguments.delta" in m.data]
    assert len(deltas) == 3 and all(b.ms - a.ms >= 45 for a, b in zip(deltas, deltas[1:]))
    # The client may send its session.update before session.created reaches it: found by type.
    created = next(m for m in session.messages if not m.from_client and "session.created" in m.data)
    assert '"value":"REDACTED"' in created.data.replace(" ", "")
    shown = show(cassette)
    assert "session 0 wss://api.openai.com/v1/realtime?model=gpt-realtime" in shown
    assert "    > user: What's the weather in Paris?\n" in shown
    assert '    < tool call: get_weather({"location": "Paris, France"})  [call_001]\n' in shown
    assert "    > tool [call_001]: " in shown
    assert "    < assistant: It is 22 degrees and sunny in Paris.\n" in shown
    assert "    tokens: 30 in, 12 out" in shown

    replayer = replaying_proxy(tmp_path)
    through(replayer)
    try:
        replayed = openai_conversation()
    finally:
        replayer.stop()
    for key in ("events", "arguments", "text", "call", "usage", "errors"):
        assert replayed[key] == recorded[key], key
    # Paced as recorded: the player never sends a delta before its recorded offset from the
    # client message it answers (so this holds however slow the machine is).
    first = session.client_messages[2].ms
    last_delta = deltas[-1].ms
    took = replayed["times"]["last_argument_delta"] - replayed["times"]["first_request"]
    assert took >= (last_delta - first) / 1e3 - 0.005
    no_secret_on_disk(tmp_path, OPENAI_KEY, EPHEMERAL_SECRET)


def test_openai_realtime_message_that_differs_gets_an_error_event(tmp_path, certificate, upstream, through):
    recorder = recording_proxy(tmp_path, certificate, upstream)
    through(recorder)
    try:
        openai_conversation()
    finally:
        recorder.stop()
    upstream.stop()
    replayer = replaying_proxy(tmp_path, vcr_timing="none")
    through(replayer)
    try:
        seen = openai_conversation("What's the weather in Rome?")
    finally:
        replayer.stop()
    assert seen["events"][-1] == "error" or "error" in seen["events"]
    (message,) = seen["errors"]
    assert message.startswith("vcr-proxy: WebSocket wss://api.openai.com/v1/realtime?model=gpt-realtime")
    assert "default.realtime.jsonl#session 0" in message
    assert "client message #1 (conversation.item.create)" in message
    assert 'recorded "What\'s the weather in Paris?", sent "What\'s the weather in Rome?"' in message
    assert seen.get("close") == (1008, seen["close"][1]) and "vcr-proxy" in seen["close"][1]
    no_secret_on_disk(tmp_path, OPENAI_KEY, EPHEMERAL_SECRET)


# -- the websockets library: binary PCM16 audio --

def pcm_frames(count: int = 5) -> list[bytes]:
    """100 ms of 24 kHz mono PCM16 each (4,800 bytes): a deterministic noise."""
    generator = random.Random(22)
    return [bytes(generator.getrandbits(8) for _ in range(4800)) for _ in range(count)]


def audio_session(proxy: Proxy, host: str = "speech.example.com") -> dict:
    seen: dict = {"binary": [], "text": []}
    with connect(f"wss://{host}/v1/audio", ssl=client_context(proxy), proxy=proxy.url,
                 open_timeout=TIMEOUT, max_size=None, compression=None) as websocket:
        for frame in pcm_frames():
            websocket.send(frame)
            seen["binary"].append(websocket.recv(TIMEOUT))
            seen["text"].append(websocket.recv(TIMEOUT))
        websocket.send("done")
        try:
            websocket.recv(TIMEOUT)
        except ConnectionClosed as closed:
            seen["close"] = (closed.rcvd.code, closed.rcvd.reason)
    return seen


def test_binary_audio_frames_replayed_byte_for_byte(tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        recorded = audio_session(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    frames = pcm_frames()
    assert recorded["binary"] == [frame[::-1] for frame in frames]
    assert recorded["close"] == (1000, "bye")
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert [m.data for m in session.client_messages][:5] == frames
    assert session.close.code == 1000 and not session.close.by_client
    shown = show(tmp_path / "cassettes" / "default.yaml")
    assert "    > binary: 5 frames, 24000 bytes (0.50s as 24 kHz PCM16)" in shown
    assert "    closed by the server (1000 bye)" in shown

    replayer = replaying_proxy(tmp_path)
    try:
        replayed = audio_session(replayer)
    finally:
        replayer.stop()
    assert replayed == recorded


# -- Gemini Live --

def gemini_session(proxy: Proxy, text: str = "hello there") -> dict:
    seen: dict = {"messages": []}
    url = f"wss://generativelanguage.googleapis.com{GEMINI_PATH}?key={GOOGLE_KEY}"
    with connect(url, ssl=client_context(proxy), proxy=proxy.url, open_timeout=TIMEOUT) as websocket:
        websocket.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash",
                                             "generationConfig": {"responseModalities": ["TEXT"]}}}))
        seen["messages"].append(websocket.recv(TIMEOUT))
        websocket.send(json.dumps({"clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}))
        try:
            while True:
                message = websocket.recv(TIMEOUT)
                seen["messages"].append(message)
                if b"usageMetadata" in message:
                    break
        except ConnectionClosed as closed:
            seen["close"] = (closed.rcvd.code, closed.rcvd.reason)
    return seen


def test_gemini_live_session_recorded_and_replayed_without_its_key(tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream)
    try:
        recorded = gemini_session(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    assert f"key={GOOGLE_KEY}" in upstream.handshakes[0]["path"]  # the upstream got it
    assert json.loads(recorded["messages"][0]) == {"setupComplete": {}}
    text = "".join(json.loads(m)["serverContent"]["modelTurn"]["parts"][0]["text"]
                   for m in recorded["messages"] if b"modelTurn" in m)
    assert text == "You said: hello there"
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert session.url == f"wss://generativelanguage.googleapis.com{GEMINI_PATH}?key=REDACTED"

    replayer = replaying_proxy(tmp_path, vcr_allow_repeats="true")
    try:
        replayed = gemini_session(replayer)
        differs = gemini_session(replayer, "something else")
    finally:
        replayer.stop()
    assert replayed == recorded
    # No error event in this protocol: a close with 1008 and the reason.
    code, reason = differs["close"]
    assert code == 1008 and reason.startswith("vcr-proxy: WebSocket wss://generativelanguage")
    assert len(differs["messages"]) == 1  # setupComplete, then the close
    no_secret_on_disk(tmp_path, GOOGLE_KEY)
    assert GOOGLE_KEY not in replayer.output() and GOOGLE_KEY not in recorder.output()


def test_sessions_told_apart_by_url_and_order(tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        first_audio = audio_session(recorder)
        gemini = gemini_session(recorder)
        second_audio = audio_session(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    sessions = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert [s.id for s in sessions] == [0, 1, 2]
    replayer = replaying_proxy(tmp_path, vcr_timing="none")
    try:
        assert gemini_session(replayer) == gemini  # out of recorded order: found by URL
        assert audio_session(replayer) == first_audio
        assert audio_session(replayer) == second_audio
        with pytest.raises(Exception) as refused:  # all used: a miss, answered 404
            audio_session(replayer)
    finally:
        replayer.stop()
    assert "404" in str(refused.value)
    assert "all already replayed" in replayer.output()


# -- files: crashes, the cassette's bytes, symlinks --

def test_a_killed_proxy_keeps_what_was_exchanged(tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    path = tmp_path / "cassettes" / "default.realtime.jsonl"
    frames = pcm_frames(2)
    try:
        websocket = connect("wss://speech.example.com/v1/audio", ssl=client_context(recorder),
                            proxy=recorder.url, open_timeout=TIMEOUT, max_size=None)
        for frame in frames:
            websocket.send(frame)
            websocket.recv(TIMEOUT), websocket.recv(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT  # appended as the session goes: wait for the lines
        while (not path.exists() or path.read_text().count("\n") < 7) and time.monotonic() < deadline:
            time.sleep(0.02)
        recorder.kill()  # mid-session
        websocket.close_socket()
    finally:
        recorder.stop()
    (session,) = sidecar.read(path)
    assert session.close is None
    assert [m.data for m in session.client_messages] == frames
    assert len(session.messages) == 6


def test_new_episodes_keeps_the_cassette_bytes_and_replays_held_sessions(tmp_path, certificate, upstream):
    source = next((Path(__file__).parent.parent.parent / "shared" / "corpus").rglob("*.yaml"))
    cassette = tmp_path / "cassettes" / "default.yaml"
    cassette.parent.mkdir(parents=True)
    cassette.write_bytes(source.read_bytes())
    before = cassette.read_bytes()
    proxy = Proxy(tmp_path, upstream_ca=certificate[0], vcr_mode="new-episodes",
                  vcr_upstream=upstream.url, vcr_hosts="+speech.example.com").start()
    try:
        recorded = audio_session(proxy)  # not held: recorded
        upstream.stop()
        # Held now (the sidecar is read again when it changes, as a cassette is): replayed.
        assert audio_session(proxy) == recorded
    finally:
        proxy.stop()
    assert cassette.read_bytes() == before  # the go-vcr cassette: the same bytes
    (session,) = sidecar.read(sidecar.sidecar_path(cassette))
    again = Proxy(tmp_path, vcr_mode="new-episodes", vcr_hosts="+speech.example.com").start()
    try:
        assert audio_session(again) == recorded  # held: replayed, with no upstream
    finally:
        again.stop()
    assert cassette.read_bytes() == before


def test_a_symlinked_sidecar_is_refused_and_nothing_is_written_through_it(tmp_path, certificate, upstream):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "default.realtime.jsonl").symlink_to(outside)
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        with pytest.raises(Exception) as refused:
            audio_session(recorder)
    finally:
        recorder.stop()
    assert "400" in str(refused.value)
    assert "is a symlink" in recorder.output()
    assert outside.read_text() == "keep me\n"


# -- a refused handshake --

def refused(proxy: Proxy) -> tuple[int, bytes, str]:
    from websockets.exceptions import InvalidStatus
    with pytest.raises(InvalidStatus) as refusal:
        connect("wss://api.openai.com/v1/refused", ssl=client_context(proxy), proxy=proxy.url,
                open_timeout=TIMEOUT, additional_headers={"Authorization": f"Bearer {OPENAI_KEY}"})
    response = refusal.value.response
    return response.status_code, response.body, response.headers.get("Content-Type")


def test_a_refused_handshake_is_recorded_and_replayed_as_the_same_answer(tmp_path, certificate, upstream):
    recorder = recording_proxy(tmp_path, certificate, upstream)
    try:
        recorded = refused(recorder)
    finally:
        recorder.stop()
    upstream.stop()
    assert recorded[0] == 401 and b"Incorrect API key" in recorded[1]
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert session.refused and session.status == 401 and not session.messages
    assert "session 0 wss://api.openai.com/v1/refused (refused: 401)" in show(tmp_path / "cassettes" / "default.yaml")
    replayer = replaying_proxy(tmp_path)
    try:
        assert refused(replayer) == recorded
    finally:
        replayer.stop()
    no_secret_on_disk(tmp_path, OPENAI_KEY)


# -- reading: show --json, report (in headless Chromium), diff --

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "vcr-proxy"), *args],
                          capture_output=True, text=True, timeout=120)


def test_show_json_report_and_diff_read_sessions(tmp_path, certificate, upstream):
    import shutil
    from html.parser import HTMLParser

    recorded = {}
    for name, text in (("old", "<script>alert(1)</script> hello"), ("new", "good evening")):
        recorder = recording_proxy(tmp_path / name, certificate, upstream)
        try:
            gemini_session(recorder, text)
        finally:
            recorder.stop()
        recorded[name] = tmp_path / name / "cassettes" / "default.yaml"  # no HTTP: no .yaml
    upstream.stop()
    old, new = recorded["old"], recorded["new"]

    shown = cli("show", "--json", str(old))
    assert shown.returncode == 0, shown.stderr
    (session,) = json.loads(shown.stdout)["sessions"]
    assert session["url"].endswith("BidiGenerateContent?key=REDACTED") and session["close"]["by"] == "client"
    talk = [(t["from"], t["kind"], t["text"]) for t in session["conversation"]]
    assert ("client", "user", "<script>alert(1)</script> hello") in talk
    assert ("server", "assistant", "You said: <script>alert(1)</script> hello") in talk
    assert [m["kind"] for m in session["messages"]][:2] == ["setup", "setupComplete"]

    page = tmp_path / "report.html"
    made = cli("report", str(old), str(new), "-o", str(page))
    assert made.returncode == 0, made.stderr
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the report test needs Debian's chromium (make test installs it)"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]

    class Dom(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

        def handle_data(self, data):
            self.text.append(data)

    parsed = Dom()
    parsed.feed(dom.stdout)
    classes = [attrs.get("class", "") for _, attrs in parsed.tags]
    assert "script" not in [tag for tag, _ in parsed.tags]  # the recorded text stayed text
    assert classes.count("session") == 2 and classes.count("session-timeline") == 2
    assert "You said: <script>alert(1)</script> hello" in parsed.text
    assert "You said: good evening" in parsed.text

    differs = cli("diff", str(old), str(new))
    assert differs.returncode == 1, differs.stderr
    lines = differs.stdout.splitlines()
    assert any(line.startswith("session 0 client message #1 (clientContent): ") for line in lines), lines
    assert any(line.startswith("session 0 assistant #0: ") and "good evening" in line for line in lines), lines
    assert cli("diff", str(old), str(old)).returncode == 0


# -- selecting a cassette: the control endpoint, X-Vcr-Cassette; record mode's fresh start --

CONTROL = "http://vcr-proxy.control/cassette"


def sessions_of(tmp_path: Path, name: str) -> list:
    return sidecar.read(tmp_path / "cassettes" / f"{name}.realtime.jsonl")


def test_the_control_endpoint_selects_the_cassette_of_a_session(tmp_path, certificate, upstream):
    proxy = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        with proxy.control() as control:
            assert control.post(CONTROL, json={"name": "chosen", "mode": "record"}).status_code == 200
            recorded = audio_session(proxy)
            upstream.stop()
            assert control.post(CONTROL, json={"name": "chosen", "mode": "replay"}).status_code == 200
            assert audio_session(proxy) == recorded  # replayed from the chosen cassette
            report = control.post("http://vcr-proxy.control/eject").json()
    finally:
        proxy.stop()
    assert len(sessions_of(tmp_path, "chosen")) == 1 and not sessions_of(tmp_path, "default")
    assert report["misses"] == [] and report["unused_sessions"] == []


def test_x_vcr_cassette_selects_the_cassette_of_a_session_and_is_not_forwarded(tmp_path, certificate, upstream):
    proxy = recording_proxy(tmp_path, certificate, upstream)
    try:
        with connect(f"wss://api.openai.com/v1/echo", ssl=client_context(proxy), proxy=proxy.url,
                     open_timeout=TIMEOUT, additional_headers={"X-Vcr-Cassette": "by-header"}) as websocket:
            websocket.recv(TIMEOUT)
            websocket.send("hi")
            assert websocket.recv(TIMEOUT) == "hi"
    finally:
        proxy.stop()
    assert "X-Vcr-Cassette" not in upstream.handshakes[0]["headers"]
    (session,) = sessions_of(tmp_path, "by-header")
    assert [m.data for m in session.client_messages] == ["hi"] and not sessions_of(tmp_path, "default")


def test_record_mode_leaves_no_stale_sidecar_and_two_proxies_keep_each_others_sessions(
        tmp_path, certificate, upstream):
    first = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    second = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        audio_session(first)
        audio_session(second)  # the same cassette, at once: joined, not started anew
        audio_session(first)
    finally:
        second.stop()
        first.stop()
    assert [s.id for s in sessions_of(tmp_path, "default")] == [0, 1, 2]

    # A test selected again in record mode that no longer opens a WebSocket: no session left.
    proxy = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        with proxy.control() as control:
            assert control.post(CONTROL, json={"name": "default", "mode": "record"}).status_code == 200
            control.post("http://vcr-proxy.control/eject")
    finally:
        proxy.stop()
    assert not (tmp_path / "cassettes" / "default.realtime.jsonl").exists()


# -- Node's `ws` through a proxy agent --

NODE_WS_CLIENT = """
import WebSocket from "ws";
import { HttpsProxyAgent } from "https-proxy-agent";
import { createHash } from "node:crypto";

// ws reads no HTTPS_PROXY itself: the agent does the CONNECT; the CA from NODE_EXTRA_CA_CERTS.
const agent = new HttpsProxyAgent(process.env.HTTPS_PROXY);
const socket = new WebSocket("wss://speech.example.com/v1/audio", { agent });
const frames = [];
for (let i = 0; i < 5; i++) {
  const frame = Buffer.alloc(4800);  // 100 ms of 24 kHz PCM16
  for (let j = 0; j < frame.length; j++) frame[j] = (i * 7 + j * 13) % 256;
  frames.push(frame);
}
const seen = [];
let sent = 0;
socket.on("open", () => socket.send(frames[sent++]));
socket.on("message", (data, isBinary) => {
  seen.push(isBinary ? "binary " + createHash("sha256").update(data).digest("hex") : "text " + data.toString());
  if (!isBinary) {
    if (sent < frames.length) socket.send(frames[sent++]);
    else socket.send("done");
  }
});
socket.on("close", (code, reason) => {
  seen.push(`close ${code} ${reason.toString()}`);
  process.stdout.write(JSON.stringify(seen));
});
socket.on("error", (error) => { process.stderr.write(String(error)); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_ws_client(tmp_path_factory):
    """Node with `ws` and `https-proxy-agent`, installed from the npm registry."""
    folder = tmp_path_factory.mktemp("node_ws_client")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
                    "ws@8", "https-proxy-agent@7"], check=True, timeout=300, capture_output=True)
    script = folder / "client.mjs"
    script.write_text(NODE_WS_CLIENT)
    return script


def node_audio(script: Path, proxy: Proxy) -> list:
    env = dict(os.environ, HTTPS_PROXY=proxy.url, NODE_EXTRA_CA_CERTS=str(proxy.ca))
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_node_ws_through_a_proxy_agent_recorded_and_replayed_offline(tmp_path, certificate, upstream,
                                                                     node_ws_client):
    recorder = recording_proxy(tmp_path, certificate, upstream, vcr_hosts="+speech.example.com")
    try:
        recorded = node_audio(node_ws_client, recorder)
    finally:
        recorder.stop()
    upstream.stop()
    assert len(recorded) == 11 and recorded[-1] == "close 1000 bye"
    assert recorded[1] == 'text {"ack": 1, "bytes": 4800}'
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert [len(m.data) for m in session.client_messages][:5] == [4800] * 5
    replayer = replaying_proxy(tmp_path, vcr_hosts="+speech.example.com")
    try:
        assert node_audio(node_ws_client, replayer) == recorded
    finally:
        replayer.stop()


# -- google-genai's own Live client --

GEMINI_TOOLS = [{"function_declarations": [{
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}]}]


def genai_conversation() -> dict:
    """Two turns with google-genai's Live client (`client.aio.live.connect`, which connects with
    the `websockets` library: HTTPS_PROXY and SSL_CERT_FILE from the environment): text in and
    out, then a function call, its response and the answer. What the SDK gave back."""
    import asyncio

    from google import genai
    from google.genai import types

    async def talk() -> dict:
        client = genai.Client(api_key=GOOGLE_KEY)
        seen: dict = {"messages": [], "text": [], "calls": [], "usage": []}
        config = {"response_modalities": ["TEXT"], "tools": GEMINI_TOOLS}

        async def turn(session) -> str:
            text = ""
            async for message in session.receive():
                seen["messages"].append(message.model_dump(exclude_none=True))
                if message.usage_metadata is not None:
                    seen["usage"].append(message.usage_metadata.total_token_count)
                if message.text:
                    text += message.text
                if message.tool_call:
                    for call in message.tool_call.function_calls:
                        seen["calls"].append((call.name, call.args, call.id))
                        await session.send_tool_response(function_responses=[types.FunctionResponse(
                            id=call.id, name=call.name, response={"temperature_c": 22, "sky": "sunny"})])
            return text

        async with client.aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
            await session.send_client_content(turns={"role": "user", "parts": [{"text": "hello there"}]})
            seen["text"].append(await turn(session))
            await session.send_client_content(
                turns={"role": "user", "parts": [{"text": "What's the weather in Paris?"}]})
            seen["text"].append(await turn(session))
        return seen

    return asyncio.run(asyncio.wait_for(talk(), TIMEOUT))


def test_google_genai_live_client_recorded_and_replayed_offline(tmp_path, certificate, upstream, through):
    recorder = recording_proxy(tmp_path, certificate, upstream)
    through(recorder)
    try:
        recorded = genai_conversation()
    finally:
        recorder.stop()
    upstream.stop()  # offline from here on
    assert recorded["text"] == ["You said: hello there", "It is 22 degrees and sunny in Paris."]
    assert recorded["calls"] == [("get_weather", {"location": "Paris, France"}, "call_001")]
    # The SDK's own URL (its API version, `//` after its base URL's slash), the key in a header.
    (handshake,) = upstream.handshakes
    assert handshake["path"].endswith(".GenerativeService.BidiGenerateContent")
    assert handshake["headers"]["x-goog-api-key"] == GOOGLE_KEY
    (session,) = sidecar.read(tmp_path / "cassettes" / "default.realtime.jsonl")
    assert session.url.startswith("wss://generativelanguage.googleapis.com/")
    assert session.url.endswith(".GenerativeService.BidiGenerateContent")
    # The SDK sends snake_case field names, which the API takes as well as camelCase.
    sent = [next(iter(json.loads(m.data))) for m in session.client_messages]
    assert sent == ["setup", "client_content", "client_content", "tool_response"]
    shown = show(tmp_path / "cassettes" / "default.yaml")
    assert "    > user: hello there\n" in shown
    assert "    < assistant: You said: hello there\n" in shown
    assert '    < tool call: get_weather({"location": "Paris, France"})  [call_001]\n' in shown
    assert '    > tool [call_001]: {"temperature_c": 22, "sky": "sunny"}\n' in shown
    assert "    < assistant: It is 22 degrees and sunny in Paris.\n" in shown

    replayer = replaying_proxy(tmp_path)
    through(replayer)
    try:
        replayed = genai_conversation()
    finally:
        replayer.stop()
    assert replayed == recorded
    no_secret_on_disk(tmp_path, GOOGLE_KEY)
    assert GOOGLE_KEY not in recorder.output() and GOOGLE_KEY not in replayer.output()


# -- diff on folders: cassettes of realtime sessions alone (a sidecar, no NAME.yaml) --

def sidecar_lines(text: str, answer: str) -> str:
    """A hand-written session: the client says `text`, the server answers `answer`."""
    return "\n".join(json.dumps(line) for line in [
        {"type": "open", "session": 0, "format": 1, "url": "wss://api.openai.com/v1/realtime?model=m",
         "at": "", "handshake_ms": 1, "subprotocols": [], "protocol": None, "request_headers": {},
         "status": 101, "response_headers": {}},
        {"type": "message", "session": 0, "from": "client", "ms": 2, "text": json.dumps(
            {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": text}]}})},
        {"type": "message", "session": 0, "from": "server", "ms": 3, "text": json.dumps(
            {"type": "response.output_text.delta", "delta": answer})},
        {"type": "close", "session": 0, "ms": 4, "code": 1000, "reason": "", "by": "client"},
    ]) + "\n"


def test_diff_on_folders_includes_cassettes_of_sessions_alone(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old / "sub", new / "sub"):
        folder.mkdir(parents=True)
    (old / "sub" / "talk.realtime.jsonl").write_text(sidecar_lines("hi", "Hello"))
    (new / "sub" / "talk.realtime.jsonl").write_text(sidecar_lines("hello", "Hello"))
    (old / "same.realtime.jsonl").write_text(sidecar_lines("hi", "Hello"))
    (new / "same.realtime.jsonl").write_text(sidecar_lines("hi", "Hello"))
    (old / "gone.realtime.jsonl").write_text(sidecar_lines("hi", "Hello"))
    # A cassette with HTTP exchanges in one folder, its sessions alone in the other.
    source = next((ROOT.parent / "shared" / "corpus").rglob("*.yaml"))
    (old / "mixed.yaml").write_bytes(source.read_bytes())
    (old / "mixed.realtime.jsonl").write_text(sidecar_lines("hi", "Hello"))
    (new / "mixed.realtime.jsonl").write_text(sidecar_lines("hi", "Good day"))

    differs = cli("diff", str(old), str(new))
    assert differs.returncode == 1, differs.stderr
    lines = differs.stdout.splitlines()
    assert "gone.yaml cassette: missing" in lines, lines
    assert any(line.startswith("sub/talk.yaml session 0 client message #0 (conversation.item.create): ")
               for line in lines), lines
    assert any(line.startswith("mixed.yaml session 0 assistant #0: ") and "Good day" in line for line in lines), lines
    assert any(line.startswith("mixed.yaml ") and "missing" in line for line in lines
               if "session" not in line), lines
    assert not any(line.startswith("same.yaml") for line in lines), lines
    assert cli("diff", str(old), str(old)).returncode == 0
    # Folders of sessions alone, the same: 0, and the cassettes counted.
    same = cli("diff", str(tmp_path / "old" / "sub"), str(tmp_path / "old" / "sub"))
    assert same.returncode == 0 and same.stdout.strip().endswith("1 cassette compared"), same.stdout + same.stderr
