"""pytest plugin: one proxy per test session, one cassette per test.

Enable it with `pytest -p proxy_addon.pytest_plugin` (or `pytest_plugins =
["proxy_addon.pytest_plugin"]` in a conftest.py). It starts `vcr-proxy start` on a free port,
exports the proxy and CA variables (as `vcr-proxy env` prints them) for the test process, and
before each test selects `tests/cassettes/<module>/<test>.yaml` through the control endpoint.
`--vcr-mode` sets the mode (default once), like pytest-recording's `--record-mode`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .control import CONTROL_HEADER, CONTROL_HOST
from .devshell import default_confdir, variables

MODES = ("once", "replay", "record", "new-episodes", "passthrough")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("vcr-proxy", "record and replay LLM API traffic through vcr-proxy")
    group.addoption("--vcr-mode", choices=MODES, default="once",
                    help="vcr-proxy mode for every test (default: once).")
    group.addoption("--vcr-dir", default=None,
                    help="Cassette folder (default: tests/cassettes under the rootdir).")
    group.addoption("--vcr-upstream", default="",
                    help="Send recorded hosts' traffic to this base URL instead.")
    group.addoption("--vcr-confdir", default=None,
                    help="mitmproxy's folder for its CA (default: ~/.mitmproxy).")
    group.addoption("--vcr-set", action="append", default=[], metavar="OPTION=VALUE",
                    help="Any other proxy option (repeatable).")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VcrProxy:
    """The running proxy of a test session."""

    def __init__(self, config) -> None:
        self.port = _free_port()
        root = Path(str(config.rootpath))
        self.folder = Path(config.getoption("vcr_dir") or root / "tests" / "cassettes")
        self.confdir = Path(config.getoption("vcr_confdir") or default_confdir()).expanduser()
        self.mode = config.getoption("vcr_mode")
        command = [sys.executable, "-m", "proxy_addon.cli", "start", "--port", str(self.port),
                   "--dir", str(self.folder), "--mode", self.mode, "--confdir", str(self.confdir)]
        if config.getoption("vcr_upstream"):
            command += ["--upstream", config.getoption("vcr_upstream")]
        for item in config.getoption("vcr_set"):
            command += ["--set", item]
        self.log = open(root / ".vcr-proxy.log", "ab") if root.is_dir() else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log,
                                        start_new_session=True)
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{self.port}"}))
        self._wait()
        self.saved_environment = dict(os.environ)
        os.environ.update(variables("127.0.0.1", self.port, self.confdir))

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise pytest.UsageError("vcr-proxy did not start; see .vcr-proxy.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if (self.confdir / "mitmproxy-ca-cert.pem").exists():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise pytest.UsageError("vcr-proxy did not start within 30 s; see .vcr-proxy.log")

    def control(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://{CONTROL_HOST}{path}", data=data,
                                         headers={CONTROL_HEADER: "1"},
                                         method="GET" if data is None and path == "/status" else "POST")
        with self.opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        os.environ.clear()
        os.environ.update(self.saved_environment)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


@pytest.fixture(scope="session")
def vcr_proxy(request):
    proxy = VcrProxy(request.config)
    yield proxy
    proxy.stop()


def cassette_name(node) -> str:
    """`<module>/<test>`: the test file's name without `.py`, and the test's name."""
    module = Path(str(node.path)).stem
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_")
    return f"{module}/{test}"


@pytest.fixture(autouse=True)
def vcr_cassette(request, vcr_proxy):
    """Selects this test's cassette; after the test, what it recorded, replayed and missed."""
    name = cassette_name(request.node)
    vcr_proxy.control("/cassette", {"name": name, "mode": vcr_proxy.mode})
    report: dict = {}
    yield report
    report.update(vcr_proxy.control("/eject"))
