"""The credential promise one layer deeper: keys inside compressed request bodies, in what
mitmproxy itself prints and saves, and in miss messages under header matching."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest

from ..proxy import Proxy, control_headers
from ..test_cli import _cli
from ..test_record import recorded
from .test_secrets import upstream  # noqa: F401  (the module's HTTPS upstream)

try:
    from compression import zstd
except ImportError:  # Python < 3.14: the backport mitmproxy itself depends on
    from backports import zstd

KEY = "sk-or-v1-" + "5ec7e7" * 11
PROJECT_KEY = "sk-proj-" + "Z1p5ecr3t" * 5
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2Y3ItcHJveHkifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
FIELD_SECRET = "S3CR3T-inside-a-compressed-body-0123456789"
SECRETS = (KEY, PROJECT_KEY, JWT, FIELD_SECRET, "S3CR3T", "Z1p5ecr3t", "SECRET-COOKIE-VALUE")


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# Real encoders, as SDK telemetry and hand-built clients use them.
ENCODERS = {
    "gzip": ("gzip", gzip.compress),
    "gzip-multi-member": ("gzip", lambda data: gzip.compress(data[:40]) + gzip.compress(data[40:])),
    "deflate": ("deflate", zlib.compress),
    "deflate-raw": ("deflate", _raw_deflate),
    "br": ("br", brotli.compress),
    "zstd": ("zstd", zstd.compress),
}


def _payload(case: str, content: str = "hi") -> bytes:
    return json.dumps({"model": "m", "api_key": FIELD_SECRET, "case": case,
                       "metadata": {"note": f"key {PROJECT_KEY}"},
                       "messages": [{"role": "user", "content": content}]}).encode()


def _no_secret_on_disk(folder, skip_logs: bool = False) -> None:
    for path in folder.rglob("*"):
        if not path.is_file() or "mitmproxy" in path.parts or (skip_logs and path.suffix == ".log"):
            continue
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, (secret, path)


def _post(client, case: str, coding_name: str, content: str = "hi"):
    coding, encode = ENCODERS[coding_name]
    return client.post(f"https://openrouter.ai/api/v1/chat/completions?case={case}",
                       content=encode(_payload(case, content)),
                       headers={"Content-Type": "application/json", "Content-Encoding": coding,
                                "Authorization": f"Bearer {KEY}"})


@pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])
def test_compressed_request_bodies_are_decoded_scrubbed_and_replay(tmp_path, upstream, launcher):
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                      vcr_mode="record", launcher=launcher).start()
    try:
        with recording.client() as client:
            for name in ENCODERS:
                assert _post(client, name, name).status_code == 200, name
        cassette = recorded(recording.cassettes / "default.yaml", len(ENCODERS))
    finally:
        recording.stop()
    # The upstream received every body as the client encoded it.
    received = [r for r in upstream.requests if r["path"].endswith("/chat/completions")][-len(ENCODERS):]
    assert {r["headers"]["content-encoding"] for r in received} == {"gzip", "deflate", "br", "zstd"}
    by_case = {json.loads(i.request.body)["case"]: i for i in cassette.interactions}
    assert set(by_case) == set(ENCODERS)
    for name, interaction in by_case.items():
        request = interaction.request
        body = json.loads(request.body)  # stored decoded, as text: no compressed bytes
        assert body["api_key"] == "REDACTED" and "REDACTED" in body["metadata"]["note"], name
        assert request.headers["Content-Encoding"] == [ENCODERS[name][0]], name
        assert request.content_length == len(request.body.encode())
    _no_secret_on_disk(tmp_path)

    replaying = Proxy(tmp_path, vcr_mode="replay", launcher=launcher).start()
    try:
        with replaying.client() as client:
            for name in ENCODERS:
                response = _post(client, name, name)
                assert response.status_code == 200, (name, response.text[:300])
                assert response.headers["X-Vcr-Proxy"].startswith("replayed "), name
            miss = _post(client, "zstd", "zstd", content="changed")
            assert miss.status_code == 404
            assert "$.messages[0].content" in miss.text and "changed" in miss.text
            for secret in SECRETS:
                assert secret not in miss.text
    finally:
        replaying.stop()
    _no_secret_on_disk(tmp_path)


def test_a_compressed_body_over_the_limit_is_refused_not_forwarded(tmp_path, upstream):
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", vcr_max_body=str(1 << 20)).start()
    big = json.dumps({"api_key": FIELD_SECRET, "pad": "x" * (2 << 20)}).encode()
    before = len(upstream.requests)
    try:
        with proxy.client() as client:
            response = client.post("https://openrouter.ai/api/v1/chat/completions?case=big",
                                   content=gzip.compress(big),
                                   headers={"Content-Type": "application/json",
                                            "Content-Encoding": "gzip"})
    finally:
        proxy.stop()
    assert response.status_code == 413
    assert "vcr_max_body" in response.text and "\n" not in response.text.strip()
    assert len(upstream.requests) == before
    _no_secret_on_disk(tmp_path)


def _old_cassette(tmp_path):
    """A cassette as the previous release wrote compressed request bodies: the encoded bytes,
    key inside, and no Content-Encoding header."""
    from proxy_addon.cassette import Cassette, Interaction, Request, Response

    interactions = []
    for index, name in enumerate(ENCODERS):
        body = ENCODERS[name][1](_payload(name))
        interactions.append(Interaction(
            id=index,
            request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, content_length=len(body),
                            body=body, headers={"Content-Type": ["application/json"]},
                            url=f"https://openrouter.ai/api/v1/chat/completions?case={name}",
                            method="POST"),
            response=Response(proto="HTTP/2.0", proto_major=2, body='{"ok": true}',
                              headers={"Content-Type": ["application/json"]}, status="200 OK",
                              code=200, content_length=12)))
    path = tmp_path / "old.yaml"
    path.write_text(Cassette(interactions=interactions).dumps())
    return path


def test_check_flags_and_redact_clears_keys_in_old_compressed_bodies(tmp_path):
    path = _old_cassette(tmp_path)
    result = _cli("check", str(path))
    assert result.returncode == 1
    for index in range(len(ENCODERS)):
        assert f"interaction #{index} request body" in result.stderr, result.stderr
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout
    assert _cli("redact", str(path)).returncode == 0
    assert _cli("check", str(path)).returncode == 0, _cli("check", str(path)).stderr
    _no_secret_on_disk(tmp_path)
    from proxy_addon.cassette import load

    for interaction in load(path).interactions:
        assert json.loads(interaction.request.body)["api_key"] == "REDACTED"
        assert interaction.request.headers["Content-Encoding"]


def test_an_old_compressed_recording_still_matches_its_request(tmp_path, upstream):
    """A cassette of the previous release (compressed bytes, no key inside) replays for the same
    compressed request: matching compares decoded bodies on both sides."""
    from proxy_addon.cassette import load

    path = _old_cassette(tmp_path)
    assert _cli("redact", str(path)).returncode == 0  # the keys out, as check demands
    cassette = load(path)
    for interaction in cassette.interactions:  # back to compressed, as the old release stored it
        name = json.loads(interaction.request.body)["case"]
        interaction.request.body = ENCODERS[name][1](interaction.request.body.encode())
        interaction.request.headers.pop("Content-Encoding")
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "default.yaml").write_text(cassette.dumps())
    proxy = Proxy(tmp_path, vcr_mode="replay").start()
    try:
        with proxy.client() as client:
            for name in ENCODERS:
                coding, encode = ENCODERS[name]
                body = json.dumps({**json.loads(_payload(name)), "api_key": FIELD_SECRET}).encode()
                response = client.post(f"https://openrouter.ai/api/v1/chat/completions?case={name}",
                                       content=encode(body),
                                       headers={"Content-Type": "application/json",
                                                "Content-Encoding": coding})
                assert response.status_code == 200, (name, response.text[:300])
    finally:
        proxy.stop()


LEAKY_REQUESTS = 7


def _leaky_requests(client) -> None:
    """A key in the URL path, a JWT in a header no rule names, keys in compressed bodies; an
    upstream that echoes them all back, and one that sets a cookie."""
    client.post(f"https://openrouter.ai/api/v1/keys/{PROJECT_KEY}/chat/completions",
                json={"model": "m"}, headers={"X-Session-Info": JWT, "Authorization": f"Bearer {KEY}"})
    for name in ("gzip", "zstd", "deflate", "br"):
        _post(client, f"display-{name}", name)
    echo = client.post("https://openrouter.ai/echo", json={"api_key": FIELD_SECRET},
                       headers={"X-Session-Info": JWT, "Authorization": f"Bearer {KEY}"})
    assert KEY in echo.text or "REDACTED" in echo.text  # recorded: as sent; replayed: scrubbed
    client.get("https://openrouter.ai/status/401")


def _record_leaky(tmp_path, upstream, **options) -> Proxy:
    """A recording proxy (stopped) through which the leaky requests went."""
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", **options).start()
    try:
        with proxy.client() as client:
            _leaky_requests(client)
        recorded(proxy.cassettes / "default.yaml", LEAKY_REQUESTS)
    finally:
        proxy.stop()
    return proxy


@pytest.mark.parametrize("flow_detail", ["1", "2", "3", "4"])
def test_mitmdump_prints_and_saves_no_credential(tmp_path, upstream, flow_detail):
    from mitmproxy import io

    flows, har = tmp_path / "flows.mitm", tmp_path / "flows.har"
    recording = _record_leaky(tmp_path, upstream, flow_detail=flow_detail,
                              save_stream_file=str(flows), hardump=str(har))
    assert b"openrouter.ai" in har.read_bytes() or b"127.0.0.1" in har.read_bytes()
    replaying = Proxy(tmp_path, vcr_mode="replay", flow_detail=flow_detail).start()
    try:
        with replaying.client() as client:
            _leaky_requests(client)
    finally:
        replaying.stop()
    for proxy in (recording, replaying):
        output = proxy.output()
        assert "POST https://openrouter.ai/api/v1/keys/" in output or flow_detail == "0"
        for secret in SECRETS:
            assert secret not in output, (secret, output[-3000:])
    with open(flows, "rb") as handle:
        saved = list(io.FlowReader(handle).stream())
    assert len(saved) == LEAKY_REQUESTS
    for flow in saved:
        shown = "".join(repr(part) for message in (flow.request, flow.response)
                        for part in (message.url if message is flow.request else message.status_code,
                                     message.headers, message.get_content(strict=False)))
        for secret in SECRETS:
            assert secret not in shown, (secret, shown[:500])
    _no_secret_on_disk(tmp_path, skip_logs=True)


@pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])
def test_proxy_debug_is_refused_in_one_line(tmp_path, launcher):
    from .test_hermetic import _exit_of

    status, output = _exit_of(Proxy(tmp_path, proxy_debug="true", launcher=launcher))
    assert status != 0
    assert "Traceback" not in output and "Addon error" not in output, output
    assert len([line for line in output.splitlines() if "proxy_debug" in line]) == 1, output


def test_debug_verbosity_logs_no_credential(tmp_path, upstream):
    output = _record_leaky(tmp_path, upstream, termlog_verbosity="debug", flow_detail="4").output()
    for secret in SECRETS:
        assert secret not in output, (secret, output[-3000:])


def test_miss_messages_under_header_matching_hold_no_credential(tmp_path, upstream):
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                      vcr_mode="record", vcr_headers="all",
                      vcr_match="method,url,body,headers").start()
    try:
        with recording.client() as client:
            client.post("https://openrouter.ai/api/v1/chat/completions", json={"model": "m"},
                        headers={"X-Trace": "plain", "Authorization": f"Bearer {KEY}"})
        recorded(recording.cassettes / "default.yaml")
    finally:
        recording.stop()
    replaying = Proxy(tmp_path, vcr_mode="replay", vcr_headers="all",
                      vcr_match="method,url,body,headers").start()
    try:
        with replaying.client() as client:
            miss = client.post("https://openrouter.ai/api/v1/chat/completions", json={"model": "m"},
                               headers={"X-Trace": JWT, "X-Project": PROJECT_KEY,
                                        "Authorization": f"Bearer {KEY}"})
            status = client.get("http://vcr-proxy.control/status", headers=control_headers(replaying))
    finally:
        replaying.stop()
    assert miss.status_code == 404 and "header X-" in miss.text, miss.text
    for text in (miss.text, status.text, replaying.output()):
        for secret in SECRETS:
            assert secret not in text, (secret, text[-2000:])
