"""Hostile upstreams and hostile cassettes: a compression bomb, an endless stream and an alias
bomb are refused with a one-line reason, long before they take the memory they claim."""

from __future__ import annotations

import gc
import tracemalloc
import zlib

import brotli
import pytest

from proxy_addon.recorder import (DEFAULT_MAX_BODY, BodyTooLarge, Exchange, PendingRecording,
                                  decode_body, to_interaction)

try:
    from compression import zstd
except ImportError:
    from backports import zstd

GiB = 1 << 30
MiB = 1 << 20
ZEROS = bytes(MiB)


def gzip_bomb(decoded: int = GiB) -> bytes:
    """`decoded` bytes of zeros as gzip, built a megabyte at a time (1 GiB is ~1 MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(ZEROS) for _ in range(decoded // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


def exchange(body: bytes, encoding: str) -> Exchange:
    return Exchange(method="POST", url="https://api.openai.com/v1/chat/completions",
                    request_headers=[("Content-Type", "application/json")], request_body=b"{}",
                    http_version="HTTP/1.1", status_code=200, reason="OK",
                    response_headers=[("Content-Encoding", encoding),
                                      ("Content-Type", "text/event-stream")],
                    response_body=body, started=0.0, headers_at=0.1, ended=0.2,
                    arrivals=[(len(body) // 2, 0.15), (len(body), 0.2)])


def peak_while(function) -> int:
    """Peak bytes Python allocated while `function` ran."""
    gc.collect()
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_1_gib_gzip_bomb_is_refused_without_ever_being_decoded(bomb):
    assert len(bomb) < 2 * MiB
    limit = 16 * MiB

    def record():
        with pytest.raises(BodyTooLarge, match=r"more than vcr_max_body \(16777216 bytes.*raise vcr_max_body"):
            to_interaction(exchange(bomb, "gzip"), 0, max_body=limit)

    peak = peak_while(record)
    assert peak < 4 * limit, f"decoding the bomb took {peak / MiB:.0f} MiB"


def test_the_default_limit_bounds_the_bomb_too(bomb):
    def decode():
        with pytest.raises(BodyTooLarge, match="raise vcr_max_body"):
            decode_body(bomb, "gzip")

    peak = peak_while(decode)
    assert peak < 1.5 * DEFAULT_MAX_BODY, f"{peak / MiB:.0f} MiB"  # the bomb claims 1024


@pytest.mark.parametrize("coding", ["br", "zstd", "deflate", "gzip, br"])
def test_every_coding_stops_at_the_limit(coding):
    decoded = 256 * MiB
    if coding == "br":
        compressor = brotli.Compressor(quality=1)
        blob = b"".join([compressor.process(ZEROS) for _ in range(decoded // MiB)] + [compressor.finish()])
    elif coding == "zstd":
        compressor = zstd.ZstdCompressor()
        blob = b"".join([compressor.compress(ZEROS) for _ in range(decoded // MiB)] + [compressor.flush()])
    elif coding == "deflate":
        compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
        blob = b"".join([compressor.compress(ZEROS) for _ in range(decoded // MiB)] + [compressor.flush()])
    else:  # stacked: brotli of a gzip bomb; the gzip stage's own output is bounded as well
        blob = brotli.compress(gzip_bomb(decoded), quality=1)
    limit = 8 * MiB

    def decode():
        with pytest.raises(BodyTooLarge):
            decode_body(blob, coding, limit)

    assert peak_while(decode) < 4 * limit


def test_a_body_just_under_the_limit_is_still_recorded():
    body = b"data: " + b"x" * (MiB - 100) + b"\n\n"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    blob = compressor.compress(body) + compressor.flush()
    interaction, timing = to_interaction(exchange(blob, "gzip"), 3, max_body=len(body))
    assert interaction.response.body == body.decode() and interaction.response.uncompressed
    with pytest.raises(BodyTooLarge):
        to_interaction(exchange(blob, "gzip"), 3, max_body=len(body) - 1)


def test_an_endless_stream_keeps_flowing_but_its_copy_stops_at_the_limit():
    recording = PendingRecording(writer=None, id=0, url="https://x/", started=0.0, limit=MiB)
    chunk = b"data: " + b"y" * 16000 + b"\n\n"
    passed = 0

    def stream():
        nonlocal passed
        for _ in range(scaled_chunks):
            passed += len(recording.on_chunk(chunk))

    scaled_chunks = 64 * MiB // len(chunk)
    peak = peak_while(stream)
    assert passed == scaled_chunks * len(chunk) == recording.received
    assert recording.over_limit and len(recording.copy) == 0 and len(recording.arrivals) == 0
    assert peak < 4 * MiB
    with pytest.raises(BodyTooLarge, match=r"passed vcr_max_body \(1048576 bytes.*raise vcr_max_body"):
        recording.body()


def test_discard_lets_go_of_an_aborted_streams_copy_at_once():
    recording = PendingRecording(writer=None, id=0, url="https://x/", started=0.0)
    tracemalloc.start()
    try:
        for _ in range(32):
            recording.on_chunk(b"z" * MiB)
        held = tracemalloc.get_traced_memory()[0]
        recording.discard()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held > 32 * MiB and after < held - 30 * MiB
    assert recording.copy == bytearray() and len(recording.arrivals) == 0
    assert recording.body() == bytearray()  # discarded is empty, not over the limit


# Alias bombs -----------------------------------------------------------------------------


def aliased_cassette(entries: int, uses: int, plain: int = 0, values: int = 1) -> bytes:
    """A cassette whose first interaction anchors a headers mapping of `entries` names (each
    a list of `values`), which `uses` later interactions alias; `plain` more without any."""
    lines = ["version: 2", "interactions:"]

    def item(n: int, headers: list[str]) -> None:
        lines.extend([f"    - id: {n}", "      request:", *headers, "        url: https://x/",
                      "        method: GET", "      response:", "        code: 200"])

    item(0, ["        headers: &h"] + [f"          X-{i}: [" + ", ".join(["a"] * values) + "]"
                                       for i in range(entries)])
    for n in range(uses):
        item(1 + n, ["        headers: *h"])
    for n in range(plain):
        item(1 + uses + n, [])
    return ("\n".join(lines) + "\n").encode()


def body_bomb(size: int = MiB, uses: int = 300) -> bytes:
    """The measured case: one body of `size` anchored, and aliased by `uses` interactions."""
    lines = ["version: 2", "interactions:"]
    for n in range(uses + 1):
        body = "&b '" + "x" * size + "'" if n == 0 else "*b"
        lines += [f"    - id: {n}", "      request:", "        url: https://x/", "        method: GET",
                  "      response:", f"        body: {body}", "        code: 200"]
    return ("\n".join(lines) + "\n").encode()


def test_an_alias_bomb_is_refused_as_go_refuses_it(tmp_path):
    from proxy_addon.cassette import load
    from proxy_addon.errors import CassetteError

    path = tmp_path / "bomb.yaml"
    path.write_bytes(aliased_cassette(entries=2000, uses=300))
    with pytest.raises(CassetteError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "\n" not in message
    assert "document contains excessive aliasing" in message and "re-record" in message


def test_the_alias_budget_is_gos(go_oracle):
    """Near yaml.v3's thresholds (more than 100 aliased decodes, more than 1000 in all, the
    ratio) the verdict is Go's, document for document."""
    from proxy_addon.cassette import loads
    from proxy_addon.errors import CassetteError

    cases = [(entries, uses, plain, values) for entries in (1, 5, 40, 300)
             for uses in (1, 30, 99, 101, 120, 400) for plain in (0, 10, 100) for values in (1, 3)]
    refused = 0
    for case in cases:
        data = aliased_cassette(*case)
        status, _, answer = go_oracle.round_trip(data)
        go_refuses = status == 1 and b"excessive aliasing" in answer
        try:
            loads(data)
            we_refuse = False
        except CassetteError as error:
            we_refuse = "excessive aliasing" in str(error)
        assert we_refuse == go_refuses, case
        refused += go_refuses
    assert 0 < refused < len(cases)


def test_a_body_aliased_300_times_loads_without_expanding(go_oracle):
    """Go accepts it (and would save it as a 315 MB file); loading shares the one body."""
    from proxy_addon.cassette import loads

    data = body_bomb()
    status, _, _ = go_oracle.round_trip(data)
    assert status == 0

    def load():
        cassette = loads(data)
        assert cassette.aliases == 300 and len(cassette.interactions) == 301

    assert peak_while(load) < 20 * len(data)


def test_new_episodes_never_expands_an_aliased_cassette(tmp_path):
    """What wrote a 315 MB file: appending to a cassette Go accepts but that is not Go's
    bytes. It is refused, untouched, without expanding it even in memory."""
    from proxy_addon.errors import CassetteError
    from proxy_addon.persisters.filesystem import CassetteWriter
    from proxy_addon.serializers.emitter import INDENT4

    path = tmp_path / "aliased.yaml"
    data = body_bomb()
    path.write_bytes(data)

    def open_writer():
        with pytest.raises(CassetteError, match=r"uses YAML aliases \(300\).*re-record") as caught:
            CassetteWriter(path, INDENT4, fresh=False)
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)

    assert peak_while(open_writer) < 20 * len(data)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["aliased.yaml"]
