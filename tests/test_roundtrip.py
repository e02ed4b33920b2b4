"""load(dump(c)) == c in every layout, and each layout is detected on load."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings

from proxy_addon.cassette import (Cassette, Interaction, Request, Response, dump_interaction, loads,
                                  write_interaction)
from proxy_addon.durations import format_duration, parse_duration
from proxy_addon.serializers.emitter import LAYOUTS

from .strategies import cassettes, durations

EXAMPLES = int(os.environ.get("VCR_EXAMPLES", "250"))


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cassette=cassettes(readable=True))
def test_load_of_dump_is_the_same_cassette(go_oracle, layout, cassette):
    # yaml.v3 writes a few strings it cannot read back (a literal block with an indentation
    # indicator inside a list, one that starts with a line break...): only data that Go
    # itself round-trips can come back equal.
    assume(go_oracle.marshal(cassette)[1])
    text = cassette.dumps(layout)
    loaded = loads(text)
    assert loaded == cassette
    if cassette.interactions:
        assert loaded.layout == layout
    assert loaded.dumps().encode() == text.encode()


@settings(max_examples=EXAMPLES * 4)
@given(durations)
def test_duration_text_parses_back(nanoseconds):
    assert parse_duration(format_duration(nanoseconds)) == nanoseconds


@pytest.mark.parametrize("nanoseconds, text", [
    (0, "0s"), (850, "850ns"), (755_667, "755.667\u00b5s"), (850_500_000, "850.5ms"),
    (10_057_092_666, "10.057092666s"), (78_006_992_750, "1m18.00699275s"),
    (7_200_500_000_000, "2h0m0.5s"), (-1_500_000_000, "-1.5s"),
    (-(1 << 63), "-2562047h47m16.854775808s"),
])
def test_durations_are_written_as_go_writes_them(nanoseconds, text):
    assert format_duration(nanoseconds) == text
    assert parse_duration(text) == nanoseconds


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_an_appended_interaction_is_the_tail_of_the_whole_file(layout):
    first = Interaction(id=0, request=Request(url="https://a/", method="GET"),
                        response=Response(body="a\nb\n\n", code=200))
    second = Interaction(id=1, request=Request(url="https://b/", method="POST", body='{"x": 1}'),
                         response=Response(body="tail", code=200, headers={"A": ["1"]}))
    whole = Cassette(interactions=[first, second]).dumps(layout)
    head = Cassette(interactions=[first]).dumps(layout)
    assert whole == head + dump_interaction(second, layout)


def test_huge_literal_bodies_take_the_low_memory_path_with_the_same_bytes(monkeypatch):
    import proxy_addon.serializers.emitter as emitter

    body = "data: {\"n\": 1}\n\n  indented\n\n\nlast" * 40000
    cassette = Cassette(interactions=[Interaction(request=Request(url="u"), response=Response(body=body))])
    monkeypatch.setattr(emitter, "_BIG", 1 << 40)
    line_by_line = cassette.dumps()
    monkeypatch.setattr(emitter, "_BIG", 16)
    assert cassette.dumps() == line_by_line
    assert loads(line_by_line) == cassette


def _as_bytes_writes(cassette: Cassette, layout) -> bytes:
    pieces: list[bytes] = []
    cassette.write(pieces.append, layout)
    return b"".join(pieces)


def _with_long_bodies_as_bytes(cassette: Cassette) -> Cassette:
    """The cassette with every text body handed over as UTF-8 bytes, as the recorder does
    with long ones."""
    return Cassette(interactions=[
        Interaction(id=i.id, request=i.request, response=Response(
            **{**i.response.__dict__, "body": bytearray(i.response.body.encode("utf-8", "surrogatepass"))
               if isinstance(i.response.body, str) else i.response.body}))
        for i in cassette.interactions])


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cassette=cassettes())
def test_bodies_written_from_utf8_bytes_in_batches_are_the_same_bytes(layout, cassette):
    import proxy_addon.serializers.emitter as emitter

    expected = cassette.dumps(layout).encode("utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emitter, "_BIG", 8)  # every body of 8 bytes or more takes the long path
        as_bytes = _with_long_bodies_as_bytes(cassette)
        assert _as_bytes_writes(as_bytes, layout) == expected
        assert as_bytes.dumps(layout).encode("utf-8") == expected
        if cassette.interactions:
            head = Cassette(interactions=as_bytes.interactions[:-1]).dumps(layout)
            tail = dump_interaction(as_bytes.interactions[-1], layout)
            if len(cassette.interactions) > 1:
                assert (head + tail).encode("utf-8") == expected
            pieces: list[bytes] = []
            write_interaction(as_bytes.interactions[-1], layout, pieces.append)
            assert b"".join(pieces) == tail.encode("utf-8")


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
@pytest.mark.parametrize("body", [
    "data: 1\n\ndata: 2\n\n", " leading space\nx", "\nleading break\n", "no final break\nx",
    "kept breaks\n\n\n", "trailing space \nx", "space before break \n", "tab\there\n",
    "bell \x07\n", "next line \x85 here\n", "sep \u2028 here\n", "bom \ufeff\n", "emoji \U0001f600\n",
    "accents \u00e9\u00e8\n\u00e9", "\u00e9\n", "\r\nwindows\r\n", "x\n" * 5000,
    # One line (emitter._big_line): plain, single-quoted, or left to the text path.
    '{"a": "b", "c": [1, 2]}', "plain words", " leading space", "trailing space ", "it's 'quoted'",
    "key: value", "a #comment", "? question", "?x", "\u00e9t\u00e9 \U0001f600 \u4e2d", "tab\tline",
    "bell \x07 line", "cr \r line", "next \x85 line", "sep \u2029 line", "bom \ufeff line", "12 apples",
    "yes sir", "~tilde", "-dash", ".dot", "x:", "#hash", "'" * 9,
], ids=lambda b: repr(b[:16]))
def test_long_text_bodies_given_as_bytes_match_the_text_path(monkeypatch, layout, body):
    import proxy_addon.serializers.emitter as emitter

    text = Cassette(interactions=[Interaction(response=Response(body=body))])
    expected = text.dumps(layout).encode("utf-8")
    monkeypatch.setattr(emitter, "_BIG", 4)
    as_bytes = _with_long_bodies_as_bytes(text)
    assert _as_bytes_writes(as_bytes, layout) == expected
    assert _as_bytes_writes(text, layout) == expected


def test_long_bytes_that_are_not_utf8_are_still_binary(monkeypatch):
    import proxy_addon.serializers.emitter as emitter

    body = b"data: \xff\xfe\n\n" * 10
    monkeypatch.setattr(emitter, "_BIG", 4)
    cassette = Cassette(interactions=[Interaction(response=Response(body=bytearray(body)))])
    written = _as_bytes_writes(cassette, LAYOUTS["indent4"])
    assert b"!!binary" in written
    assert loads(written).interactions[0].response.body == body
