"""Which connections the proxy opens up, and which requests it answers or records.

Plain Python: the addon asks these questions with what mitmproxy knows of a connection (the
CONNECT authority, the TLS SNI, the Host header) and acts on the answers.

The rules:
- replay mode intercepts every host, so nothing leaves the machine; only hosts the user names
  as passthrough hosts reach the network;
- the other modes intercept the recorded hosts (`vcr_hosts`) and every host that appears in a
  cassette under the cassette folder; passthrough mode intercepts none;
- a host is compared normalised: lower case, no trailing dot, IDNA, default port;
- a request whose Host (or SNI) names another host than the connection's target is refused,
  since the bytes would go to the target while the recording would name the Host.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import CassetteError
from .files import open_regular

CONTROL_HOST = "vcr-proxy.control"

# The LLM APIs recorded by default: providers seen in real go-vcr cassettes and the common
# gateways. Shell patterns; `*` also spans dots.
DEFAULT_HOSTS = (
    "openrouter.ai",
    "api.openai.com", "*.openai.azure.com", "*.cognitiveservices.azure.com",
    "*.services.ai.azure.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com", "aiplatform.googleapis.com", "*-aiplatform.googleapis.com",
    "bedrock-runtime.*.amazonaws.com", "bedrock-runtime-fips.*.amazonaws.com",
    "api.groq.com", "api.x.ai", "api.mistral.ai", "api.deepseek.com",
    "api.cerebras.ai",
    "router.huggingface.co", "api-inference.huggingface.co", "*.endpoints.huggingface.cloud",
    "inference.baseten.co", "*.api.baseten.co",
    "dashscope.aliyuncs.com", "dashscope-*.aliyuncs.com",
    "api.z.ai", "open.bigmodel.cn",
    "ai-gateway.vercel.sh",
    "gateway.ai.cloudflare.com", "api.cloudflare.com",
    "api.together.xyz", "api.together.ai",
    "api.fireworks.ai",
    "api.perplexity.ai",
    "api.cohere.com", "api.cohere.ai",
    "api.moonshot.ai", "api.moonshot.cn",
    "api.deepinfra.com",
    "integrate.api.nvidia.com", "ai.api.nvidia.com",
    "api.sambanova.ai",
)

DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=4096)  # a proxy sees the same few hosts on every request
def normalize_host(host: str) -> str:
    """A host name as compared: lower case, no brackets, no trailing dot, IDNA (punycode)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a valid name: compared as given, so it matches nothing recorded
    return host


def split_authority(authority: str, default_port: int) -> tuple[str, int | None]:
    """(normalised host, port) of a Host header or an authority; port None if unreadable."""
    authority = authority.strip()
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        host, port_text = authority[:end + 1], authority[end + 1:].removeprefix(":")
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    if not port_text:
        return normalize_host(host), default_port
    return normalize_host(host), int(port_text) if port_text.isdigit() else None


