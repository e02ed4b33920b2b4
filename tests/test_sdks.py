"""Provider SDKs, Python and Node, as users run them: recorded through the proxy against local
stand-ins speaking each provider's wire format (the cassettes keep the public URLs), then
replayed offline with the same output, nothing reaching the stand-in, no credential on disk."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest

from proxy_addon.cassette import load

from .conftest import ROOT
from .provider_upstream import ProviderUpstream
from .proxy import Proxy
from .test_cli import _cli
from .test_clients import in_env_shell
from .upstream import make_certificate

DRIVER = ROOT / "tests" / "sdk_providers.py"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = ProviderUpstream(cert, key, event_delay=0.01).start()
    server.cert = cert
    yield server
    server.stop()


def assert_no_credential(folder: Path, key: str) -> None:
    """Neither the key nor any 8-character piece of it in any file under `folder` (cassettes,
    timing sidecars, the proxy's log)."""
    pieces = {key[i:i + 8] for i in range(len(key) - 7)}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode("utf-8", "replace")
            found = [piece for piece in pieces if piece in text]
            assert not found, f"{path} holds {found[:3]} of the credential"


def record_then_replay(tmp_path, upstream, command: str, key: str) -> tuple[str, Path]:
    """`command` in a shell set up by `vcr-proxy env`, recorded, then replayed offline: the
    same stdout, and the stand-in sees no request during the replay."""
    import os

    os.environ["VCR_TEST_KEY"] = key
    try:
        recorder = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                         vcr_mode="record").start()
        try:
            recorded = in_env_shell(recorder, command)
        finally:
            recorder.stop()
        assert recorded.returncode == 0, (recorded.stderr[-3000:], recorder.output()[-3000:])
        seen = len(upstream.requests)
        os.environ["VCR_TEST_KEY"] = "replay-needs-no-real-key-" + secrets.token_hex(8)
        player = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events").start()
        try:
            replayed = in_env_shell(player, command)
        finally:
            player.stop()
    finally:
        del os.environ["VCR_TEST_KEY"]
    assert replayed.returncode == 0, (replayed.stderr[-3000:], player.output()[-3000:])
    assert replayed.stdout == recorded.stdout
    assert len(upstream.requests) == seen, upstream.requests[seen:]
    assert_no_credential(tmp_path, key)
    return recorded.stdout, recorder.cassettes / "default.yaml"


def python_sdk(name: str) -> str:
    return f"{sys.executable} {DRIVER} {name}"


def urls(cassette: Path) -> list[str]:
    return [i.request.url for i in sorted(load(cassette).interactions, key=lambda i: i.id)]


def test_cohere_v2_chat_and_chat_stream(tmp_path, upstream):
    output, cassette = record_then_replay(tmp_path, upstream, python_sdk("cohere"),
                                          "co-" + secrets.token_urlsafe(30))
    calls = json.loads(output)
    assert calls["chat"]["message"]["content"][0]["text"] == "Hola, mundo!"
    assert [e["type"] for e in calls["chat_stream"]] == [
        "message-start", "content-start", "content-delta", "content-delta", "content-end", "message-end"]
    tools = calls["chat_stream_tools"]
    assert [e["type"] for e in tools] == ["message-start", "tool-plan-delta", "tool-call-start",
                                          "tool-call-delta", "tool-call-delta", "tool-call-end",
                                          "message-end"]
    assert urls(cassette) == ["https://api.cohere.com/v2/chat"] * 3
    shown = _cli("show", str(cassette))
    assert shown.returncode == 0, shown.stderr
    assert "model: command-a-03-2025" in shown.stdout
    assert "< assistant: Hola, mundo!" in shown.stdout
    assert '< tool call: get_weather({"city": "Florence"})' in shown.stdout
    assert "tokens: 75 in, 5 out" in shown.stdout
    assert "tokens: 900 in, 40 out" in shown.stdout
    data = json.loads(_cli("show", "--json", str(cassette)).stdout)["interactions"]
    assert [i["text"] for i in data] == ["Hola, mundo!", "Hola, mundo!", ""]
    assert data[2]["tool_calls"][0]["arguments"] == {"city": "Florence"}
    listed = _cli("ls", str(cassette.parent))
    assert listed.returncode == 0, listed.stderr
    assert "command-a-03-2025" in listed.stdout


def test_groq_with_usage_under_x_groq(tmp_path, upstream):
    output, cassette = record_then_replay(tmp_path, upstream, python_sdk("groq"),
                                          "gsk_" + secrets.token_urlsafe(40))
    calls = json.loads(output)
    assert calls["create"]["choices"][0]["message"]["content"] == "Fast answer."
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in calls["stream"]) == "Fast answer."
    assert calls["stream"][-1]["x_groq"]["usage"]["completion_tokens"] == 4
    assert urls(cassette) == ["https://api.groq.com/openai/v1/chat/completions"] * 2
    data = json.loads(_cli("show", "--json", str(cassette)).stdout)["interactions"]
    for item in data:
        assert item["model"] == "llama-3.1-8b-instant"
        assert item["text"] == "Fast answer."
        assert (item["usage"]["input_tokens"], item["usage"]["output_tokens"]) == (42, 4)
    listed = _cli("ls", str(cassette.parent))
    assert listed.returncode == 0, listed.stderr
    assert "llama-3.1-8b-instant" in listed.stdout


def test_mistralai_complete_and_stream(tmp_path, upstream):
    output, cassette = record_then_replay(tmp_path, upstream, python_sdk("mistralai"),
                                          secrets.token_urlsafe(24))
    calls = json.loads(output)
    assert calls["complete"]["choices"][0]["message"]["content"] == "Bonjour le monde !"
    assert "".join(e["data"]["choices"][0]["delta"]["content"] for e in calls["stream"]) == "Bonjour le monde !"
    assert urls(cassette) == ["https://api.mistral.ai/v1/chat/completions"] * 2


def test_langchain_anthropic_invoke_and_stream(tmp_path, upstream):
    output, cassette = record_then_replay(tmp_path, upstream, python_sdk("langchain-anthropic"),
                                          "sk-ant-api03-" + secrets.token_urlsafe(40))
    calls = json.loads(output)
    assert calls["invoke"]["content"] == "Ciao! 👋"
    assert "".join(c if isinstance(c, str) else "".join(p.get("text", "") for p in c)
                   for c in calls["stream"]) == "Ciao! 👋"
    assert urls(cassette) == ["https://api.anthropic.com/v1/messages"] * 2
