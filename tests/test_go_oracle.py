"""Differential tests against Go's real yaml.v3: the bytes must be the same."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from proxy_addon.cassette import Cassette, Interaction, Request, Response, loads
from proxy_addon.serializers.emitter import INDENT4

from .conftest import assert_same_bytes
from .strategies import bodies, cassettes, strings

# VCR_EXAMPLES=5000 make test digs deeper; the default keeps the suite quick.
EXAMPLES = int(os.environ.get("VCR_EXAMPLES", "250"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _one_string_cassette(text):
    return Cassette(interactions=[Interaction(
        request=Request(body=text, headers={"X-Test": [text]}, url=text),
        response=Response(body=text, status=text if isinstance(text, str) else ""),
    )])


@SETTINGS
@given(cassettes())
def test_indent4_is_what_go_writes(go_oracle, cassette):
    status, _, theirs = go_oracle.marshal(cassette)
    assert status == 0, theirs
    assert_same_bytes(cassette.dumps(INDENT4).encode(), theirs)


@SETTINGS
@given(strings)
@example("\nleading newline")
@example("\ufeffbom first")
@example("a\u2028b")
@example(" \n")
@example("x\u2029")
def test_each_tricky_string_is_what_go_writes(go_oracle, text):
    cassette = _one_string_cassette(text)
    status, _, theirs = go_oracle.marshal(cassette)
    assert status == 0, theirs
    assert_same_bytes(cassette.dumps(INDENT4).encode(), theirs)


def _check_go_reads_ours(go_oracle, cassette):
    # yaml.v3 writes a few strings it cannot read back; only data Go round-trips compares.
    _, stable, _ = go_oracle.marshal(cassette)
    assume(stable)
    ours = cassette.dumps(INDENT4).encode()
    status, _, theirs = go_oracle.round_trip(ours)
    assert status == 0, theirs
    assert_same_bytes(ours, theirs)
    assert loads(ours) == cassette


@SETTINGS
@given(bodies)
def test_go_reads_each_string_as_we_do(go_oracle, text):
    _check_go_reads_ours(go_oracle, _one_string_cassette(text))


# Whole cassettes hold dozens of strings, so more of them hold one Go cannot read back.
@settings(SETTINGS, max_examples=max(EXAMPLES // 5, 20))
@given(cassettes())
def test_go_reads_whole_cassettes_as_we_do(go_oracle, cassette):
    _check_go_reads_ours(go_oracle, cassette)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(["0s", "1h", "1.5h", "-3s", "+3s", ".5s", "5.s", "1h2m3s4ms5us6ns",
                                  "1µs", "1μs", "0", "", "3", "1e3s", "1.0000000000000000001s",
                                  "9223372036854775807ns", "9223372036854775808ns", "2562047h",
                                  "2562048h", "-9223372036854775808ns", "1s ", "1x", ".s", "1..5s"]),
                 st.text(alphabet="0123456789.+-nsuµμmh ", max_size=12)))
def test_durations_are_read_as_go_reads_them(go_oracle, text):
    from proxy_addon.errors import CassetteError
    document = ("---\nversion: 2\ninteractions:\n    - id: 0\n      request:\n        url: u\n"
                "        method: GET\n      response:\n        code: 200\n        duration: "
                + ('"' + text + '"') + "\n").encode()
    status, _, theirs = go_oracle.round_trip(document)
    try:
        ours = loads(document).dumps(INDENT4).encode()
    except CassetteError:
        ours = None
    if status == 0:
        assert ours == theirs
    else:
        assert ours is None, theirs


_BASE64 = base64.b64encode(bytes(range(256)) * 3100).decode()  # 1 MB of an image, say


@pytest.mark.parametrize("body", [
    '{"messages": [{"image_url": {"url": "data:image/png;base64,' + _BASE64 + '"}}]}',
    "plain" + _BASE64, " leading space " + _BASE64, _BASE64 + " trailing space ",
    "it's " + _BASE64 + " 'quoted'", "key: " + _BASE64, "a #" + _BASE64, "? " + _BASE64,
    "\u00e9t\u00e9 " + _BASE64 + " \u00e0 la plage \U0001f600", "tab\t" + _BASE64, "cr\r" + _BASE64,
    "next \x85" + _BASE64, "sep \u2028" + _BASE64, "bom \ufeff" + _BASE64, "12" + _BASE64,
    "yes" + _BASE64,
], ids=lambda body: repr(body[:12]))
def test_long_one_line_bodies_written_from_bytes_are_what_go_writes(go_oracle, body):
    # The recorder hands a body of 1 MB or more to the emitter as UTF-8 bytes, and one without
    # a line break is written plain or single-quoted straight from them (emitter._big_line).
    data = body.encode("utf-8")
    assert len(data) >= 1 << 20
    cassette = Cassette(interactions=[Interaction(request=Request(body=data, url="u"),
                                                  response=Response(body=data))])
    status, _, theirs = go_oracle.marshal(cassette)
    assert status == 0, theirs
    assert_same_bytes(cassette.dumps(INDENT4).encode(), theirs)
    pieces: list[bytes] = []
    cassette.write(pieces.append, INDENT4)
    assert_same_bytes(b"".join(pieces), theirs)
