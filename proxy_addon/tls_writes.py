"""A large write handed to OpenSSL in pieces, so that its buffer stays small for good.

mitmproxy encrypts what it sends with pyOpenSSL over memory BIOs: `sendall(data)` encrypts the
whole of `data` into the outgoing BIO, which is then read out 64 KiB at a time. A 50 MB request
body (recorded, it goes to the upstream whole) grew that BIO's buffer to 60 MB, and OpenSSL
never shrinks a memory BIO's buffer: the upstream connection held those 60 MB for as long as it
stayed open, each one of them. Encrypting a piece and reading it out before the next keeps the
buffer at one piece; the bytes on the wire are the same (TLS records hold 16 KiB, a piece is
four of them). It also keeps each SSL_write under OpenSSL's 2 GiB limit.
"""

from __future__ import annotations

from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.tls import TLSLayer
from OpenSSL import SSL

PIECE = 1 << 16

_original = TLSLayer.send_data


def install() -> None:
    """Route TLSLayer.send_data through _send_in_pieces (once per process)."""
    if TLSLayer.send_data is not _send_in_pieces:
        TLSLayer.send_data = _send_in_pieces


def _send_in_pieces(self: TLSLayer, data: bytes) -> layer.CommandGenerator[None]:
    if len(data) <= PIECE:
        yield from _original(self, data)
        return
    view = memoryview(data)
    for start in range(0, len(view), PIECE):
        try:
            self.tls.sendall(view[start:start + PIECE])
        except (SSL.ZeroReturnError, SSL.SysCallError):
            # As mitmproxy does: the peer may still be sending; the rest is not sent.
            break
        yield from self.tls_interact()
    yield from self.tls_interact()
