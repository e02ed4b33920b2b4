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
# Imported now, not at the first load() inside a pytester test: pytester drops the modules a
# test imported, and PyYAML's C extension cannot be imported twice into one process.
from proxy_addon.serializers import loader  # noqa: F401

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
        # Every header recorded (the default keeps three): the key is scrubbed, not left out.
        recorder = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                         vcr_mode="record", vcr_headers="all").start()
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


# Under the pytest plugin: test projects run by pytester in real pytest processes.
pytest_plugins = ["pytester"]

HF_TEST = '''
import os

import pytest
from huggingface_hub import InferenceClient

pytestmark = pytest.mark.vcr_proxy


def test_chat_through_a_provider():
    # provider= first asks https://huggingface.co/api/models/<id>?expand=inferenceProviderMapping
    # which model id that provider gives it, then calls the provider through the router.
    client = InferenceClient(provider="together", api_key=os.environ["VCR_TEST_KEY"])
    answer = client.chat_completion(messages=[{"role": "user", "content": "Hello"}],
                                    model="meta-llama/Llama-3.1-8B-Instruct")
    assert answer.choices[0].message.content == "Hello from Together."
    assert answer.model == "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"
'''


def plugin_args(tmp_path) -> list[str]:
    from .test_pytest_plugin import common

    return common(tmp_path)


def plugin_recording_args(upstream) -> list[str]:
    from .test_pytest_plugin import recording_args

    return recording_args(upstream)


def test_huggingface_hub_with_a_provider_records_and_replays_under_the_plugin(
        pytester: pytest.Pytester, tmp_path, upstream, monkeypatch):
    key = "hf_" + secrets.token_urlsafe(30)
    monkeypatch.setenv("VCR_TEST_KEY", key)
    monkeypatch.setenv("HF_TOKEN", key)  # the Hub call carries it too
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    pytester.makepyfile(test_hub=HF_TEST)
    first = pytester.runpytest_subprocess(*plugin_args(tmp_path), *plugin_recording_args(upstream))
    first.assert_outcomes(passed=1)
    cassette = pytester.path / "tests" / "cassettes" / "test_hub" / "test_chat_through_a_provider.yaml"
    assert urls(cassette) == [
        "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B-Instruct?expand=inferenceProviderMapping",
        "https://router.huggingface.co/together/v1/chat/completions"]
    # Its once-a-day agent-harness registry reached the Hub (the stand-in) and is in no cassette.
    assert [r for r in upstream.requests if r["path"] == "/api/agent-harnesses"]
    seen = len(upstream.requests)
    monkeypatch.setenv("VCR_TEST_KEY", "hf_" + secrets.token_urlsafe(30))
    monkeypatch.setenv("HF_TOKEN", "hf_" + secrets.token_urlsafe(30))
    # Replayed with the registry cached (no request for it), then in a fresh HF_HOME (a
    # request for it, answered by the proxy): neither is a miss nor an unused interaction.
    for home in ("hf-home", "fresh-hf-home"):
        monkeypatch.setenv("HF_HOME", str(tmp_path / home))
        replayed = pytester.runpytest_subprocess(*plugin_args(tmp_path), "--vcr-mode=replay",
                                                 "--vcr-strict")
        replayed.assert_outcomes(passed=1)
    assert len(upstream.requests) == seen
    assert_no_credential(pytester.path / "tests", key)
    assert_no_credential(pytester.path / ".pytest_cache", key)


AGENTS_SUITE = '''
import logging

import pytest
from agents import Agent, Runner, flush_traces, function_tool

pytestmark = pytest.mark.vcr_proxy


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("city", ["Florence", "Oslo"])
def test_the_agent_answers_with_its_tool(city, caplog):
    caplog.set_level(logging.DEBUG, logger="openai.agents")
    # Built in the test, not at import: default tracing on, the SDK's own exporter.
    agent = Agent(name="Weather", instructions="Use the tool.", tools=[get_weather], model="gpt-4.1")
    result = Runner.run_sync(agent, f"What is the weather in {city}")
    if city == "Florence":
        flush_traces()  # a trace batch flushed in the middle of the test
    # Oslo's trace is left to the SDK: its background thread, or its exit handler once the
    # session (and the proxy) is over.
    assert result.final_output == f"The tool says: sunny in {city}"
    assert [item.type for item in result.new_items] == [
        "tool_call_item", "tool_call_output_item", "message_output_item"]
    assert not [r for r in caplog.records if "Tracing" in r.getMessage() and r.levelno >= logging.WARNING]
'''


