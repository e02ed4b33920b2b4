"""The fast reader (serializers/fastload.py) against the PyYAML path it stands in for.

For any bytes, `load` must give what it gave before the fast reader existed: the same
Cassette field for field (types, header order, layout, notes, alias count) or the same error.
The fast reader may decline, never differ. `fast` below runs `load_text` with the PyYAML path
made unreachable, so that a result from it is proof the fast reader gave it; `pyyaml` runs it
with the fast reader switched off.
"""

from __future__ import annotations

import os
import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addon.cassette import Cassette, Interaction, Request, Response
from proxy_addon.durations import format_duration, parse_duration
from proxy_addon.errors import CassetteError
from proxy_addon.serializers import fastload, loader
from proxy_addon.serializers.emitter import LAYOUTS
from proxy_addon.serializers.goresolve import STR, resolve

from .conftest import CORPUS, corpus_files
from .strategies import TRICKY_PIECES, cassettes, durations

EXAMPLES = int(os.environ.get("VCR_EXAMPLES", "250"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
NAME = "test.yaml"


class _PyYAMLReached(Exception):
    pass


def _unreachable(data, name):
    raise _PyYAMLReached


def fast(data: bytes) -> Cassette | None:
    """What load gives through the fast reader alone; None when it declines."""
    with mock.patch.object(loader, "_compose_and_decode", _unreachable):
        try:
            return loader.load_text(data, NAME)
        except _PyYAMLReached:
            return None


def pyyaml(data: bytes) -> Cassette:
    """What load gives without the fast reader (raises CassetteError as it always did)."""
    with mock.patch.object(loader, "read_go_yaml", lambda data, decoder: None):
        return loader.load_text(data, NAME)


def snapshot(cassette: Cassette) -> tuple:
    # repr tells 1 from True and "x" from b"x", and keeps the order of header maps.
    return (repr(cassette.interactions), cassette.version, cassette.layout, cassette.ignored,
            cassette.aliases)


def agree(data: bytes) -> Cassette | None:
    """The fast reader's cassette, after checking it against PyYAML's (or None: declined)."""
    got = fast(data)
    try:
        expected = pyyaml(data)
    except CassetteError as error:
        assert got is None, f"the fast reader accepted what PyYAML's path refuses: {error}"
        return None
    if got is not None:
        assert snapshot(got) == snapshot(expected)
    return got


# The corpus -----------------------------------------------------------------------------

# Corpus files the fast reader may leave to PyYAML, with the reason. None today.
DECLINED: dict[str, str] = {}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_cassette_reads_the_same_by_the_fast_reader(path):
    got = agree(path.read_bytes())
    name = str(path.relative_to(CORPUS))
    assert (got is None) == (name in DECLINED), name


def test_load_takes_the_fast_path_and_falls_back(tmp_path):
    from proxy_addon.cassette import load

    path = corpus_files()[0]
    with mock.patch.object(loader, "_compose_and_decode", _unreachable):
        assert load(path).interactions
    # An anchor is beyond the fast reader: the same file with one reads through PyYAML.
    text = path.read_text().replace("    proto: ", "    proto: &p ", 1)
    anchored = tmp_path / "anchored.yaml"
    anchored.write_text(text)
    assert fast(text.encode()) is None
    assert load(anchored).interactions[0].request.proto == load(path).interactions[0].request.proto


# What our emitter writes ------------------------------------------------------------------

@SETTINGS
@given(cassette=cassettes(), layout=st.sampled_from(list(LAYOUTS.values())))
def test_fast_reader_agrees_on_anything_the_emitter_writes(cassette, layout):
    agree(cassette.dumps(layout).encode("utf-8", "surrogatepass"))


_MULTILINE_KEY = re.compile("[\r\n\x85\u2028\u2029]")


def _plain_names(cassette: Cassette) -> Cassette:
    # yaml.v3 writes a map key with a line break, or longer than 128 bytes, as a complex key
    # ("? key"), which the fast reader leaves to PyYAML; HTTP names never are either.
    for interaction in cassette.interactions:
        for part in (interaction.request, interaction.response):
            for field in ("trailer", "headers", "form"):
                if hasattr(part, field):
                    setattr(part, field, {_MULTILINE_KEY.sub("", k)[:40]: v
                                          for k, v in getattr(part, field).items()})
    return cassette


@SETTINGS
@given(cassette=cassettes(readable=True).map(_plain_names),
       layout=st.sampled_from(list(LAYOUTS.values())))
def test_fast_reader_takes_what_reads_back_faithfully(cassette, layout):
    # Declining is only allowed for what the fast reader must not guess at: a file that does
    # not read back as written (yaml.v3 writes a few such strings), or that holds U+2028 or
    # U+2029, which YAML reads as line breaks.
    data = cassette.dumps(layout).encode("utf-8")
    got = agree(data)
    if got is None and "\u2028".encode() not in data and "\u2029".encode() not in data:
        try:
            back = pyyaml(data)
        except CassetteError:
            return
        assert back != cassette, "declined a file that PyYAML reads back as written"


# Hostile text: random edits of real and generated files ---------------------------------

_SMALL_CORPUS = sorted(corpus_files(), key=lambda p: p.stat().st_size)[:12]
_BINARY_CORPUS = [p for p in corpus_files() if b"!!binary" in p.read_bytes()][:1]
TOKENS = [" ", "  ", "#", " #", " # c", ": ", ":", "- ", "-", "? ", "&a ", "*a", "!!str ",
          "!!binary ", "!!int ", "!x ", "|", "|-", "|+", "|2", "|9", ">", "'", "''", '"', '\\',
          "\\x", "\\u00e9", "\\ud800", "\\'", "{", "}", "[", "]", "[]", "{}", ",", "\t", "\r",
          "\ufeff", "\u2028", "\x85", "\x00", "\x7f", "---", "...", "%YAML 1.1", "~", "null",
          "0", "-1", "007", "0x1F", "1e3", "1_0", "true", "yes", "1s", "-1s", "1.5h", "<<", "é"]
VALUES = ["", "~", "null", "''", '""', "[]", "{}", "|", "|+", "|-", "|4", ">", "true", "yes", "0",
          "1.5", "-", "0s", "1h2m", "1.2.3", "&x a", "*x", "!!binary aGk=", "!!binary |",
          '"\\t"', "'a''b'", "a # b", "[a]", "{a: b}", "2001-12-14", "010", "0x1F", "1_000", "+5"]


@st.composite
def mutated(draw) -> bytes:
    if draw(st.booleans()):
        path = draw(st.sampled_from(_SMALL_CORPUS + _BINARY_CORPUS))
        text = path.read_bytes().decode("utf-8")
    else:
        text = draw(cassettes(readable=True)).dumps(draw(st.sampled_from(list(LAYOUTS.values()))))
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        edit = draw(st.integers(0, 8))
        if edit == 0:
            del lines[at]
        elif edit == 1:
            lines.insert(at, line)
        elif edit == 2 and at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], line
        elif edit == 3:
            lines[at] = " " * draw(st.integers(1, 3)) + line
        elif edit == 4:
            lines[at] = line[draw(st.integers(1, 3)):]
        elif edit == 5:
            position = draw(st.integers(0, len(line)))
            lines[at] = line[:position] + draw(st.sampled_from(TOKENS)) + line[position:]
        elif edit == 6 and ": " in line:
            lines[at] = line[:line.index(": ") + 2] + draw(st.sampled_from(VALUES))
        elif edit == 7:
            lines.insert(at, draw(st.sampled_from(["", " ", "    ", "# note", "---", "..."])))
        else:
            lines[at] = line[:draw(st.integers(0, len(line)))]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data


@SETTINGS
@given(data=mutated())
def test_fast_reader_declines_or_agrees_on_edited_files(data):
    agree(data)


# Pieces ----------------------------------------------------------------------------------

def one_body(body_text: str) -> bytes:
    return ("---\nversion: 2\ninteractions:\n  - id: 0\n    request:\n        body: " + body_text
            + "\n        url: https://a/\n        method: GET\n    response:\n        code: 200\n"
            ).encode("utf-8")


@pytest.mark.parametrize("escape", list("0abtnvfre \"/\\N_LP") + ["x41", "xe9", "u00e9", "u2028",
                                                                    "U0001F44B", "x00"])
def test_every_escape_libyaml_knows(escape):
    data = one_body(f'"a\\{escape}b"')
    assert fast(data) is not None
    assert agree(data) is not None


@pytest.mark.parametrize("escape", ["'", "q", "x4", "ud800", "U00110000", "\t", "", "x4g"])
def test_escapes_libyaml_refuses_are_declined(escape):
    data = one_body(f'"a\\{escape}z"')
    assert fast(data) is None
    agree(data)


@pytest.mark.parametrize("text", [
    "&anchor x", "*alias", "!!str x", "!custom x", "x # comment", "[a]", "{a: b}", "a\n          b",
    "'a\n          b'", '"a\n          b"', '"a\\\n          b"', ">\n          folded",
    "'it's'", "a: b", "a:", "- a", "? a", "%x", "@x", "`x", "x ", " x", "|2 # c", "|10",
    "x\r", "\ufeffx", "x\u2028y", "x\x85y", "a\tb", "'a\tb'", "|\n          \ta",
])
def test_what_go_does_not_write_is_declined(text):
    data = one_body(text)
    assert fast(data) is None
    agree(data)


@pytest.mark.parametrize("text", [
    "|\n          a\n\n          b\n", "|-\n          a\n", "|+\n          a\n\n\n", "|4\n              a\n",
    "|2-\n            a\n", "|-2\n            a\n", "|+\n\n\n", "|\n", "!!binary aGk=",
    "!!binary |\n          aGVs\n          bG8=\n", "!!binary /w==", "null", "~", "''", '""',
    "'a''b'", '"\\"q\\""', "-1", ":a", "?a", "a:b", "a#b", "http://x/?a=b&c=d", "é 中文",
    "\U0001F44B", "\xa0x\xa0",
])
def test_what_go_writes_is_read_the_same(text):
    data = one_body(text)
    assert fast(data) is not None, text
    assert agree(data) is not None


@pytest.mark.parametrize("lines", [["a", "", "b"], ["a", "  "], ["a", "    "], ["a", "      "],
                                   ["a", "     ", "b"], ["a  ", "b"], ["a", "b", ""], ["a", "b  "]])
@pytest.mark.parametrize("header", ["|", "|-", "|+", "|2", "|2+"])
def test_lines_of_spaces_in_a_block_are_declined(header, lines):
    # Go never writes them: a line of spaces means a trailing space, which it double-quotes.
    # What YAML makes of one depends on how many spaces and where, so they are left to PyYAML.
    text = header + "".join("\n" + ("          " + line if line.strip() else line) for line in lines)
    data = one_body(text)
    if any(line.endswith(" ") for line in lines):
        assert fast(data) is None
    agree(data)


@pytest.mark.parametrize("text", ["0", "-1", "200", "9223372036854775807", "-9223372036854775808",
                                  "007", "010", "08", "0o17", "0x1F", "0b11", "1_000", "+5", "-0",
                                  "1e3", "1.0", "1.5", ".5", "true", "null", "~", "''", '"1"', "'1'",
                                  "9223372036854775808", "1:20", "!!int 3", "!!binary MQ==", "|\n     1",
                                  "2001-12-14", "0s", "y", "abc"])
@pytest.mark.parametrize("field", ["code", "content_length", "id", "uncompressed", "duration"])
def test_typed_fields_read_as_the_decoder_reads_them(field, text):
    good = one_body("x").decode()
    if field == "id":
        data = good.replace("  - id: 0", f"  - id: {text}")
    elif field == "content_length":
        data = good.replace("        body: x", f"        content_length: {text}")
    else:
        data = good.replace("        code: 200", f"        code: 200\n        {field}: {text}"
                            if field != "code" else f"        code: {text}")
    got = agree(data.encode())
    if text in ("0", "-1", "200") and field != "uncompressed" and field != "duration":
        assert got is not None


@pytest.mark.parametrize("field, value", [("headers", "[]"), ("form", "[]"), ("trailer", "[]"),
                                          ("transfer_encoding", "{}"), ("headers", "{}"),
                                          ("transfer_encoding", "[]"), ("headers", "null"),
                                          ("transfer_encoding", "~"), ("body", "[]"), ("body", "{}")])
def test_empty_collections_of_the_wrong_kind_are_declined(field, value):
    data = one_body("x").decode().replace("        url:", f"        {field}: {value}\n        url:")
    if field == "body":
        data = data.replace("        body: x\n", "")
    got = agree(data.encode())
    assert (got is not None) == ((field, value) in (("headers", "{}"), ("transfer_encoding", "[]")))


@pytest.mark.parametrize("header", ["|", "|-", "|+", "|2", "|2+", "!!binary |"])
@pytest.mark.parametrize("tail", ["", "\n", "\n\n", "  \n", "\n          b\n"])
def test_a_block_at_the_end_of_the_file(header, tail):
    good = one_body("x").decode()
    data = good.replace("        body: x\n", "").replace("        code: 200\n", "        code: 200\n"
                                                          f"        body: {header}\n          aGk=\n")
    agree((data + tail).encode())


def test_duplicate_and_unknown_keys_are_declined():
    good = one_body("x").decode()
    for text in (good.replace("        url:", "        body: y\n        url:"),
                 good.replace("        url:", "        extra: y\n        url:"),
                 good.replace("    response:", "    id: 1\n    response:"),
                 good + "  - id: 0\n    request:\n        url: a\n        method: b\n    response:\n"
                 "        code: 1\n"):
        assert fast(text.encode()) is None
        agree(text.encode())


def test_headers_sequences_and_empty_collections():
    cassette = Cassette(interactions=[Interaction(
        id=7, request=Request(url="u", method="GET", transfer_encoding=["chunked"],
                              headers={"": ["a"], "null": [], "X-1": ["", "~", "1", "a\nb\n"]},
                              form={"q": ["1:20", "yes"]}, trailer={"T": ["t"]}),
        response=Response(code=200, uncompressed=True, duration=755_667,
                          headers={"Content-Type": ["text/plain"]}, body=b"\xff\xfe"))])
    for layout in LAYOUTS.values():
        data = cassette.dumps(layout).encode()
        got = agree(data)
        assert got is not None and got == cassette and got.layout == layout


@settings(max_examples=EXAMPLES * 4)
@given(st.one_of(durations.map(format_duration),
                 st.text(alphabet="0123456789.nsuµμmh+-", max_size=24),
                 st.lists(st.sampled_from(["1", "12", "0", ".", "5", "h", "m", "s", "ms", "ns", "us",
                                           "µs", "999999999999", "1234567890123"]),
                          max_size=8).map("".join)))
def test_go_duration_is_parse_duration(text):
    got = fastload.go_duration(text)
    if got is not None:
        assert resolve(text)[0] == STR  # the decoder would take it as a duration string
        assert got == parse_duration(text)


@settings(max_examples=EXAMPLES * 4)
@given(st.integers(0, (1 << 63) - 1) | durations.filter(lambda ns: ns >= 0))
def test_go_duration_reads_every_duration_go_writes(nanoseconds):
    assert fastload.go_duration(format_duration(nanoseconds)) == nanoseconds


@pytest.mark.parametrize("piece", [p for p in TRICKY_PIECES if "\n" not in p and "\r" not in p])
def test_each_tricky_piece_as_a_header_value(piece):
    cassette = Cassette(interactions=[Interaction(
        request=Request(url="u", method="m", headers={"K": [piece, piece + "x", "x" + piece]}),
        response=Response(code=1, status=piece))])
    for layout in LAYOUTS.values():
        agree(cassette.dumps(layout).encode("utf-8", "surrogatepass"))
