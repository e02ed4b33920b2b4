"""SDK telemetry is never a test failure: the OpenAI Agents SDK's own trace exporter, flushed in
the middle of a marked test, under the pytest plugin, recorded and then replayed offline."""

from __future__ import annotations

import pytest

from proxy_addon.cassette import load
from proxy_addon.telemetry import parse_endpoints, telemetry_endpoint

from .test_pytest_plugin import common, recording_args, upstream  # noqa: F401

pytest_plugins = ["pytester"]

AGENTS_TEST = '''
import logging
import os

import httpx
import openai
import pytest
from agents import trace
from agents.tracing import custom_span, set_trace_processors
from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor

pytestmark = pytest.mark.vcr_proxy


@pytest.fixture(scope="session")
def processor():
    # The SDK's own exporter and batch processor, posting to api.openai.com/v1/traces/ingest
    # through the proxy the plugin exported (HTTPS_PROXY, SSL_CERT_FILE), with random ids.
    exporter = BackendSpanExporter(api_key="sk-proj-test-not-on-disk")
    processor = BatchTraceProcessor(exporter, schedule_delay=3600)
    set_trace_processors([processor])
    yield processor
    processor.shutdown()


@pytest.mark.parametrize("turn", range(3))
def test_an_agent_step(processor, caplog, turn):
    client = openai.OpenAI(api_key="sk-proj-test-not-on-disk", max_retries=0)
    with trace(f"turn {turn}"):
        with custom_span("step"):
            answer = client.chat.completions.create(model="m", messages=[
                {"role": "user", "content": f"turn {turn}"}])
        processor.force_flush()  # a batch flushed in the middle of the test
    assert answer.id == "gen-test-2"
    assert not [r for r in caplog.records if "Tracing" in r.getMessage()], caplog.text
'''


def test_parse_endpoints():
    defaults = parse_endpoints("")
    assert telemetry_endpoint(defaults, "api.openai.com", "/v1/traces/ingest?x=1")
    assert telemetry_endpoint(defaults, "API.OpenAI.com.", "/v1/traces/ingest")
    assert telemetry_endpoint(defaults, "api.smith.langchain.com", "/runs/batch")
    assert telemetry_endpoint(defaults, "cloud.langfuse.com", "/api/public/ingestion")
    assert not telemetry_endpoint(defaults, "api.openai.com", "/v1/chat/completions")
    assert not telemetry_endpoint(defaults, "evil.example", "/v1/traces/ingest")
    added = parse_endpoints("+otel.example.com/v1/traces")
    assert telemetry_endpoint(added, "otel.example.com", "/v1/traces")
    assert telemetry_endpoint(added, "api.openai.com", "/v1/traces/ingest")
    only = parse_endpoints("otel.example.com/v1/*")
    assert not telemetry_endpoint(only, "api.openai.com", "/v1/traces/ingest")
    assert parse_endpoints("none") == ()
    with pytest.raises(ValueError, match="not host/path"):
        parse_endpoints("otel.example.com")


def test_agents_sdk_traces_are_never_recorded_and_replay_green(pytester: pytest.Pytester, tmp_path,
                                                              upstream):  # noqa: F811
    pytester.makepyfile(test_agents=AGENTS_TEST)
    first = pytester.runpytest_subprocess(*common(tmp_path), *recording_args(upstream))
    first.assert_outcomes(passed=3)
    # Recording: the traces reached their service (here, the stand-in), and no cassette has them.
    assert [r for r in upstream.requests if r["path"] == "/v1/traces/ingest"]
    cassettes = sorted((pytester.path / "tests" / "cassettes" / "test_agents").glob("*.yaml"))
    assert len(cassettes) == 3
    for path in cassettes:
        assert [i.request.url for i in load(path).interactions] == [
            "https://api.openai.com/v1/chat/completions"]
    upstream.stop()
    for _ in range(3):  # offline, again and again: never a miss, never a tracing error
        replayed = pytester.runpytest_subprocess(*common(tmp_path), "--vcr-mode=replay", "--vcr-strict")
        replayed.assert_outcomes(passed=3)
        assert "Tracing" not in replayed.stdout.str() + replayed.stderr.str()
