"""Credentials found by name, by value and by shape, and replaced in place; driven without a proxy."""

from __future__ import annotations

import json

import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load, loads
from proxy_addon.credentials import (MARKER, cassette_findings, is_credential_field, is_credential_header,
                                     is_credential_param, redact_cassette, scrub_interaction, scrub_line,
                                     scrub_request)

from .conftest import corpus_files

SECRET = "s3cr3t-VALUE-0123456789"

GATEWAY_HEADERS = ["Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
                   "X-Amz-Security-Token", "Cf-Aig-Authorization", "X-Portkey-Api-Key",
                   "X-Portkey-Virtual-Key", "Helicone-Auth", "Ocp-Apim-Subscription-Key", "X-Auth-Token",
                   "X-Api-Token", "Cookie", "Set-Cookie", "X-Client-Secret", "x_api_key"]
HARMLESS_HEADERS = ["Content-Type", "User-Agent", "Anthropic-Version", "Openai-Organization",
                    "X-Ratelimit-Remaining-Tokens", "Anthropic-Ratelimit-Input-Tokens-Limit",
                    "Access-Control-Allow-Credentials", "X-Request-Id", "X-Stainless-Os"]


@pytest.mark.parametrize("name", GATEWAY_HEADERS)
def test_credential_headers_by_name(name):
    assert is_credential_header(name) and is_credential_header(name.upper())


@pytest.mark.parametrize("name", HARMLESS_HEADERS)
def test_harmless_headers_stay(name):
    assert not is_credential_header(name)


@pytest.mark.parametrize("name", ["key", "api_key", "api%5Fkey", "API-KEY", "apikey", "token", "access_token",
                                  "subscription-key", "x-api-key", "sig", "client_secret", "auth"])
def test_credential_parameters_by_decoded_name(name):
    assert is_credential_param(name)


@pytest.mark.parametrize("name, credential", [
    ("api_key", True), ("apiKey", True), ("access_token", True), ("refresh_token", True),
    ("client_secret", True), ("aws_secret_access_key", True), ("aws_session_token", True),
    ("password", True), ("openaiApiKey", True),
    ("max_tokens", False), ("prompt_tokens", False), ("reasoning_tokens", False), ("token", False),
    ("key", False), ("content", False), ("text", False), ("name", False)])
def test_json_fields_by_name(name, credential):
    assert is_credential_field(name) == credential


def _interaction(url="https://openrouter.ai/api/v1/chat/completions", body="", response_body="",
                 request_headers=None, response_headers=None, form=None) -> Interaction:
    return Interaction(
        id=0,
        request=Request(url=url, method="POST", body=body, headers=request_headers or {}, form=form or {}),
        response=Response(body=response_body, headers=response_headers or {}, status="200 OK", code=200))


def test_every_form_is_scrubbed_in_place_and_echoes_go_too():
    llm_body = {"model": "m", "max_tokens": 5, "api_key": SECRET,
                "metadata": {"auth": {"apiKey": SECRET + "-2"}},
                "tools": [{"type": "function", "function": {"name": "login", "parameters": {
                    "type": "object", "properties": {"password": {"type": "string"}}}}}],
                "messages": [{"role": "user", "content": "my token is short"}]}
    interaction = _interaction(
        url=f"https://openrouter.ai/api/v1/x?alt=sse&api%5Fkey={SECRET}-3&token=t0k3n-abcdefgh",
        body=json.dumps(llm_body),
        request_headers={"Authorization": [f"Bearer {SECRET}-4"], "Content-Type": ["application/json"]},
        response_body=json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}-4"},
                                  "echo": f"{SECRET}-3 and t0k3n-abcdefgh",
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        response_headers={"X-Echo": [f"Bearer {SECRET}-4"], "Set-Cookie": ["s=cookie-value-123; Path=/"]})
    found = scrub_interaction(interaction)
    text = repr(interaction)
    assert SECRET not in text and "t0k3n" not in text and "cookie-value" not in text
    body = json.loads(interaction.request.body)
    assert body["api_key"] == MARKER and body["metadata"]["auth"]["apiKey"] == MARKER
    assert body["max_tokens"] == 5 and body["messages"] == llm_body["messages"]
    assert body["tools"] == llm_body["tools"]
    assert interaction.request.url == ("https://openrouter.ai/api/v1/x?alt=sse&api%5Fkey=REDACTED"
                                       "&token=REDACTED")
    assert "Authorization" not in interaction.request.headers
    assert interaction.response.headers["X-Echo"] == [MARKER]
    assert json.loads(interaction.response.body)["usage"] == {"prompt_tokens": 3, "completion_tokens": 4}
    assert found and all(SECRET not in place for place in found)


