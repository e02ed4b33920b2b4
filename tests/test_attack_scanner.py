"""Attacks on the RE2 credential scanner (scanning.py) and the one-pass request scrub: inputs
the previous `re`-based scrubber cleaned and the new one did not."""

from __future__ import annotations

import json

import pytest

from proxy_addon.cassette import Interaction, Request, Response
from proxy_addon.credentials import scrub_interaction, scrub_request

from .proxy import Proxy
from .test_record import recorded
from .reliability.test_secrets import upstream  # noqa: F401  (the module's HTTPS upstream)

FIELD_VALUE = "hunter2-hunter2-pw"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdHRhY2syMSJ9.c2lnbmF0dXJlLWF0dGFjazIx"
AWS = "AKIAATTACK21ABCDEFGH"


def _pieces(secret) -> list[bytes]:
    data = secret if isinstance(secret, bytes) else secret.encode()
    return [data[i:i + 8] for i in range(len(data) - 7)]


def _leaks(scrubbed, secret) -> bool:
    data = scrubbed.encode("utf-8", "surrogatepass") if isinstance(scrubbed, str) else bytes(scrubbed)
    return any(piece in data for piece in _pieces(secret))


def _request(body, headers=(), content_type="application/json"):
    return scrub_request("https://api.openai.com/v1/chat/completions", list(headers), body,
                         content_type)[1]


def _recorded(body):
    interaction = Interaction(id=0, request=Request(
        url="https://api.openai.com/v1/chat/completions", method="POST", body=body,
        headers={"Content-Type": ["application/json"]}, form={}),
        response=Response(body="", headers={}, status="200 OK", code=200))
    found = scrub_interaction(interaction)
    return interaction.request.body, found


# A credential field whose value is not UTF-8 (a Latin-1 client's password, a stray byte):
# json.loads of the member's bytes failed, so the field was skipped.
NOT_UTF8 = [b'{"api_key": "abc\xffdefghijk-xyz"}', b'{"password": "p\xe9ssw0rd-2024-xyz"}',
            b'{"model": "m", "client_secret": "\xc3(secret-value-xyz"}']


@pytest.mark.parametrize("body", NOT_UTF8)
def test_a_credential_field_that_is_not_utf8_is_scrubbed(body):
    secret = body.split(b'": "')[-1][:-2]
    assert not _leaks(_request(body), secret[4:])
    scrubbed, found = _recorded(body)
    assert not _leaks(scrubbed, secret[4:]) and found


@pytest.mark.parametrize("pair", ["?jwt=" + JWT, "?a=1&assertion=" + JWT, "?id=" + AWS,
                                  "?a=1\\u0026ref=" + AWS, ";x=" + AWS])
def test_a_key_shape_right_after_a_query_pairs_equals_is_scrubbed(pair):
    body = json.dumps({"model": "m", "callback": "https://example.test/cb" + pair.replace("\\u0026", "&")})
    if "\\u0026" in pair:
        body = body.replace("&", "\\u0026")
    secret = JWT if JWT in pair else AWS
    for sent in (body, body.encode()):
        assert not _leaks(_request(sent), secret), sent


def test_an_escaped_credential_name_in_a_body_of_a_mebibyte_is_scrubbed():
    for size in (1 << 20, 2 << 20):
        body = ('{"prompt_cache_key": "user-1", "pad": "' + "x" * size
                + '", "api_\\u006bey": "' + FIELD_VALUE + '", "se\\u0063ret": "' + FIELD_VALUE + '2"}')
        for sent in (body, body.encode()):
            assert not _leaks(_request(sent), FIELD_VALUE)
            scrubbed, found = _recorded(sent)
            assert not _leaks(scrubbed, FIELD_VALUE) and found


def test_an_escaped_credential_name_is_scrubbed_with_no_credential_word_in_the_body():
    body = '{"model": "m", "api_\\u006bey": "' + FIELD_VALUE + '"}'
    for sent in (body, body.encode()):
        assert not _leaks(_request(sent), FIELD_VALUE)
        assert not _leaks(_recorded(sent)[0], FIELD_VALUE)


def test_an_echo_that_a_key_shape_runs_into_is_scrubbed_whole():
    echo = "abcdefgh.ijklmnop-qrst"
    body = json.dumps({"m": "sk-proj-" + "A" * 40 + echo}).encode()
    headers = [("X-Api-Key", echo)]
    assert not _leaks(_request(body, headers), echo)
    from proxy_addon.credentials import Scrubber, Secrets
    secrets = Secrets()
    secrets.add(echo)
    assert not _leaks(Scrubber(secrets).text(body, "response body"), echo)
    assert not _leaks(Scrubber(secrets).text(body.decode(), "response body"), echo)


def test_through_the_proxy_no_such_credential_reaches_a_file_or_the_log(tmp_path, upstream):  # noqa: F811
    bodies = [NOT_UTF8[1],
              json.dumps({"model": "m", "callback": "https://example.test/cb?jwt=" + JWT}).encode()]
    proxy = Proxy(tmp_path, upstream_ca=upstream.cert, vcr_upstream=upstream.url,
                  vcr_mode="record", flow_detail="3").start()
    try:
        with proxy.client() as client:
            for index, body in enumerate(bodies):
                response = client.post(f"https://openrouter.ai/api/v1/chat/completions?case={index}",
                                       content=body, headers={"Content-Type": "application/json"})
                assert response.status_code in (200, 500)  # the test upstream reads JSON as UTF-8
        recorded(proxy.cassettes / "default.yaml", len(bodies))
    finally:
        proxy.stop()
    output = proxy.output()
    for secret in (b"ssw0rd-2024-xyz", JWT.encode()):
        assert not _leaks(output.encode("utf-8", "surrogatepass"), secret), output[-2000:]
        for path in tmp_path.rglob("*"):
            if path.is_file() and "mitmproxy" not in path.parts:
                assert not _leaks(path.read_bytes(), secret), path


def test_overlapping_echoes_are_scrubbed_whole_wherever_they_stand():
    from proxy_addon.credentials import Scrubber, Secrets
    inner, outer = "aaaaaaaaBB", "X" + "aaaaaaaaBB" + "CCCCCCCCCC"  # one inside the other, shifted
    first, second = "Xaaaaaaaa", "aaaaaaaaBBBBBBBBB"  # the shorter starts first
    for secrets_, text in (((inner, outer), outer + " tail"), ((inner, outer), "say " + outer),
                           ((first, second), "Xaaaaaaaa" + "BBBBBBBBB"),
                           ((first, second), "say Xaaaaaaaa" + "BBBBBBBBB")):
        secrets = Secrets()
        for value in secrets_:
            secrets.add(value)
        for value in (text, text.encode()):
            scrubbed = Scrubber(secrets).text(value, "response header x")
            assert not any(_leaks(scrubbed, secret) for secret in secrets_), scrubbed


def test_an_echo_repeated_inside_a_credential_name_is_scrubbed_each_time():
    echo = "hunter2hunter2xyz"
    body = ('{"token ' + echo + ' ' + echo + '": 1}').encode()
    assert not _leaks(_request(body, [("X-Api-Key", echo)]), echo)