REPLAYS = 10


def test_an_agents_sdk_suite_with_tracing_replays_green_ten_times_in_a_row(
        pytester: pytest.Pytester, tmp_path, upstream, monkeypatch):
    key = "sk-proj-" + secrets.token_urlsafe(40)
    monkeypatch.setenv("OPENAI_API_KEY", key)  # the model's requests and the trace exporter's
    pytester.makepyfile(test_agents=AGENTS_SUITE)
    traces_before = len([r for r in upstream.requests if r["path"] == "/v1/traces/ingest"])
    first = pytester.runpytest_subprocess(*plugin_args(tmp_path), *plugin_recording_args(upstream))
    first.assert_outcomes(passed=2)
    output = first.stdout.str() + first.stderr.str()
    assert "Tracing" not in output, output
    # The traces reached their service while recording, and no cassette holds them.
    assert len([r for r in upstream.requests if r["path"] == "/v1/traces/ingest"]) > traces_before
    folder = pytester.path / "tests" / "cassettes" / "test_agents"
    for city in ("Florence", "Oslo"):
        assert urls(folder / f"test_the_agent_answers_with_its_tool_{city}.yaml") == [
            "https://api.openai.com/v1/responses"] * 2
    seen = len(upstream.requests)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-replay-" + secrets.token_urlsafe(20))
    for _ in range(REPLAYS):
        replayed = pytester.runpytest_subprocess(*plugin_args(tmp_path), "--vcr-mode=replay",
                                                 "--vcr-strict")
        replayed.assert_outcomes(passed=2)
        output = replayed.stdout.str() + replayed.stderr.str()
        assert "Tracing" not in output, output
    assert len(upstream.requests) == seen
    assert_no_credential(pytester.path / "tests", key)
    assert_no_credential(pytester.path / ".pytest_cache", key)


# Node 20, whose own fetch ignores HTTPS_PROXY: the README's one line gives its global fetch a
# dispatcher that reads it, for every SDK at once (the CA comes from NODE_EXTRA_CA_CERTS).
NODE_SETUP = '''import { setGlobalDispatcher, EnvHttpProxyAgent } from "undici";
setGlobalDispatcher(new EnvHttpProxyAgent());'''

NODE_SDKS = NODE_SETUP + '''
import { GoogleGenAI } from "@google/genai";
import Groq from "groq-sdk";
import { Mistral } from "@mistralai/mistralai";

const key = process.env.VCR_TEST_KEY;
const which = process.argv[2];
const out = {};
if (which === "genai") {
  const ai = new GoogleGenAI({ apiKey: key });
  const request = { model: "gemini-2.0-flash", contents: "Say hi in Italian" };
  const answer = await ai.models.generateContent(request);
  out.generate = { text: answer.text, usage: answer.usageMetadata, id: answer.responseId };
  out.stream = [];
  for await (const chunk of await ai.models.generateContentStream(request)) out.stream.push(chunk.text);
} else if (which === "groq") {
  const groq = new Groq({ apiKey: key, maxRetries: 0 });
  const request = { model: "llama-3.1-8b-instant", messages: [{ role: "user", content: "Answer fast" }] };
  out.create = await groq.chat.completions.create(request);
  out.stream = [];
  for await (const chunk of await groq.chat.completions.create({ ...request, stream: true })) out.stream.push(chunk);
} else if (which === "mistral") {
  const mistral = new Mistral({ apiKey: key });
  const request = { model: "mistral-small-latest", messages: [{ role: "user", content: "Say hello in French" }] };
  out.complete = await mistral.chat.complete(request);
  out.stream = [];
  for await (const event of await mistral.chat.stream(request)) out.stream.push(event.data);
}
process.stdout.write(JSON.stringify(out));
'''


