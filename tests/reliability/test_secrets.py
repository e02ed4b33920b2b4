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


# Every credential form of the hermetic-replay issue: gateway headers, query names, form,
# multipart and JSON bodies; the upstream echoes each back in its body and headers.
GATEWAY_HEADERS = ["Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
                   "X-Amz-Security-Token", "Cf-Aig-Authorization", "X-Portkey-Api-Key",
                   "X-Portkey-Virtual-Key", "Helicone-Auth", "Ocp-Apim-Subscription-Key",
                   "X-Auth-Token", "X-Api-Token", "Cookie"]
QUERY_NAMES = ["token", "subscription-key", "x-api-key", "api%5Fkey", "key", "access_token"]


def _secret(form: str) -> str:
    return f"S3CR3T-{form.replace('%', '').lower()}-0123456789"


def credential_forms() -> list[tuple[str, dict]]:
    """(form, httpx request arguments) for each credential form."""
    forms = []
    for name in GATEWAY_HEADERS:
        value = _secret(name)
        forms.append((f"header {name}", {"headers": {name: f"Bearer {value}" if "Authorization" in name
                                                     else (f"session={value}" if name == "Cookie" else value)},
                                         "json": {"model": "m"}}))
    for name in QUERY_NAMES:
        forms.append((f"query {name}", {"params_raw": f"alt=sse&{name}={_secret(name)}", "json": {"model": "m"}}))
    forms.append(("urlencoded body", {"content": f"api_key={_secret('form1')}&access_token={_secret('form2')}&m=x",
                                      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}))
    forms.append(("multipart body", {"files": {"file": ("a.txt", b"hello")},
                                     "data": {"password": _secret("multipart"), "model": "whisper-1"}}))
    forms.append(("json body", {"json": {"model": "m", "max_tokens": 5, "api_key": _secret("json1"),
                                         "provider": {"aws_secret_access_key": _secret("json2"),
                                                      "credentials": {"apiKey": _secret("json3")}},
                                         "messages": [{"role": "user", "content": "hi"}]}}))
    return forms


def _send(client, form_args: dict, status: int, case: int):
    # Each case its own URL: credentials are not part of a match, so new-episodes would
    # replay the first recording for requests that differ in nothing else.
    args = dict(form_args)
    query = args.pop("params_raw", "")
    url = f"https://openrouter.ai/echo?status={status}&case={case}" + (f"&{query}" if query else "")
    return client.post(url, **args)


@pytest.mark.parametrize("headers_policy", ["minimal", "all"])
@pytest.mark.parametrize("mode", ["record", "new-episodes"])
def test_every_credential_form_is_scrubbed_then_replays(tmp_path, upstream, mode, headers_policy):
    from proxy_addon.cassette import load

    from ..test_cli import _cli

    forms = credential_forms()
    recording = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode=mode,
                      vcr_headers=headers_policy, vcr_log_replays="true").start()
    statuses = []
    try:
        with recording.client() as client:
            for index, (_, args) in enumerate(forms):
                response = _send(client, args, 401 if index % 2 else 200, index)
                statuses.append(response.status_code)
                assert b"S3CR3T" in response.content  # the client itself gets the echo
        cassette_file = recording.cassettes / "default.yaml"
        recorded(cassette_file, len(forms))
    finally:
        recording.stop()
    replaying = Proxy(tmp_path, vcr_mode="replay", vcr_log_replays="true").start()
    try:
        with replaying.client() as client:
            for index, (form, args) in enumerate(forms):
                response = _send(client, args, 401 if index % 2 else 200, index)
                assert response.status_code == statuses[index], (form, response.text[:300])
                assert b"S3CR3T" not in response.content, form
            # A miss echoes nothing either: neither in the 404 body nor in the log.
            miss = _send(client, {"json": {"model": "other", "api_key": _secret("miss")}}, 200, 0)
            assert miss.status_code == 404 and b"S3CR3T" not in miss.content
    finally:
        replaying.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file() and "mitmproxy" not in path.parts:
            assert b"S3CR3T" not in path.read_bytes(), path
    # Each form written into a cassette by hand is flagged by check; redact clears them all.
    cassette = load(cassette_file)
    check_problems = 0
    # Request n has id n (ids are taken in request order); the file is in the order the saves
    # ended, which a save finishing after the next request's may change.
    assert sorted(i.id for i in cassette.interactions) == list(range(len(forms)))
    for index, (form, args) in enumerate(forms):
        leaky = tmp_path / "leaky" / f"{form.replace(' ', '_').replace('%', '')}.yaml"
        leaky.parent.mkdir(exist_ok=True)
        one = load(cassette_file)
        one.interactions = [i for i in one.interactions if i.id == index]
        if form.startswith("header "):  # not recorded at all under the minimal policy
            one.interactions[0].request.headers[form.split()[1]] = [_secret(form)]
        text = one.dumps().replace("REDACTED", _secret(form))
        leaky.write_text(text)
        result = _cli("check", str(leaky))
        assert result.returncode == 1, (form, text[:2000])
        assert "S3CR3T" not in result.stderr
        check_problems += 1
    assert _cli("redact", str(tmp_path / "leaky")).returncode == 0
    assert _cli("check", str(tmp_path / "leaky")).returncode == 0
    assert check_problems == len(forms)


def test_save_stream_file_works_while_recording_and_holds_no_request_credential(tmp_path, upstream):
    from mitmproxy import io

    flows = tmp_path / "flows.mitm"
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_mode="record",
                  save_stream_file=str(flows)).start()
    try:
        with proxy.client() as client:
            client.post(f"https://openrouter.ai/api/v1/chat/completions?key={GOOGLE}", json={"model": "m"},
                        headers={"Authorization": f"Bearer {KEY}"})
        recorded(proxy.cassettes / "default.yaml")
    finally:
        proxy.stop()
    with open(flows, "rb") as handle:
        saved = list(io.FlowReader(handle).stream())
    assert len(saved) == 1 and "Addon error" not in proxy.output()
    request = saved[0].request
    assert KEY not in repr(request.headers) and GOOGLE not in request.url
