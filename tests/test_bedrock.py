"""Bedrock's ConverseStream through the proxy with boto3 and botocore's own event-stream parser:
AWS event-stream frames are timed one by one when recorded and paced one by one on replay."""

from __future__ import annotations

import json
import time

import pytest

from proxy_addon.timing import read_sidecar, sidecar_path

from .proxy import Proxy
from .test_record import recorded
from .upstream import Upstream, make_certificate

GAP = 0.15  # between frames, as the upstream sends them
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = Upstream(cert, key, event_delay=GAP).start()
    server.cert = cert
    yield server
    server.stop()


def _converse_stream(proxy: Proxy, call: str = "converse_stream",
                     prompt: str = "Say hello") -> tuple[str, list[float]]:
    """The streamed text as boto3 reads it, and when each event reached it (seconds after the
    call); `call="converse"` makes the call unstreamed (it raises if it misses)."""
    import boto3
    from botocore.config import Config

    client = boto3.client("bedrock-runtime", region_name="us-east-1", verify=str(proxy.ca),
                          aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                          aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                          config=Config(proxies={"https": proxy.url}, retries={"max_attempts": 1}))
    started = time.monotonic()
    answer = getattr(client, call)(modelId=MODEL, messages=[
        {"role": "user", "content": [{"text": prompt}]}])
    text, arrivals = "", []
    for event in answer["stream"]:
        arrivals.append(time.monotonic() - started)
        text += event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
    return text, arrivals


def _record_converse_stream(tmp_path, upstream) -> Proxy:
    """One converse_stream recorded through a proxy (stopped by now)."""
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                      vcr_mode="record").start()
    try:
        _converse_stream(recording)
        recorded(recording.cassettes / "default.yaml")
    finally:
        recording.stop()
    return recording


@LAUNCHERS
def test_converse_stream_frames_are_timed_and_replayed_with_their_pacing(tmp_path, upstream, launcher):
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                      vcr_mode="record", launcher=launcher).start()
    try:
        text, _ = _converse_stream(recording)
        cassette = recorded(recording.cassettes / "default.yaml")
    finally:
        recording.stop()
    assert text == "Hello there!"
    interaction = cassette.interactions[0]
    assert interaction.request.url == (f"https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                                       f"{MODEL.replace(':', '%3A')}/converse-stream")
    timing = read_sidecar(sidecar_path(recording.cassettes / "default.yaml"))[0]
    assert len(timing.events_ms) == 6  # one time per frame, no longer none
    recorded_gaps = [(b - a) / 1e3 for a, b in zip(timing.events_ms, timing.events_ms[1:])]
    assert all(gap >= GAP * 0.8 for gap in recorded_gaps), recorded_gaps

    replaying = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", launcher=launcher).start()
    try:
        replayed, arrivals = _converse_stream(replaying)
    finally:
        replaying.stop()
    assert replayed == "Hello there!"
    # Each frame no sooner than the recording's gap after the one before (never all at once).
    measured = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(measured) == len(recorded_gaps)
    for got, want in zip(measured, recorded_gaps):
        assert got >= want * 0.8 - 0.005, (measured, recorded_gaps)
    assert arrivals[-1] >= timing.events_ms[-1] / 1e3 * 0.8


def test_an_older_bedrock_recording_without_frame_times_keeps_its_end_time(tmp_path, upstream):
    """A sidecar line of an earlier release (events_ms empty): the stream still ends at its
    recorded end, not at once."""
    recording = _record_converse_stream(tmp_path, upstream)
    sidecar = sidecar_path(recording.cassettes / "default.yaml")
    line = json.loads(sidecar.read_text())
    line["events_ms"] = []
    sidecar.write_text(json.dumps(line) + "\n")
    replaying = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events").start()
    try:
        _, arrivals = _converse_stream(replaying)
    finally:
        replaying.stop()
    assert arrivals[0] >= line["end_ms"] / 1e3 * 0.8


def test_boto3_works_after_vcr_proxy_env_on_a_machine_that_exports_aws_ca_bundle(tmp_path, upstream):
    """AWS set-ups export AWS_CA_BUNDLE, which boto3 prefers to REQUESTS_CA_BUNDLE: `vcr-proxy
    env` must set it too, or boto3 fails with CERTIFICATE_VERIFY_FAILED."""
    import os
    import sys

    from .test_clients import in_env_shell

    _record_converse_stream(tmp_path, upstream)
    client = (f"{sys.executable} -c 'import boto3; c = boto3.client(\"bedrock-runtime\", region_name=\"us-east-1\", "
              "aws_access_key_id=\"AKIAIOSFODNN7EXAMPLE\", aws_secret_access_key=\"x\"); "
              f"s = c.converse_stream(modelId=\"{MODEL}\", messages=[{{\"role\": \"user\", \"content\": "
              "[{\"text\": \"Say hello\"}]}]); "
              "print(\"\".join(e.get(\"contentBlockDelta\", {}).get(\"delta\", {}).get(\"text\", \"\") "
              "for e in s[\"stream\"]))'")
    replaying = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        os.environ["AWS_CA_BUNDLE"] = str(upstream.cert)  # a bundle without the proxy's CA
        try:
            result = in_env_shell(replaying, client)
        finally:
            del os.environ["AWS_CA_BUNDLE"]
    finally:
        replaying.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "Hello there!"


@pytest.mark.parametrize("call", ["converse_stream", "converse"])
def test_a_bedrock_miss_raises_a_client_error_that_names_the_cassette_and_the_difference(
        tmp_path, upstream, call):
    from botocore.exceptions import ClientError

    _record_converse_stream(tmp_path, upstream)
    replaying = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        with pytest.raises(ClientError) as raised:
            _converse_stream(replaying, call, prompt="Say goodbye")
    finally:
        replaying.stop()
    error = raised.value.response["Error"]
    assert error["Code"] == "ResourceNotFoundException"
    assert "vcr-proxy: POST https://bedrock-runtime.us-east-1.amazonaws.com/model/" in error["Message"]
    assert str(replaying.cassettes / "default.yaml") in error["Message"]
    if call == "converse_stream":
        assert '$.messages[0].content[0].text: recorded "Say hello", sent "Say goodbye"' in error["Message"]
    else:
        assert "url:" in error["Message"]  # the nearest recording is the streamed call