def test_urlencoded_and_multipart_form_fields():
    urlencoded = _interaction(body=f"api_key={SECRET}&access_token={SECRET}x&model=m",
                              request_headers={"Content-Type": ["application/x-www-form-urlencoded"]},
                              form={"api_key": [SECRET], "access_token": [SECRET + "x"], "model": ["m"]})
    scrub_interaction(urlencoded)
    assert urlencoded.request.body == "api_key=REDACTED&access_token=REDACTED&model=m"
    assert urlencoded.request.form == {"api_key": [MARKER], "access_token": [MARKER], "model": ["m"]}
    multipart_body = ("--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n")
    multipart = _interaction(body=multipart_body,
                             request_headers={"Content-Type": ["multipart/form-data; boundary=XyZ"]})
    scrub_interaction(multipart)
    assert "hunter2" not in multipart.request.body and "whisper-1" in multipart.request.body
    assert "name=\"password\"\r\n\r\nREDACTED\r\n" in multipart.request.body


@pytest.mark.parametrize("key", ["sk-or-v1-" + "ab12" * 16, "sk-ant-api03-" + "x" * 40, "sk-proj-" + "Y" * 40,
                                 "AIza" + "Q" * 35, "AKIA" + "ABCDEFGHIJKLMNOP", "ghp_" + "a" * 36,
                                 "xoxb-1234567890-abcdef", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz",
                                 "gsk_" + "g" * 45, "hf_" + "h" * 34])
def test_key_shapes_anywhere(key):
    interaction = _interaction(body=f'{{"messages": [{{"content": "use {key} please"}}]}}',
                               response_body=f"data: {{\"echo\": \"{key}\"}}\n\n")
    found = scrub_interaction(interaction)
    assert key not in repr(interaction) and len(found) == 2
    assert all(key not in place for place in found)


def test_shapes_inside_longer_words_are_not_keys():
    interaction = _interaction(body='{"content": "task-' + "a" * 40 + '"}')
    assert scrub_interaction(interaction) == []


def test_long_bodies_keep_their_type():
    text_body = bytearray(b'data: {"x": "' + b"y" * 100 + b'", "api_key": "' + SECRET.encode() + b'"}\n\n')
    binary = b"\xff\xfe" + SECRET.encode()
    interaction = _interaction(response_body=text_body)
    interaction.request.body = binary
    scrub_interaction(interaction, None)
    assert isinstance(interaction.response.body, bytearray) and SECRET.encode() not in interaction.response.body
    assert isinstance(interaction.request.body, bytes)


def test_incoming_requests_scrub_like_recordings():
    url, body, secrets = scrub_request(f"https://generativelanguage.googleapis.com/v1?key={SECRET}",
                                       [("Authorization", "Bearer sk-xyz-123456789")],
                                       json.dumps({"api_key": SECRET, "echo": "sk-xyz-123456789"}).encode(),
                                       "application/json")
    assert url.endswith("?key=REDACTED") and SECRET.encode() not in body and b"sk-xyz" not in body
    assert scrub_line(f"GET /x?key={SECRET}&alt=sse failed for {SECRET}", secrets) == \
        "GET /x?key=REDACTED&alt=sse failed for REDACTED"


def test_check_findings_name_places_never_values_and_redact_clears_them(tmp_path):
    cassette = load(corpus_files()[0])
    first = cassette.interactions[0]
    first.request.headers["X-Portkey-Api-Key"] = [SECRET]
    first.request.url += f"?subscription-key={SECRET}"
    findings = cassette_findings(cassette)
    assert any("request header X-Portkey-Api-Key" in f for f in findings)
    assert any("request url parameter subscription-key" in f for f in findings)
    assert all(SECRET not in f for f in findings)
    assert redact_cassette(cassette)
    again = loads(cassette.dumps())
    assert cassette_findings(again) == [] and not redact_cassette(again)


def test_the_corpus_holds_no_credential():
    for path in corpus_files():
        assert cassette_findings(load(path)) == [], path


# Forms a first attack found unscrubbed, each now a case.
ATTACK_SECRET = "ATT4CK-s3cret-Value-0042"


