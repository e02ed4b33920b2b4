"""TLS contexts for the direct front, with the certificates mitmproxy would present."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import ctx

log = logging.getLogger("vcr-proxy")


def _name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


KEPT = 100  # contexts kept, as mitmproxy's CertStore keeps certificates (its STORE_CAP)


class Certificates:
    """One context per (CONNECT host, SNI): a handful of LLM hosts, made once each. A client
    may send any number of server names; the oldest contexts past KEPT are let go of."""

    def __init__(self) -> None:
        self.contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}

    def context(self, host: str, sni: str | None = None) -> ssl.SSLContext:
        key = (host, sni)
        made = self.contexts.get(key)
        if made is None:
            made = self.contexts[key] = self._make(host, sni)
            while len(self.contexts) > KEPT:
                del self.contexts[next(iter(self.contexts))]
        return made

    def _make(self, host: str, sni: str | None) -> ssl.SSLContext:
        certstore = ctx.master.addons.get("tlsconfig").certstore
        # An SNI other than the CONNECT host is refused on the first request (routing's
        # host_mismatch), in an answer the client can read only if the certificate names both.
        names = [host] + ([sni] if sni and sni != host else [])
        entry = certstore.get_cert(host, [_name(name) for name in names])
        chain = entry.cert.to_pem() + b"".join(cert.to_pem() for cert in entry.chain_certs)
        key = entry.privatekey.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # HTTP/1.1 only: a client that offers h2 as well speaks HTTP/1.1 here.
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._sni_callback(host)
        # ssl loads keys from files only: the key (mitmproxy's CA key, already in its confdir)
        # is in a private folder for the moment it takes to read it.
        with tempfile.TemporaryDirectory(prefix="vcr-front-") as folder:
            path = os.path.join(folder, "leaf.pem")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(chain + key)
            context.load_cert_chain(path)
        return context

    def _sni_callback(self, host: str):
        def chosen(ssl_object, server_name, _context) -> None:
            ssl_object.vcr_sni = server_name
            # Any other spelling too ("OpenRouter.ai.", a trailing dot): a client checks the
            # certificate against the name it sent, and mitmproxy's certificate names it.
            if server_name and server_name != host:
                ssl_object.context = self.context(host, server_name)
        return chosen


def quiet_server_names() -> None:
    """ssl decodes a client's server name (SNI) as ASCII before any sni_callback runs; one that
    is not ASCII fails the handshake, as it should, but Python prints the decoding error, with
    a traceback, as an "Exception ignored". That one becomes a line of debug log; any other
    goes to the hook there was."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        if (isinstance(error, UnicodeDecodeError) and isinstance(unraisable.object, bytes)
                and error.object == unraisable.object):
            log.debug("vcr-proxy: direct front: a TLS client sent a server name that is not "
                      "ASCII; its handshake was refused")
            return
        previous(unraisable)

    sys.unraisablehook = hook
