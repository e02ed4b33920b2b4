"""Every credential form, in every mode and header policy, over HTTP/1.1 and HTTP/2: none on disk."""

from __future__ import annotations

import pytest

from ..proxy import Proxy
from ..test_record import recorded
from ..upstream import Upstream, make_certificate

KEY = "sk-or-v1-" + "5ec7e7" * 11
GOOGLE = "AIza" + "S3CR3T" * 6
COOKIE = "session-cookie-S3CR3T"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = Upstream(cert, key).start()
    server.cert = cert
    yield server
    server.stop()


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("headers_policy", ["minimal", "all"])
@pytest.mark.parametrize("mode", ["record", "once", "new-episodes"])
@pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])
def test_no_credential_reaches_the_disk(tmp_path, upstream, mode, headers_policy, http2, launcher):
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode=mode,
                  vcr_headers=headers_policy, launcher=launcher).start()
    proxy.http2 = http2
    sent = [
        ("https://openrouter.ai/api/v1/chat/completions", {"AUTHORIZATION": f"Bearer {KEY}"}),
        ("https://api.anthropic.com/v1/messages", {"x-API-key": KEY, "anthropic-version": "2023-06-01"}),
        (f"https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key={GOOGLE}&alt=sse",
         {"x-goog-api-key": GOOGLE}),
        (f"https://generativelanguage.googleapis.com/v1beta/models/g:x?alt=sse&KEY={GOOGLE}", {}),
        (f"https://api.openai.com/v1/chat/completions?api_key={KEY}", {"Api-Key": KEY, "cookie": f"s={COOKIE}"}),
        ("https://openrouter.ai/status/401", {"Proxy-Authorization": f"Basic {KEY}"}),
    ]
    try:
        with proxy.client() as client:
            for url, headers in sent:
                client.post(url, json={"model": "m"}, headers=headers)
        recorded(proxy.cassettes / "default.yaml", len(sent))
    finally:
        proxy.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".log" and "mitmproxy" not in path.parts:
            data = path.read_bytes()
            for secret in (KEY, GOOGLE, COOKIE, "S3CR3T"):
                assert secret.encode() not in data, (secret, path)