@pytest.mark.parametrize("url, body, headers", [
    (f"https://x.example/v1?foo=1;api_key={ATTACK_SECRET}", "", {}),
    (f"https://x.example/cb?code={ATTACK_SECRET}&pwd={ATTACK_SECRET}x", "", {}),
    ("https://x.example/v1", f"client_secret={ATTACK_SECRET}&m=x", {"Content-Type": ["text/plain"]}),
    ("https://x.example/v1", f"client_secret={ATTACK_SECRET};m=x", {}),
    ("https://x.example/v1", f"--b1\r\nContent-Disposition: form-data; name=api_key\r\n\r\n{ATTACK_SECRET}\r\n--b1--\r\n",
     {"Content-Type": ["multipart/form-data; BOUNDARY=b1"]}),
    ("https://x.example/v1", json.dumps({"token": ATTACK_SECRET}), {}),
    ("https://x.example/v1", json.dumps({"hf_token": ATTACK_SECRET, "n": 1}), {}),
    ("https://x.example/v1", json.dumps({"api_key": [ATTACK_SECRET]}), {}),
    ("https://x.example/v1", json.dumps({"headers": [["Authorization", f"Bearer {ATTACK_SECRET}"]]}), {}),
    ("https://x.example/v1", json.dumps({"headers": [{"name": "x-api-key", "value": ATTACK_SECRET}]}), {}),
    ("https://x.example/v1", json.dumps({"tool_calls": [{"function": {
        "arguments": json.dumps({"api_key": ATTACK_SECRET})}}]}), {}),
    ("https://x.example/v1", "", {"Authentication": [ATTACK_SECRET]}),
    ("https://x.example/v1", "", {"Authorisation": [f"ApiKey {ATTACK_SECRET}"]}),
])
def test_forms_an_attack_found(url, body, headers):
    echo = f"you sent {ATTACK_SECRET} and {ATTACK_SECRET.replace('-', chr(92) + '-')}"
    interaction = _interaction(url=url, body=body, request_headers=dict(headers), response_body=echo)
    scrub_interaction(interaction)
    assert ATTACK_SECRET not in repr(interaction)


def test_echoes_of_credentials_under_any_scheme_or_escaping():
    secret = "ZQPHP05x/Secret+abc123"
    for header in ([f"SSWS {secret}"], [f"Bearer\t{secret}"], [secret]):
        interaction = _interaction(request_headers={"Authorization": header, "Cookie": [secret]},
                                   response_body=json.dumps({"echo": secret}).replace("/", "\\/"))
        scrub_interaction(interaction)
        assert "Secret+abc" not in repr(interaction), header


def test_credentials_a_response_issues_are_scrubbed_but_not_logprobs():
    issued = json.dumps({"client_secret": {"value": "ek_68af0b0c2a1d8191a0b1c2d3"}, "private_key_pem": "-----BEGIN x",
                         "logprobs": {"content": [{"token": "Hello", "logprob": -0.1},
                                                  {"token": "<｜end▁of▁sentence｜>", "logprob": -1}]}})
    interaction = _interaction(response_body=issued,
                               response_headers={"Location": ["https://app.example/cb?code=0xC0DE-123456&state=s"]})
    scrub_interaction(interaction)
    body = json.loads(interaction.response.body)
    assert body["client_secret"]["value"] == MARKER and body["private_key_pem"] == MARKER
    assert [t["token"] for t in body["logprobs"]["content"]] == ["Hello", "<｜end▁of▁sentence｜>"]
    assert interaction.response.headers["Location"] == ["https://app.example/cb?code=REDACTED&state=s"]


def test_a_gzip_encoded_request_body_is_stored_decoded_when_scrubbed_and_lengths_follow():
    """Never scrubbed inside the compressed bytes nor compressed again: decoded, as a recording
    stores it now, with its coding in a header."""
    import gzip

    interaction = _interaction(body=gzip.compress(json.dumps({"api_key": ATTACK_SECRET}).encode()),
                               response_body=f"bad key {ATTACK_SECRET}")
    interaction.request.content_length = len(interaction.request.body)
    interaction.response.content_length = len(interaction.response.body)
    assert scrub_interaction(interaction)
    assert json.loads(interaction.request.body) == {"api_key": "REDACTED"}
    assert interaction.request.headers["Content-Encoding"] == ["gzip"]
    assert interaction.request.content_length == len(interaction.request.body)
    assert interaction.response.content_length == len(interaction.response.body.encode())