# The README's other way: undici's ProxyAgent as each client's fetch dispatcher (no global one).
NODE_PER_CLIENT_SETUP = '''import { ProxyAgent } from "undici";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
const dispatcher = new ProxyAgent(process.env.HTTPS_PROXY);
const openai = new OpenAI({ fetchOptions: { dispatcher } });
const anthropic = new Anthropic({ fetchOptions: { dispatcher } });'''

NODE_PER_CLIENT = NODE_PER_CLIENT_SETUP + '''
const out = {};
const chat = { model: "moonshotai/kimi-k2-0905", messages: [{ role: "user", content: "hi" }] };
out.chat = await openai.chat.completions.create(chat);
out.chatStream = [];
for await (const chunk of await openai.chat.completions.create({ ...chat, stream: true })) out.chatStream.push(chunk);
const message = { model: "claude-sonnet-4-20250514", max_tokens: 64, messages: [{ role: "user", content: "Say hi in Italian" }] };
out.message = await anthropic.messages.create(message);
out.messageStream = [];
for await (const event of anthropic.messages.stream(message)) out.messageStream.push(event);
process.stdout.write(JSON.stringify(out));
'''


@pytest.fixture(scope="module")
def node_sdks(tmp_path_factory):
    """@google/genai, groq-sdk and @mistralai/mistralai with undici, from the npm registry."""
    import subprocess

    folder = tmp_path_factory.mktemp("node_sdks")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
                    "undici@6", "@google/genai@2", "groq-sdk@1", "@mistralai/mistralai@2",
                    "openai@6", "@anthropic-ai/sdk@1"],
                   check=True, timeout=300, capture_output=True)
    (folder / "per_client.mjs").write_text(NODE_PER_CLIENT)
    script = folder / "sdks.mjs"
    script.write_text(NODE_SDKS)
    return script


def test_the_readme_shows_the_node_lines_these_tests_use():
    readme = (ROOT / "README.md").read_text()
    assert NODE_SETUP in readme
    assert NODE_PER_CLIENT_SETUP in readme


def test_node_openai_and_anthropic_with_a_dispatcher_per_client(tmp_path, upstream, node_sdks):
    script = node_sdks.parent / "per_client.mjs"
    command = f'OPENAI_API_KEY="$VCR_TEST_KEY" ANTHROPIC_API_KEY="$VCR_TEST_KEY" node {script}'
    output, cassette = record_then_replay(tmp_path, upstream, command, "sk-" + secrets.token_urlsafe(30))
    calls = json.loads(output)
    assert calls["chat"]["id"] == "gen-test-2"
    assert calls["chatStream"][-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert calls["message"]["content"][0]["text"] == "Ciao! 👋"
    assert calls["messageStream"][-1]["type"] == "message_stop"
    assert urls(cassette) == ["https://api.openai.com/v1/chat/completions"] * 2 + [
        "https://api.anthropic.com/v1/messages"] * 2


@pytest.mark.parametrize("sdk,url", [
    ("genai", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:"),
    ("groq", "https://api.groq.com/openai/v1/chat/completions"),
    ("mistral", "https://api.mistral.ai/v1/chat/completions"),
], ids=["genai", "groq", "mistral"])
def test_node_sdks_record_then_replay_offline(tmp_path, upstream, node_sdks, sdk, url):
    output, cassette = record_then_replay(tmp_path, upstream, f"node {node_sdks} {sdk}",
                                          "node-" + secrets.token_urlsafe(30))
    calls = json.loads(output)
    recorded = urls(cassette)
    assert len(recorded) == 2 and all(u.startswith(url) for u in recorded), recorded
    if sdk == "genai":
        assert calls["generate"]["text"] == "Ciao dal mondo."
        assert "".join(calls["stream"]) == "Ciao dal mondo."
        assert recorded[1].endswith(":streamGenerateContent?alt=sse")
    elif sdk == "groq":
        assert calls["create"]["choices"][0]["message"]["content"] == "Fast answer."
        assert calls["stream"][-1]["x_groq"]["usage"]["total_tokens"] == 46
    else:
        assert calls["complete"]["choices"][0]["message"]["content"] == "Bonjour le monde !"
        assert "".join(e["choices"][0]["delta"]["content"] for e in calls["stream"]) == "Bonjour le monde !"
