"""What a shell needs to send its clients through the proxy: proxy variables and a CA bundle,
and what it needs to steer the proxy: its control token.

The bundle holds the system's trusted roots plus mitmproxy's CA, so hosts the proxy does not
record (which it tunnels untouched) still verify against their real certificates.
"""

from __future__ import annotations

import os
import shlex
import ssl
from pathlib import Path

from .errors import CassetteError
from .files import read_regular, regular_problem

# AWS_CA_BUNDLE: boto3 and the AWS CLI prefer it to REQUESTS_CA_BUNDLE, and AWS set-ups often
# export one of their own, which does not hold the proxy's CA.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO", "AWS_CA_BUNDLE")
SHELLS = ("bash", "zsh", "sh", "fish", "powershell")
BUNDLE_NAME = "vcr-proxy-ca-bundle.pem"


def default_confdir() -> Path:
    """VCR_PROXY_CONFDIR (as `vcr-proxy start --confdir` reads it), else mitmproxy's own."""
    return Path(os.environ.get("VCR_PROXY_CONFDIR") or "~/.mitmproxy").expanduser()


# The files of `confdir` that vcr-proxy or mitmproxy read (mitmproxy opens them the ordinary
# way, so a FIFO there would block it for good, before it listens).
CA_FILES = ("mitmproxy-ca.pem", "mitmproxy-ca-cert.pem", "mitmproxy-dhparam.pem", BUNDLE_NAME)


def check_confdir(confdir: Path) -> None:
    """CassetteError (one line naming the file) if `confdir` cannot be mitmproxy's CA folder:
    something other than a folder, or holding a FIFO or a device where a CA file goes."""
    if confdir.exists() and not confdir.is_dir():
        raise CassetteError(confdir, "is not a folder; give a folder for mitmproxy's CA with "
                            "--confdir (it is made if missing)")
    for name in CA_FILES:
        problem = regular_problem(confdir / name)
        if problem:
            raise CassetteError(confdir / name, f"{problem}; mitmproxy's CA is kept there: "
                                "remove it, or give another folder with --confdir")


def ensure_ca(confdir: Path) -> Path:
    """mitmproxy's CA certificate in `confdir`; if missing, created with the files mitmproxy
    would write, but with an ECDSA P-256 key (create_ca). CassetteError (one line) for a
    confdir that cannot be used (check_confdir, or one that cannot be made)."""
    check_confdir(confdir)
    certificate = confdir / "mitmproxy-ca-cert.pem"
    if certificate.exists():
        return certificate
    import fcntl

    try:
        confdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CassetteError(confdir, f"cannot be made ({error.strerror}); give a folder you "
                            "can write for mitmproxy's CA with --confdir") from None
    # xdist workers start together: one creates the CA, the others wait and use it.
    descriptor = os.open(confdir / ".vcr-proxy-ca.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if not certificate.exists():
            create_ca(confdir)
    finally:
        os.close(descriptor)
    return certificate


def create_ca(confdir: Path, name: str = "mitmproxy") -> None:
    """A CA as mitmproxy's CertStore.create_store writes it, with a P-256 key instead of
    RSA-2048. mitmproxy signs each client's TLS handshake with the CA's key; an ECDSA signature
    costs a small fraction of an RSA-2048 one, which a test suite that builds a new client per
    test pays on every test (bench/suite.py)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from mitmproxy.certs import CA_EXPIRY, CERT_VALIDITY_OFFSET

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    start = datetime.datetime.now() + CERT_VALIDITY_OFFSET
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)
    ca = (x509.CertificateBuilder()
          .serial_number(x509.random_serial_number())
          .subject_name(subject).issuer_name(subject)
          .not_valid_before(start).not_valid_after(start + CA_EXPIRY)
          .public_key(key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
          .add_extension(usage, critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
          .sign(key, hashes.SHA256()))
    pem = ca.public_bytes(serialization.Encoding.PEM)
    secret = key.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    bundle = pkcs12.serialize_key_and_certificates(name.encode(), key, ca, None,
                                                   serialization.NoEncryption())
    public = pkcs12.serialize_key_and_certificates(name.encode(), None, ca, None,
                                                   serialization.NoEncryption())
    from .persisters.filesystem import write_atomic

    # The files that hold the key first, readable by their owner only; the certificate last,
    # since its presence is what says the CA exists.
    for suffix, data, mode in (("-ca.pem", secret + pem, 0o600), ("-ca.p12", bundle, 0o600),
                               ("-ca-cert.p12", public, 0o644), ("-ca-cert.cer", pem, 0o644),
                               ("-ca-cert.pem", pem, 0o644)):
        write_atomic(confdir / f"{name}{suffix}", data, mode=mode)


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

    ca = read_regular(ensure_ca(confdir))
    data = system_roots().rstrip(b"\n") + b"\n" + ca
    bundle = confdir / BUNDLE_NAME
    if not bundle.exists() or read_regular(bundle) != data:
        write_atomic(bundle, data)
    return bundle


def variables(host: str, port: int, confdir: Path) -> dict[str, str]:
    """The proxy variables, the CA bundle, and the control token (the one a proxy with this
    confdir, started from this environment, requires; TokenError if it cannot be used)."""
    from .control_token import TOKEN_VARIABLE, chosen_token, load_token

    proxy = f"http://{host}:{port}"
    bundle = str(ca_bundle(confdir))
    values = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy,
              "http_proxy": proxy, "NO_PROXY": "localhost,127.0.0.1,::1",
              "no_proxy": "localhost,127.0.0.1,::1"}
    values.update({name: bundle for name in CA_VARIABLES})
    values["NODE_USE_ENV_PROXY"] = "1"  # Node's own fetch honours HTTPS_PROXY with it (22.21+, 24+)
    chosen = chosen_token()
    values[TOKEN_VARIABLE] = chosen[0] if chosen else load_token(confdir)
    return values


def exports(values: dict[str, str], shell: str) -> str:
    if shell == "fish":
        lines = [f"set -gx {k} {shlex.quote(v)};" for k, v in values.items()]
    elif shell == "powershell":
        lines = [f"$env:{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in values.items()]
    else:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