def parse_hosts(value: str, defaults: tuple[str, ...] = DEFAULT_HOSTS) -> list[str]:
    """The host patterns of a `vcr_hosts` value: `+a,+b` adds to the defaults, `a,b` replaces
    them."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    base = list(defaults) if all(entry.startswith("+") for entry in entries) else []
    return base + [normalize_host(entry.lstrip("+")) for entry in entries]


def _pattern_regex(pattern: str) -> str:
    """`*` stands for one label or part of one (`127.0.0.*` is no `127.0.0.1.evil.example`);
    a leading `*.` for one or more labels; `*` alone for every host."""
    if pattern == "*":
        return ".*"
    prefix = ""
    if pattern.startswith("*."):
        prefix, pattern = r"(?:[^.]+\.)+", pattern[2:]
    return prefix + "".join("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c)
                            for c in pattern)


class HostPatterns:
    """A list of host patterns (`*.openai.azure.com`) matched against normalised hosts."""

    def __init__(self, patterns: list[str] | tuple[str, ...]):
        self.patterns = [normalize_host(p) for p in patterns if p.strip()]
        joined = "|".join(_pattern_regex(p) for p in self.patterns)
        self._regex = re.compile(rf"(?:{joined})\Z") if joined else None

    def matches(self, host: str) -> bool:
        return self._regex is not None and self._regex.match(normalize_host(host)) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)


@dataclass(frozen=True)
class Routes:
    """The intercept and record decisions for one configuration. `cassettes`: anything with a
    `hosts()` giving the hosts named in the cassettes (CassetteHosts), or None."""

    recorded: HostPatterns
    passthrough: HostPatterns
    cassettes: "CassetteHosts | None" = None

    def intercepts(self, host: str, mode: str) -> bool:
        """Whether a connection to `host` is opened up (TLS intercepted), rather than tunnelled
        to the network untouched."""
        host = normalize_host(host)
        if host == CONTROL_HOST:
            return True
        return self.handles(host, mode)

    def handles(self, host: str, mode: str) -> bool:
        """Whether a request to `host` is answered from or recorded into a cassette, rather than
        passed on to the network unrecorded."""
        host = normalize_host(host)
        if self.passthrough.matches(host):
            return False
        if mode == "replay":
            return True
        if mode == "passthrough":
            return False
        if self.recorded.matches(host):
            return True
        return self.cassettes is not None and host in self.cassettes.hosts()


@functools.lru_cache(maxsize=4096)
def host_mismatch(target: str, target_port: int, scheme: str, host_header: str | None,
                  sni: str | None) -> str | None:
    """Why a request's Host header or TLS SNI disagrees with the connection's target, or None."""
    target = normalize_host(target)
    if host_header:
        host, port = split_authority(host_header, DEFAULT_PORTS.get(scheme, target_port))
        if host != target or port != target_port:
            return f"Host {host_header!r} is not the connection's target {target}:{target_port}"
    if sni and normalize_host(sni) != target:
        return f"TLS server name {sni!r} is not the connection's target {target}"
    return None


_URL_HOST = re.compile(rb"^[ \t-]*url: *['\"]?(https?)://([^/\s'\"?#]+)", re.MULTILINE)


def hosts_in_cassette(data: bytes) -> set[str]:
    """The hosts of the request URLs in a cassette's bytes (read without parsing the YAML)."""
    found = set()
    for scheme, authority in _URL_HOST.findall(data):
        host, _ = split_authority(authority.decode("utf-8", "replace"),
                                  DEFAULT_PORTS[scheme.decode()])
        found.add(host)
    return found


def _hosts_in_file(path: str, size: int) -> set[str]:
    if not size:
        return set()
    # Mapped, not read: a cassette folder may hold hundreds of megabytes. Opened as a regular
    # file only: a FIFO swapped in since the stat must not block the proxy.
    with os.fdopen(open_regular(path), "rb") as handle, \
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return hosts_in_cassette(data)


class CassetteHosts:
    """The hosts named in every cassette under a folder, rescanned at most once a second and
    reading only files that changed."""

    RESCAN_AFTER = 1.0

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._files: dict[str, tuple[tuple, set[str]]] = {}
        self._hosts: frozenset[str] = frozenset()
        self._scanned_at = -self.RESCAN_AFTER

    def hosts(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._scanned_at >= self.RESCAN_AFTER:
            self._scanned_at = now
            self._scan()
        return self._hosts

    def _scan(self) -> None:
        seen: dict[str, tuple[tuple, set[str]]] = {}
        for root, folders, files in os.walk(self.folder):
            folders[:] = [f for f in folders if not f.startswith(".")]
            for name in files:
                if not name.endswith((".yaml", ".yml")) or name.startswith("."):
                    continue
                path = os.path.join(root, name)
                try:
                    status = os.stat(path)
                    if not stat.S_ISREG(status.st_mode):
                        continue  # a FIFO or a device names no host (and replay refuses it)
                    stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
                    known = self._files.get(path)
                    if known is None or known[0] != stamp:
                        known = (stamp, _hosts_in_file(path, status.st_size))
                except (OSError, CassetteError):
                    continue
                seen[path] = known
        self._files = seen
        self._hosts = frozenset().union(*(hosts for _, hosts in seen.values()))
