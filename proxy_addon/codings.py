"""Content codings (gzip, deflate, br, zstd) undone incrementally, within a size limit.

Responses are decoded as a Go client's transport decodes them; request bodies are decoded
before anything reads them (credentials hide in a compressed body as well as in a plain one).
A stored body of an older cassette may still be compressed: `sniff` names its coding.
"""

from __future__ import annotations

import zlib

# The default of the addon's `vcr_max_body`: the most a recorded body may take, raw or decoded.
DEFAULT_MAX_BODY = 256 << 20

# Compressed input handed to a decoder at once: small, so that a bomb's output is bounded by
# the decoder's max_length long before its input has all been read.
_INPUT_PIECE = 64 << 10
_OUTPUT_PIECE = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DecodeError(ValueError):
    pass


class BodyTooLarge(DecodeError):
    """A body past `vcr_max_body`: not recorded, and the message says how to raise the limit."""


def size_text(count: int) -> str:
    if count < 1 << 20:
        return f"{count} bytes"
    return f"{count} bytes = {count / (1 << 20):.4g} MiB"


def _zlib_wrapped(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and int.from_bytes(head[:2], "big") % 31 == 0


class Decoder:
    """One content coding undone incrementally, its total output bounded by `limit`.

    Each library is asked for at most what is still allowed (+1 to see the limit crossed), so
    a gzip bomb of 1 GB never exists in memory: it fails after `limit` bytes. gzip bodies of
    several members are decoded whole, as Go's gzip.Reader (multistream) and mitmproxy do.
    """

    def __init__(self, coding: str, head: bytes, limit: int, what: str = "response body"):
        self.limit, self.total = limit, 0
        self.coding, self.what = coding, what
        if coding in ("gzip", "x-gzip"):
            self.kind, self.state = "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":  # servers send both zlib-wrapped and raw deflate
            self.kind = "zlib"
            self.state = zlib.decompressobj(zlib.MAX_WBITS if _zlib_wrapped(head) else -zlib.MAX_WBITS)
        elif coding == "br":
            import brotli

            self.kind, self.state = "br", brotli.Decompressor()
        elif coding == "zstd":  # the module mitmproxy itself uses (Python 3.14's, or its backport)
            try:
                from compression import zstd
            except ImportError:
                from backports import zstd

            self.kind, self.state = "zstd", zstd.ZstdDecompressor()
        else:
            raise DecodeError(f"unknown Content-Encoding {coding!r}")

    def _room(self) -> int:
        # Small outputs too: each is copied into the body, and a large one would be held twice.
        return min(self.limit - self.total + 1, _OUTPUT_PIECE)

    def _count(self, out: bytes) -> bytes:
        self.total += len(out)
        if self.total > self.limit:
            raise BodyTooLarge(f"the {self.coding} {self.what} decodes to more than vcr_max_body "
                               f"({size_text(self.limit)}); raise vcr_max_body (bytes) to record it")
        return out

    def feed(self, data) -> list[bytes]:
        """The output for the next piece of input, in pieces each within the limit."""
        outputs = []
        for start in range(0, len(data), _INPUT_PIECE):
            outputs += self._feed(memoryview(data)[start:start + _INPUT_PIECE])
        return outputs

    def _feed(self, data) -> list[bytes]:
        outputs = []
        state = self.state
        if self.kind in ("gzip", "zlib"):
            while True:
                if state.eof:
                    rest = state.unused_data + bytes(data)
                    if self.kind != "gzip" or not rest.startswith(_GZIP_MAGIC):
                        break  # what follows the last member is ignored, as Go ignores it
                    state = self.state = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member
                    data = rest
                out = self._count(state.decompress(data, self._room()))
                data = state.unconsumed_tail
                if out:
                    outputs.append(out)
                if not data and not out and not (state.eof and state.unused_data):
                    break
        elif self.kind == "br":
            if state.is_finished():
                return outputs
            outputs.append(self._count(state.process(bytes(data), output_buffer_limit=self._room())))
            while not state.can_accept_more_data():
                outputs.append(self._count(state.process(b"", output_buffer_limit=self._room())))
        else:
            if state.eof:
                return outputs
            outputs.append(self._count(state.decompress(data, self._room())))
            while not state.eof and not state.needs_input:
                outputs.append(self._count(state.decompress(b"", self._room())))
        return outputs


def _decode_all(data, coding: str, limit: int, what: str) -> bytes | bytearray:
    if coding == "identity":
        return data
    try:
        decoder = Decoder(coding, bytes(data[:2]), limit, what)
        body = bytearray()
        for start in range(0, len(data), _INPUT_PIECE):
            for out in decoder.feed(memoryview(data)[start:start + _INPUT_PIECE]):
                body += out
        return body
    except DecodeError:
        raise
    except Exception as error:  # each library has its own error type
        raise DecodeError(f"cannot decode {coding} {what}: {error}") from None


def codings(encoding: str) -> list[str]:
    """Content-Encoding's codings in the order they are undone."""
    return list(reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]))


def decode_body(body: bytes | bytearray, encoding: str, limit: int = DEFAULT_MAX_BODY,
                what: str = "response body") -> bytes | bytearray:
    """The body a Go client sees after its transport (or the SDK) undoes Content-Encoding.

    BodyTooLarge (a DecodeError) once any stage's output passes `limit` bytes.
    """
    if len(body) > limit:
        raise BodyTooLarge(f"the {what} is larger than vcr_max_body ({size_text(limit)}); "
                           "raise vcr_max_body (bytes) to record it")
    for coding in codings(encoding):
        body = _decode_all(body, coding, limit, what)
    return body


def undo_stored_coding(body: bytes, limit: int = DEFAULT_MAX_BODY) -> tuple[str, bytes] | None:
    """A stored binary body that is compressed: its coding and the decoded bytes; None otherwise.
    An older release recorded compressed request bodies as they were sent, with no
    Content-Encoding header. A coding known by its magic bytes counts whatever it decodes to
    (binary too: a key's shape is found in bytes as well). Brotli and raw deflate have no magic
    bytes and are found by trying: such a guess counts if it gives UTF-8 text, or if it decodes
    past `limit` (random bytes do not decode to that much; a bomb with a key in front does).
    BodyTooLarge if a body decodes to more than `limit`."""
    if body.startswith(_GZIP_MAGIC):
        known = "gzip"
    elif body.startswith(_ZSTD_MAGIC):
        known = "zstd"
    elif _zlib_wrapped(body[:2]):
        known = "deflate"
    else:
        known = None
    for coding in (known,) if known else ("br", "deflate"):
        try:
            data = bytes(decode_body(body, coding, limit, "stored request body"))
            if not known:
                data.decode("utf-8")
        except BodyTooLarge:
            raise
        except (DecodeError, UnicodeDecodeError):
            continue
        return coding, data
    return None
