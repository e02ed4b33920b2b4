"""What a shell needs to send its clients through the proxy: proxy variables and a CA bundle.

The bundle holds the system's trusted roots plus mitmproxy's CA, so hosts the proxy does not
record (which it tunnels untouched) still verify against their real certificates.
"""

from __future__ import annotations

import shlex
import ssl
from pathlib import Path

CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO")
SHELLS = ("bash", "zsh", "sh", "fish", "powershell")
BUNDLE_NAME = "vcr-proxy-ca-bundle.pem"


def default_confdir() -> Path:
    return Path("~/.mitmproxy").expanduser()


def ensure_ca(confdir: Path) -> Path:
    """mitmproxy's CA certificate in `confdir`, created as mitmproxy would if missing."""
    certificate = confdir / "mitmproxy-ca-cert.pem"
    if not certificate.exists():
        from mitmproxy.certs import CertStore

        confdir.mkdir(parents=True, exist_ok=True)
        CertStore.from_store(confdir, "mitmproxy", 2048)
    return certificate


def system_roots() -> bytes:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    import certifi

    return Path(certifi.where()).read_bytes()


def ca_bundle(confdir: Path) -> Path:
    """The system roots plus mitmproxy's CA, rewritten when either changed."""
    from .persisters.filesystem import write_atomic

    ca = ensure_ca(confdir).read_bytes()
    data = system_roots().rstrip(b"\n") + b"\n" + ca
    bundle = confdir / BUNDLE_NAME
    if not bundle.exists() or bundle.read_bytes() != data:
        write_atomic(bundle, data)
    return bundle


def variables(host: str, port: int, confdir: Path) -> dict[str, str]:
    proxy = f"http://{host}:{port}"
    bundle = str(ca_bundle(confdir))
    values = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy,
              "http_proxy": proxy, "NO_PROXY": "localhost,127.0.0.1,::1",
              "no_proxy": "localhost,127.0.0.1,::1"}
    values.update({name: bundle for name in CA_VARIABLES})
    return values


def exports(values: dict[str, str], shell: str) -> str:
    if shell == "fish":
        lines = [f"set -gx {k} {shlex.quote(v)};" for k, v in values.items()]
    elif shell == "powershell":
        lines = [f"$env:{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in values.items()]
    else:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
