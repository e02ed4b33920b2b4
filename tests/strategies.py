"""Hypothesis strategies for cassettes full of strings that YAML emitters get wrong."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import strategies as st

from proxy_addon.cassette import Cassette, Interaction, Request, Response

# Pieces that each trip one rule of yaml.v3's scalar analysis or resolution.
TRICKY_PIECES = [
    *"-?:,[]{}#&*!|>'\"%@`~=<",
    ": ", " #", "#", " ", "  ", "\t", "\r", "\n", "\r\n", "\n\n", " \n", "\n ", "\t\n",
    "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffe", "\x00", "\x07", "\x1b", "\x7f",
    "\x9f", "\\", "é", "ü", "中文", "\U0001F44B", "😀", "\U0010FFFF", "\ud7ff", "\ue000",
    "---", "...", "- ", "? ", "! ", "|", ">", "<<",
    "true", "True", "FALSE", "null", "Null", "NULL", "~", "yes", "No", "on", "OFF", "y", "n",
    "0", "1", "-1", "+1", "007", "08", "0x1F", "0X1f", "0o17", "0b101", "0b+1", "-0b1", "1_000",
    "_1", "1__0", "1e3", "1E+3", "1e400", "-1e-400", ".5", "._5", ".5_5", "+.5", "1.", "1.2.3",
    ".inf", "-.Inf", ".NaN", "1:20", "-1:20:30.5", "190:20:30", "9223372036854775807",
    "9223372036854775808", "18446744073709551616", "0xFFFFFFFFFFFFFFFFFF",
    "2001-12-14", "2001-2-3", "2001-02-30", "2000-02-29", "1900-02-29", "2001-12-14t21:59:43.10-05:00",
    "2001-12-14T21:59:43Z", "2001-12-14 21:59:43.10", "2001-12-14  1:2:3", "2001-12-14T24:00:00Z",
    "2001-12-14T21:59:43.1234567891Z", "2001-12-14T21:59:43+5:00",
    "200 OK", "application/json", "https://openrouter.ai/api/v1/chat/completions?key=x",
    'data: {"a":1}', '{"a": "b"}', "[DONE]",
]

tricky_text = st.lists(
    st.one_of(st.sampled_from(TRICKY_PIECES), st.text(max_size=4)), max_size=8
).map("".join)

long_lines = st.builds(lambda n, piece: piece * n, st.integers(20, 400),
                       st.sampled_from(["a b ", "x", '{"k": "v"},', "é ", "\t", "😀"]))

strings = st.one_of(
    tricky_text,
    tricky_text.map(lambda s: s + "\n"),
    st.builds(lambda s, k: s + "\n" * k, tricky_text, st.integers(2, 5)),
    st.builds(lambda a, b: a + "\n" + b, tricky_text, tricky_text),
    long_lines,
    st.text(max_size=30),
)


def go_reads_back(text: str) -> bool:
    """False for the strings yaml.v3 writes as literal blocks it cannot read back: a block
    that starts with a line break (the break is lost) or with a tab (a parse error)."""
    return "\n" not in text or text[0] not in "\t\r\n\x85\u2028\u2029"


readable_strings = strings.filter(go_reads_back)

# Go strings are bytes: some bodies are not UTF-8 at all.
invalid_utf8 = st.builds(lambda a, b: a.encode("utf-8") + b"\xff\xfe" + b,
                         st.text(max_size=10), st.binary(max_size=120))
bodies = st.one_of(strings, invalid_utf8)
readable_bodies = st.one_of(readable_strings, invalid_utf8)

def _go_orders_it(text: str) -> bool:
    # Go sorts map keys with unicode.IsLetter/IsDigit from its own Unicode tables (13.0 in
    # Go 1.19), Python with 15.0 or newer. Characters assigned since Unicode 3.2 may sort
    # differently between versions, so keys keep to those whose category has not changed.
    # And a run of 19 or more digits overflows Go's int64 while comparing, which makes its
    # order depend on the map's random iteration order: Go itself writes such maps
    # differently from run to run.
    return (all(unicodedata.ucd_3_2_0.category(c) == unicodedata.category(c) for c in text)
            and not re.search(r"\d{19,}", text))


header_names = st.one_of(
    st.sampled_from(["Content-Type", "Accept", "User-Agent", "X-Ratelimit-Limit-Requests",
                     "Openai-Processing-Ms", "X-1", "X-10", "X-9", "X-09", "a1b", "a10", "a1-",
                     "A", "a", "Z", "_", "-", "0", "00", "1", "é", "Ö", "x" * 140]),
    tricky_text.filter(_go_orders_it),
)
def header_maps(values=strings):
    return st.dictionaries(header_names, st.lists(values, max_size=3), max_size=6)

# Nanoseconds, weighted towards the unit boundaries of Go's Duration.String().
durations = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.sampled_from([0, 1, 999, 1000, 999_999, 1_000_000, 999_999_999, 10**9, 60 * 10**9,
                     3600 * 10**9, -1, 10_057_092_666, 755_667, 78_006_992_750]),
    st.integers(0, 10**12),
)
ints = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-2, 600))


@st.composite
def requests(draw, strings=strings, bodies=bodies) -> Request:
    header_maps_ = header_maps(strings)
    return Request(
        proto=draw(st.sampled_from(["HTTP/1.1", "HTTP/2.0", ""]) | strings),
        proto_major=draw(ints), proto_minor=draw(ints), content_length=draw(ints),
        transfer_encoding=draw(st.lists(strings, max_size=2)),
        trailer=draw(header_maps_), host=draw(strings), remote_addr=draw(strings),
        request_uri=draw(strings), body=draw(bodies), form=draw(header_maps_),
        headers=draw(header_maps_), url=draw(strings), method=draw(strings),
    )


@st.composite
def responses(draw, strings=strings, bodies=bodies) -> Response:
    header_maps_ = header_maps(strings)
    return Response(
        proto=draw(strings), proto_major=draw(ints), proto_minor=draw(ints),
        transfer_encoding=draw(st.lists(strings, max_size=2)), trailer=draw(header_maps_),
        content_length=draw(ints), uncompressed=draw(st.booleans()), body=draw(bodies),
        headers=draw(header_maps_), status=draw(strings), code=draw(ints),
        duration=draw(durations),
    )


@st.composite
def cassettes(draw, readable: bool = False) -> Cassette:
    """Cassettes of tricky strings; `readable` keeps to strings Go reads back as written."""
    text, body = (readable_strings, readable_bodies) if readable else (strings, bodies)
    count = draw(st.integers(0, 3))
    interactions = [Interaction(id=n, request=draw(requests(text, body)),
                                response=draw(responses(text, body)))
                    for n in range(count)]
    return Cassette(interactions=interactions)
