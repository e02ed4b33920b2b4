"""Attacks on issue 20 (every provider's wire first class): real SDKs through the real proxy,
against local stand-ins on 127.0.0.1 that speak each provider's wire; the cassettes keep the
public URLs (`vcr_upstream`)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest

from proxy_addon.cassette import load
# Imported now, not inside a pytester test: PyYAML's C extension cannot be imported twice.
from proxy_addon.serializers import loader  # noqa: F401
from proxy_addon.timing import read_sidecar, sidecar_path

from .proxy import Proxy
from .test_cli import _cli
from .test_record import recorded
from .upstream import BEDROCK_STREAM, Upstream, aws_frame, make_certificate

GAP = 0.12
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

CONVERSE_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [{"text": "Hello there!"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12},
    "metrics": {"latencyMs": 250},
}


def _claude_chunk(event: dict) -> bytes:
    return aws_frame("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()})


INVOKE_STREAM = [
    _claude_chunk({"type": "message_start", "message": {
        "id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    _claude_chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    _claude_chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    _claude_chunk({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": " there!"}}),
    _claude_chunk({"type": "content_block_stop", "index": 0}),
    _claude_chunk({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": 3}}),
    _claude_chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 9, "outputTokenCount": 3, "invocationLatency": 500, "firstByteLatency": 100}}),
]


class BedrockUpstream(Upstream):
    """Bedrock Runtime's four calls: Converse (JSON), ConverseStream, InvokeModel (JSON) and
    InvokeModelWithResponseStream (AWS event-stream frames, paced)."""

    async def app(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.endswith(("/converse", "/invoke", "/invoke-with-response-stream")):
            body = await self.received(scope, receive)
            if b"Be invalid" in body:  # Bedrock's error: its type in a header, the message in the body
                await self._json(send, 400, {"message": "Malformed input request: #: extraneous key"},
                                 extra=[(b"x-amzn-errortype", b"ValidationException:http://internal.amazon.com/"
                                         b"coral/com.amazon.bedrock/"),
                                        (b"x-amzn-requestid", b"8a7c2f0e-0000-4000-8000-000000000001")])
            elif path.endswith("/converse"):
                await self._json(send, 200, CONVERSE_ANSWER)
            elif path.endswith("/invoke"):
                await self._json(send, 200, {
                    "id": "msg_bdrk_2", "type": "message", "role": "assistant",
                    "model": "claude-3-haiku-20240307", "content": [{"type": "text", "text": "Hello there!"}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 9, "output_tokens": 3}})
            else:
                await self._stream(send, INVOKE_STREAM, content_type=b"application/vnd.amazon.eventstream")
            return
        await super().app(scope, receive, send)


@pytest.fixture(scope="module")
def bedrock(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = BedrockUpstream(cert, key, event_delay=GAP).start()
    server.cert = cert
    yield server
    server.stop()


def _bedrock_client(proxy: Proxy):
    import boto3
    from botocore.config import Config

    return boto3.client("bedrock-runtime", region_name="us-east-1", verify=str(proxy.ca),
                        aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET,
                        config=Config(proxies={"https": proxy.url}, retries={"max_attempts": 1}))


def _claude_body(prompt: str) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": prompt}]})


def call_bedrock(proxy: Proxy, call: str, prompt: str = "Say hello") -> tuple[str, list[float]]:
    """The text boto3 gives back, and when each streamed event reached it."""
    client = _bedrock_client(proxy)
    messages = [{"role": "user", "content": [{"text": prompt}]}]
    started = time.monotonic()
    arrivals: list[float] = []
    if call == "converse":
        answer = client.converse(modelId=CLAUDE, messages=messages)
        return answer["output"]["message"]["content"][0]["text"], arrivals
    if call == "converse_stream":
        text = ""
        for event in client.converse_stream(modelId=CLAUDE, messages=messages)["stream"]:
            arrivals.append(time.monotonic() - started)
            text += event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
        return text, arrivals
    if call == "invoke_model":
        answer = client.invoke_model(modelId=CLAUDE, body=_claude_body(prompt))
        return json.loads(answer["body"].read())["content"][0]["text"], arrivals
    text = ""
    answer = client.invoke_model_with_response_stream(modelId=CLAUDE, body=_claude_body(prompt))
    for event in answer["body"]:
        arrivals.append(time.monotonic() - started)
        chunk = json.loads(event["chunk"]["bytes"])
        text += chunk.get("delta", {}).get("text", "") if chunk["type"] == "content_block_delta" else ""
    return text, arrivals


def record_bedrock(tmp_path, bedrock, calls) -> Path:
    recording = Proxy(tmp_path, upstream_ca=bedrock.cert, vcr_upstream=bedrock.url, vcr_mode="record").start()
    try:
        for call in calls:
            assert call_bedrock(recording, call)[0] == "Hello there!"
        recorded(recording.cassettes / "default.yaml", len(calls))
    finally:
        recording.stop()
    return recording.cassettes / "default.yaml"


# Under the pytest plugin: test projects run by pytester in real pytest processes.
pytest_plugins = ["pytester"]


class TelemetryUpstream(Upstream):
    """OpenAI chat (the base stand-in) plus LangSmith's endpoints, answered as LangSmith does."""

    async def app(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/info" or path.startswith("/runs")):
            body = await self.received(scope, receive)
            if path == "/info":
                await self._json(send, 200, {"version": "0.10.0", "batch_ingest_config": {
                    "use_multipart_endpoint": True, "size_limit": 100, "size_limit_bytes": 20971520,
                    "scale_up_qsize_trigger": 1000, "scale_up_nthreads_limit": 16,
                    "scale_down_nempty_trigger": 4}})
            else:
                await self._json(send, 202, {"message": "Runs batched successfully"})
            return
        await super().app(scope, receive, send)


@pytest.fixture
def telemetry_upstream(tmp_path):
    cert, key = make_certificate(tmp_path)
    server = TelemetryUpstream(cert, key, event_delay=0.0).start()
    server.cert = cert
    yield server
    server.stop()


def plugin_common(tmp_path) -> list[str]:
    return [f"--vcr-confdir={tmp_path / 'conf'}", "-p", "no:cacheprovider"]


def plugin_recording(upstream) -> list[str]:
    return [f"--vcr-upstream={upstream.url}", f"--vcr-set=ssl_verify_upstream_trusted_ca={upstream.cert}",
            "--vcr-mode=record"]


LANGSMITH_TEST = '''
import os

import openai
import pytest
from langsmith import traceable
from langsmith.run_helpers import get_current_run_tree
from langsmith.wrappers import wrap_openai

pytestmark = pytest.mark.vcr_proxy


@pytest.mark.parametrize("turn", range(2))
def test_a_traced_chain(turn):
    client = wrap_openai(openai.OpenAI(api_key="sk-proj-test-not-on-disk", max_retries=0))

    @traceable(name="chain")
    def chain(text):
        return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])

    answer = chain(f"turn {turn}")
    assert answer.id == "gen-test-2"
    from langsmith.run_trees import get_cached_client
    get_cached_client().flush()  # the batch ingested in the middle of the test
'''


@pytest.mark.parametrize("endpoint", ["https://api.smith.langchain.com", "https://API.Smith.LangChain.com/",
                                      "https://eu.api.smith.langchain.com"])
def test_langsmith_run_ingestion_is_never_recorded_and_replays_green(
        pytester: pytest.Pytester, tmp_path, telemetry_upstream, monkeypatch, endpoint):
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_" + secrets.token_hex(16) + "_" + secrets.token_hex(5))
    monkeypatch.setenv("LANGSMITH_ENDPOINT", endpoint)
    pytester.makepyfile(test_traced=LANGSMITH_TEST)
    first = pytester.runpytest_subprocess(*plugin_common(tmp_path), *plugin_recording(telemetry_upstream))
    first.assert_outcomes(passed=2)
    assert [r for r in telemetry_upstream.requests if r["path"].startswith("/runs")], telemetry_upstream.requests
    for path in (pytester.path / "tests" / "cassettes" / "test_traced").glob("*.yaml"):
        assert [i.request.url for i in load(path).interactions] == [
            "https://api.openai.com/v1/chat/completions"], path
    telemetry_upstream.stop()
    replayed = pytester.runpytest_subprocess(*plugin_common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
    replayed.assert_outcomes(passed=2)
    output = replayed.stdout.str() + replayed.stderr.str()
    assert "Failed" not in output and "LangSmith" not in output, output


NORMALIZE_TEST = r'''
import json
import os

import openai
import pytest

STAMP = json.loads(os.environ["VCR_ATTACK_STAMP"])
pytestmark = pytest.mark.vcr_proxy(normalize=[r"\d{4}-\d\d-\d\d"])

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _chat(arguments=("uuid",), **extra):
    client = openai.OpenAI(api_key="sk-proj-test-not-on-disk", max_retries=0)
    return client.chat.completions.create(model="m", messages=[
        {"role": "system", "content": f"Today is {STAMP['date']}. Be brief."},
        {"role": "user", "content": "Look it up"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({k: STAMP[k] for k in arguments})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"}], **extra)


@pytest.mark.vcr_proxy(normalize=UUID, ignore_fields=["user", "metadata.run"])
def test_module_and_test_normalizers_add_up():
    answer = _chat(user=STAMP["uuid"], metadata={"run": STAMP["uuid"], "suite": "a"}, seed=STAMP["seed"] and 7)
    assert answer.id == "gen-test-2"


@pytest.mark.vcr_proxy(normalize=[UUID, r"seed\W+\d+"])
def test_a_normalizer_over_escaped_json():
    assert _chat(arguments=("uuid", "seed")).id == "gen-test-2"


@pytest.mark.vcr_proxy(match="method,url")
def test_match_method_and_url_only():
    assert _chat(temperature=STAMP["seed"] / 100).id == "gen-test-2"
'''


def test_marker_match_rules_with_volatile_values(pytester: pytest.Pytester, tmp_path, telemetry_upstream,
                                                 monkeypatch):
    pytester.makepyfile(test_volatile=NORMALIZE_TEST)
    monkeypatch.setenv("VCR_ATTACK_STAMP", json.dumps(
        {"date": "2025-06-01", "uuid": "550e8400-e29b-41d4-a716-446655440000", "seed": 11}))
    first = pytester.runpytest_subprocess(*plugin_common(tmp_path), *plugin_recording(telemetry_upstream))
    first.assert_outcomes(passed=3)
    telemetry_upstream.stop()
    monkeypatch.setenv("VCR_ATTACK_STAMP", json.dumps(
        {"date": "2026-12-31", "uuid": "6fa459ea-ee8a-4ca4-894e-db77e160355e", "seed": 42}))
    replayed = pytester.runpytest_subprocess(*plugin_common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
    replayed.assert_outcomes(passed=3)


NESTED_KEY = "q7Rk2mXw9PzLb4Tn8VcY"


@pytest.mark.parametrize("query", [
    # A URL handed to an API as a parameter (a page to fetch, a callback), percent-encoded, whose
    # own query names a credential: `api_key`, or `api%5Fkey` encoded once more.
    "url=https%3A%2F%2Fx.example%2Fv1%3Falt%3Dsse%26api_key%3D" + NESTED_KEY,
    "url=https%3A%2F%2Fx.example%2Fv1%3Fapi%255Fkey%3D" + NESTED_KEY,
    "callback=%2Fhook%3Ftoken%3D" + NESTED_KEY + "%26state%3D1",
], ids=["api_key", "api%5Fkey", "token"])
def test_a_credential_in_a_percent_encoded_query_inside_a_parameter_is_never_on_disk(tmp_path, query):
    """The upstream echoes the query it was called with into its body; neither the cassette
    nor the log holds the key, and `check` passes on what was recorded."""
    cert, key = make_certificate(tmp_path)
    server = Upstream(cert, key).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=server.url, vcr_mode="record").start()
    try:
        with proxy.client() as client:
            answer = client.get(f"https://api.openai.com/echo?{query}")
        assert NESTED_KEY in answer.text  # the upstream got it and echoed it
        recorded(proxy.cassettes / "default.yaml")
    finally:
        proxy.stop()
        server.stop()
    holding = [str(p) for p in tmp_path.rglob("*") if p.is_file() and NESTED_KEY[:8].encode() in p.read_bytes()]
    assert not holding
    checked = _cli("check", str(proxy.cassettes))
    assert checked.returncode == 0, checked.stderr


def test_check_and_redact_find_a_credential_in_a_percent_encoded_nested_query(tmp_path):
    """An older cassette (recorded before the rule): `check` flags the nested `api_key`, and
    `redact` removes it from the URL and from the body that echoes it."""
    from .inspect_helpers import exchange, write_cassette

    url = ("https://api.openai.com/echo?url=https%3A%2F%2Fx.example%2Fv1%3Falt%3Dsse%26api%5Fkey%3D"
           + NESTED_KEY)
    body = json.dumps({"next": f"/cb?redirect=%2Fv1%3Falt%3Dsse%26api%5Fkey%3D{NESTED_KEY}"})
    path = write_cassette(tmp_path / "old.yaml", [exchange(0, url, {"model": "m"}, body)])
    checked = _cli("check", str(path))
    assert checked.returncode == 1 and "parameter api_key" in checked.stderr, checked.stderr
    assert NESTED_KEY not in checked.stdout + checked.stderr
    redacted = _cli("redact", str(path))
    assert redacted.returncode == 0, redacted.stderr
    assert NESTED_KEY[:8] not in path.read_text()
    assert _cli("check", str(path)).returncode == 0


@pytest.mark.parametrize("call", ["converse", "invoke_model", "invoke_model_with_response_stream"])
def test_a_recorded_bedrock_error_replays_as_the_same_boto3_exception(tmp_path, bedrock, call):
    """Bedrock names an error's type only in the `X-Amzn-Errortype` response header (the body
    holds the message): botocore raises `ValidationException` from it. Recorded with the default
    headers (`minimal`), replay must raise the same exception, not a bare `ClientError` "400"
    that `except client.exceptions.ValidationException` does not catch."""
    from botocore.exceptions import ClientError

    def error(proxy: Proxy) -> tuple[str, str, str]:
        with pytest.raises(ClientError) as raised:
            call_bedrock(proxy, call, prompt="Be invalid")
        return (type(raised.value).__name__, raised.value.response["Error"]["Code"],
                raised.value.response["Error"]["Message"])

    recording = Proxy(tmp_path, upstream_ca=bedrock.cert, vcr_upstream=bedrock.url, vcr_mode="record").start()
    try:
        recorded_error = error(recording)
        recorded(recording.cassettes / "default.yaml")
    finally:
        recording.stop()
    assert recorded_error[:2] == ("ValidationException", "ValidationException")
    replaying = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        assert error(replaying) == recorded_error
    finally:
        replaying.stop()


TRACES_SCRIPT = r'''
import logging, sys
from agents import trace
from agents.tracing import custom_span, set_trace_processors
from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor

logging.basicConfig(level=logging.WARNING)
# The SDK takes this endpoint for OpenAI's own (it compares them without the trailing slash).
exporter = BackendSpanExporter(api_key="sk-proj-test-not-on-disk", endpoint=sys.argv[1])
processor = BatchTraceProcessor(exporter, schedule_delay=3600)
set_trace_processors([processor])
with trace("attack"):
    with custom_span("step"):
        pass
processor.force_flush()
processor.shutdown()
print("flushed")
'''


@pytest.mark.parametrize("endpoint", ["https://api.openai.com/v1/traces/ingest/",
                                      "https://api.openai.com//v1/traces/ingest"],
                         ids=["trailing-slash", "double-slash"])
def test_agents_sdk_traces_to_a_spelling_of_the_ingest_url_are_telemetry(tmp_path, endpoint):
    """A trailing slash or a doubled one (a base URL joined to a path) reaches the same trace
    ingest: never recorded, answered in replay; no tracing error either way."""
    import sys

    from .test_clients import in_env_shell

    script = tmp_path / "traces.py"
    script.write_text(TRACES_SCRIPT)
    cert, key = make_certificate(tmp_path)
    server = Upstream(cert, key).start()
    recording = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=server.url, vcr_mode="record").start()
    try:
        in_env_shell(recording, f"{sys.executable} {script} {endpoint}")
    finally:
        recording.stop()
        server.stop()
    cassette = recording.cassettes / "default.yaml"
    assert not cassette.exists() or not load(cassette).interactions
    replaying = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        result = in_env_shell(replaying, f"{sys.executable} {script} {endpoint}")
    finally:
        replaying.stop()
    assert result.returncode == 0 and result.stdout.strip() == "flushed", result.stderr[-2000:]
    assert "Tracing" not in result.stderr and "404" not in result.stderr, result.stderr[-2000:]
