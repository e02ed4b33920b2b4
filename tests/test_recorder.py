"""Decoding recorded bodies: every content coding a provider may send, whole and streamed."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from proxy_addon.recorder import DecodeError, _decoded_arrivals, decode_body

try:
    from compression import zstd
except ImportError:
    from backports import zstd

BODY = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n' * 500

ENCODED = {
    "gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
    "deflate-raw": zlib.compress(BODY)[2:-4],
    "br": brotli.compress(BODY),
    "zstd": zstd.compress(BODY),
    "identity": BODY,
}


@pytest.mark.parametrize("name", list(ENCODED))
def test_each_coding_decodes_whole_and_in_chunks(name):
    encoding = name.split("-")[0]
    blob = ENCODED[name]
    assert decode_body(blob, encoding) == BODY
    arrivals = [(size, float(n)) for n, size in enumerate(range(7, len(blob), 97))] + [(len(blob), 99.0)]
    mapped = _decoded_arrivals(arrivals, blob, encoding)
    assert mapped[-1] == (len(BODY), 99.0)
    assert [size for size, _ in mapped] == sorted(size for size, _ in mapped)


def test_stacked_and_unknown_codings():
    assert decode_body(gzip.compress(brotli.compress(BODY)), "br, gzip") == BODY
    with pytest.raises(DecodeError, match="unknown Content-Encoding 'compress'"):
        decode_body(BODY, "compress")
    with pytest.raises(DecodeError, match="cannot decode gzip"):
        decode_body(b"not gzip", "gzip")