@pytest.mark.parametrize("name", ["api_key", "api%5Fkey", "API%5fKEY", "x-api-key", "token", "access_token"])
def test_a_query_string_echoed_in_a_body_loses_its_credential_parameters(name):
    """An upstream that quotes the URL it was called with (`?alt=sse&api%5Fkey=...`): found in the
    body itself, so a cassette whose URL was already redacted is still caught by check."""
    secret = "S3CR3T-echoed-0123456789"
    interaction = _interaction(body="{}", response_body=json.dumps({
        "query": f"alt=sse&{name}={secret}", "url": f"https://x.example/v1?{name}={secret}",
        "go": f"a=1\\u0026{name}={secret}", "again": secret}))
    interaction.request.url = f"https://x.example/v1?alt=sse&{name}=REDACTED"
    assert scrub_interaction(interaction)
    assert secret not in interaction.response.body
    assert f"{name}=REDACTED" in interaction.response.body


def test_query_like_text_without_a_credential_name_or_long_value_is_left_alone():
    text = json.dumps({"content": "use ?max_tokens=100000000&page=2 or &key=short and a=b&token=x"})
    interaction = _interaction(body="{}", response_body=text)
    assert scrub_interaction(interaction) == []
    assert interaction.response.body == text


def test_a_request_body_scrubbed_in_one_pass_misses_nothing_two_passes_find():
    # scrub_request scans a JSON body once for names, known values and key shapes together;
    # a match of one kind must not hide another inside or right after it.
    from proxy_addon.credentials import scrub_request

    header_key = "sk-or-v1-" + "1" * 64
    field_key = "field-secret-" + "2" * 20
    shaped = "sk-proj-" + "A" * 40
    body = json.dumps({
        "api_key": field_key,                      # by name
        "note": f"the same {field_key} again",     # its echo, found after the name
        f"token {shaped}": "x",                    # a shape inside a credential-looking name
        f"{header_key}": "y",                      # a known value as a name
        "url": f"https://x.example/?a=1&access_token={'3' * 20}",  # a query pair
        "text": f"and {header_key} in prose, {shaped} too",
    }).encode()
    _, scrubbed, secrets = scrub_request("https://openrouter.ai/api/v1/chat/completions",
                                         [("Authorization", f"Bearer {header_key}")], body,
                                         "application/json")
    text = scrubbed.decode()
    for secret in (header_key, field_key, shaped, "3" * 20):
        assert secret not in text, (secret, text)
    assert json.loads(text)["api_key"] == "REDACTED"
    assert field_key in secrets.values


@pytest.mark.parametrize("size", [200, 2 << 20], ids=["small", "2 MB"])
def test_a_recorded_request_body_is_scrubbed_once_then_of_what_the_response_taught(size):
    # The request's view (request_view.py) is scrubbed as the request enters the proxy; the
    # recorder does not scan that body again, but a credential only the response names (a
    # session cookie it sets) is replaced in it too.
    from proxy_addon.recorder import Exchange, to_interaction
    from proxy_addon.request_view import view_request

    key, session = "sk-proj-" + "k" * 40, "sess-" + "7" * 24
    body = json.dumps({"model": "m", "pad": "x" * size, "messages": [
        {"role": "user", "content": f"my key is {key} and my session {session}"}]}).encode()
    view = view_request("POST", "https://api.openai.com/v1/chat/completions",
                        [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")],
                        body, 1 << 30)
    assert key.encode() not in view.body and session.encode() in view.body
    known = set(view.secrets.values)
    exchange = Exchange(
        method="POST", url=view.url, request_headers=view.headers, request_body=view.body,
        http_version="HTTP/1.1", status_code=200, reason="OK",
        response_headers=[("Content-Type", "application/json"),
                          ("Set-Cookie", f"session={session}; Path=/; HttpOnly")],
        response_body=json.dumps({"echo": f"{key} {session}"}).encode(), started=0.0,
        headers_at=0.1, ended=0.2, secrets=view.secrets, request_scrubbed_of=view.scrubbed_of)
    interaction, _ = to_interaction(exchange, 0)
    recorded = Cassette(interactions=[interaction]).dumps()
    for value in (key, session):
        assert value not in recorded
    request_body = interaction.request.body
    text = request_body if isinstance(request_body, str) else request_body.decode()
    assert text.count(MARKER) == 2
    assert view.secrets.values == known  # the view's own, read meanwhile by the proxy's thread
    # Learning nothing from the response, a long body is kept as the view holds it: no copy.
    quiet = Exchange(**{**exchange.__dict__, "secrets": view.secrets,
                        "response_headers": [("Content-Type", "application/json")],
                        "response_body": b"{}"})
    again, _ = to_interaction(quiet, 1)
    if size > 1 << 20:
        assert again.request.body is view.body
