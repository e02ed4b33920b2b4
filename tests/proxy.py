"""The real proxy, as users start it: `mitmdump -s proxy_addon/addon.py --set ...`."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .upstream import free_port

ROOT = Path(__file__).resolve().parent.parent
MITMDUMP = Path(sys.executable).parent / "mitmdump"


class Proxy:
    def __init__(self, folder: Path, upstream_ca: Path | None = None, addon: bool = True,
                 launcher: bool = False, workers: int = 1, **options: str):
        """mitmdump with the addon as a script (`mitmdump -s`), or without it (`addon=False`),
        or the launcher (`launcher=True`: `vcr-proxy start`, its lean set of mitmproxy addons,
        with `workers` processes)."""
        self.port = free_port()
        self.folder = folder
        self.confdir = folder / "mitmproxy"
        self.cassettes = folder / "cassettes"
        self.log_path = folder / f"mitmdump-{self.port}.log"
        settings = {"confdir": str(self.confdir), **options}
        if upstream_ca is not None:
            settings["ssl_verify_upstream_trusted_ca"] = str(upstream_ca)
        self.args = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(self.port)]
        if launcher or addon:  # without either: bare mitmdump, the reference for benchmarks
            settings.setdefault("vcr_dir", str(self.cassettes))
        if launcher:
            settings.pop("confdir")
            self.args = [sys.executable, str(ROOT / "scripts" / "vcr-proxy"), "start",
                         "--port", str(self.port), "--confdir", str(self.confdir)]
            if workers > 1:
                self.args += ["--workers", str(workers)]
        elif addon:
            self.args += ["-s", str(ROOT / "proxy_addon" / "addon.py")]
        for key, value in settings.items():
            self.args += ["--set", f"{key}={value}"]
        self.process: subprocess.Popen | None = None
        self.http2 = False  # whether clients speak HTTP/2 (mitmproxy then does upstream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def start(self) -> "Proxy":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=self.folder, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mitmdump exited: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if self.ca.exists():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"mitmdump did not start: {self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("http2", self.http2)
        kwargs.setdefault("timeout", 30)
        return httpx.Client(proxy=self.url, verify=ssl.create_default_context(cafile=self.ca),
                            **kwargs)

    def async_client(self, **kwargs) -> httpx.AsyncClient:
        kwargs.setdefault("http2", self.http2)
        kwargs.setdefault("timeout", 60)
        return httpx.AsyncClient(proxy=self.url, verify=ssl.create_default_context(cafile=self.ca),
                                 **kwargs)

    def control(self, **kwargs) -> httpx.Client:
        """A client for the HTTP control endpoint (http://vcr-proxy.control/...)."""
        return control_client(self, **kwargs)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def control_token(proxy: Proxy) -> str:
    """The proxy's control token, as `vcr-proxy env` finds it: VCR_PROXY_CONTROL_TOKEN if set,
    else the file in the proxy's confdir (which the proxy may still be making as it listens)."""
    from proxy_addon.control_token import TOKEN_VARIABLE, token_path

    if os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE]
    path = token_path(proxy.confdir)
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the proxy made no control token in {path}: {proxy.output()}")
        time.sleep(0.02)
    return path.read_text().strip()


def control_headers(proxy: Proxy) -> dict[str, str]:
    """The header every control request carries."""
    return {"X-Vcr-Control": control_token(proxy)}


def control_client(proxy: Proxy, **kwargs) -> httpx.Client:
    """A client of `proxy` whose requests carry the control header."""
    kwargs["headers"] = {**control_headers(proxy), **kwargs.get("headers", {})}
    return proxy.client(**kwargs)
