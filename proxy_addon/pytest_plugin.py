"""pytest plugin: one proxy per test session (per xdist worker), one cassette per marked test.

Installed with the package (entry point `vcr_proxy`; `-p no:vcr_proxy` turns it off). It acts
only on tests marked `@pytest.mark.vcr_proxy` (or `@pytest.mark.vcr_proxy("suite/name")` for a
shared cassette; `pytestmark` works), or on every test with `--vcr-all`.

When it starts the proxy: before the test modules it covers are imported, so that clients
built at import time (`CLIENT = OpenAI()` at module level) go through it. That is in
`pytest_configure` when any `--vcr-*` option is given or the ini option `vcr_proxy = true` is
set; otherwise just before the first test module whose source mentions `vcr_proxy` is imported,
or just after a conftest.py that does is loaded; at the latest at the end of collection, if a
collected test is marked. (pytest imports the initial conftest.py files before any plugin's
pytest_configure: a client one builds at import time misses the proxy.) The proxy variables
(HTTPS_PROXY, NO_PROXY, a CA bundle) are exported when the proxy process is launched; a request
made before it listens is refused, never sent to the network.

The proxy's own default mode is passthrough: between marked tests, and in unmarked tests,
traffic goes where it would go without the plugin. A marked test's cassette is selected before
its setup and kept until its teardown has run, so fixtures' requests belong to their test. The
plugin steers the proxy through its control calls on a private Unix socket (one JSON line each
way, no HTTP exchange through mitmproxy). Per test: after its teardown, the selection of the
next marked test, whose answer closes this one (teardown misses, interactions never requested);
and when the test's call ends, a report (a miss or an unsaved interaction fails the test), asked
for only if the proxy told of a miss or a recording since the selection: it writes an event line
on the socket before the client has its answer. A replayed test costs one round trip.
"""

from __future__ import annotations

import ast
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import pytest

from .control import MATCH_FIELDS
from .devshell import ca_bundle, default_confdir, ensure_ca

MODES = ("once", "replay", "record", "new-episodes", "passthrough")
MARKER = "vcr_proxy"
OPTIONS = ("vcr_mode", "vcr_dir", "vcr_upstream", "vcr_confdir", "vcr_set", "vcr_all",
           "vcr_strict", "vcr_http_proxy", "vcr_fault")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("vcr-proxy", "record and replay LLM API traffic through vcr-proxy")
    group.addoption("--vcr-mode", choices=MODES, default=None,
                    help="vcr-proxy mode for the marked tests (default: once).")
    group.addoption("--vcr-all", action="store_true", default=None,
                    help="Give every test a cassette, marked or not.")
    group.addoption("--vcr-strict", action="store_true", default=None,
                    help="Fail a test whose cassette holds interactions it never requested.")
    group.addoption("--vcr-dir", default=None,
                    help="Cassette folder (default: tests/cassettes under the rootdir).")
    group.addoption("--vcr-upstream", default=None,
                    help="Send recorded hosts' traffic to this base URL instead.")
    group.addoption("--vcr-confdir", default=None,
                    help="mitmproxy's folder for its CA (default: ~/.mitmproxy).")
    group.addoption("--vcr-http-proxy", action="store_true", default=None,
                    help="Export HTTP_PROXY too (plain-http clients); only HTTPS_PROXY otherwise.")
    group.addoption("--vcr-fault", default=None, metavar="FAULT",
                    help="Inject a fault into every replayed request, e.g. status=429;retry-after=2.")
    group.addoption("--vcr-set", action="append", default=None, metavar="OPTION=VALUE",
                    help="Any other proxy option (repeatable).")
    parser.addini("vcr_proxy", "Start vcr-proxy before collection (so clients built at import "
                  "time use it).", type="bool", default=False)
    parser.addini("vcr_proxy_mode", "Default --vcr-mode.", default="once")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(name=None, mode=None, fault=None, match=None, ignore_fields=None, "
        "normalize=None): record and replay this test's LLM API traffic through vcr-proxy (name: "
        "a shared cassette, relative to --vcr-dir; match: the parts compared, e.g. 'method,url'; "
        "ignore_fields: JSON fields left out of matching; normalize: regular expressions whose "
        "matches count as equal)")
    if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") in (None, "no"):
        state = VcrState(config)  # an xdist controller runs no test: it needs no proxy
        config.stash[STATE] = state
        config.pluginmanager.register(state, "vcr_proxy_state")
        if state.eager:
            state.launch()


def pytest_unconfigure(config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.stop()


STATE = pytest.StashKey["VcrState"]()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@lru_cache(maxsize=None)
def mentions_marker(path: str) -> bool:
    """Whether the Python source at `path` uses the marker, as `mark.vcr_proxy` or the string
    "vcr_proxy" (read before pytest imports it; text that only quotes it does not count)."""
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError:
        return False
    if MARKER.encode() not in data:
        return False
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return True  # pytest reports the file; starting a proxy costs nothing worse
    return any((isinstance(node, ast.Attribute) and node.attr == MARKER)
               or (isinstance(node, ast.Constant) and node.value == MARKER)
               for node in ast.walk(tree))


def cassette_name(node) -> str:
    """`<module>/<test>`: the test file's name without `.py`, and the test's name (a class's
    tests as `Class.test`), as pytest-recording names them."""
    module = Path(str(node.path)).stem
    name = node.name
    if getattr(node, "cls", None) is not None:
        name = f"{node.cls.__name__}.{name}"
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return f"{module}/{test}"


class VcrState:
    """The session's proxy and the control connection to it."""

    def __init__(self, config) -> None:
        self.config = config
        option = config.getoption
        self.mode = option("vcr_mode") or config.getini("vcr_proxy_mode") or "once"
        if self.mode not in MODES:
            raise pytest.UsageError(f"vcr_proxy_mode: {self.mode!r} is not one of {', '.join(MODES)}")
        self.all = bool(option("vcr_all"))
        self.strict = bool(option("vcr_strict"))
        self.eager = (any(option(name) is not None for name in OPTIONS)
                      or bool(config.getini("vcr_proxy")))
        root = Path(str(config.rootpath))
        self.folder = Path(option("vcr_dir") or root / "tests" / "cassettes").absolute()
        self.confdir = Path(option("vcr_confdir") or default_confdir()).expanduser()
        self.worker = getattr(config, "workerinput", {}).get("workerid", "main")
        self.process: subprocess.Popen | None = None
        self.ready = False
        self.channel: socket.socket | None = None  # the control socket, kept open
        self.received = bytearray()  # what it sent that is not a whole line yet
        self.events: list[str] = []  # what the proxy told since the selection
        self.private: Path | None = None  # the folder (mode 0700) holding the control socket
        self.saved_environment: dict[str, str | None] = {}
        self.selected: str | None = None  # nodeid whose cassette is selected
        self.session = None
        self.deselected: list = []

    # -- the proxy process --

    def launch(self) -> None:
        """Start the proxy and export the variables; the wait for it comes at first use."""
        if self.process is not None:
            return
        self.port = _free_port()
        self.private = Path(tempfile.mkdtemp(prefix="vcr-proxy-"))
        self.socket_path = str(self.private / "control")
        option = self.config.getoption
        command = [sys.executable, "-m", "proxy_addon.cli", "start", "--port", str(self.port),
                   "--dir", str(self.folder), "--mode", "passthrough",
                   "--confdir", str(self.confdir),
                   "--set", f"vcr_control_socket={self.socket_path}",
                   # Steered through that socket alone (only this user can open it): no HTTP
                   # control endpoint, which anyone who can reach the port could try.
                   "--set", "vcr_control_http=false",
                   # A log line per replayed request is noise here (misses are still logged).
                   "--set", "vcr_log_replays=false",
                   # Tests get the CA from the exported variables, not from http://mitm.it;
                   # without that page the proxy starts sooner.
                   "--set", "onboarding=false",
                   # pytest killed (SIGTERM, SIGKILL) runs no unconfigure: the proxy stops itself.
                   "--set", f"vcr_parent_pid={os.getpid()}",
                   # Every host a marked test reaches is recorded, as vcrpy does: replay answers
                   # every host, so a host left out of the recording would miss there (a
                   # test's own --vcr-set vcr_hosts=..., given after, still wins).
                   "--set", "vcr_hosts=*"]
        if option("vcr_upstream"):
            command += ["--upstream", option("vcr_upstream")]
        for item in option("vcr_set") or ():
            command += ["--set", item]
        self.log_path = self._log_path()
        self.log = open(self.log_path, "wb")
        ensure_ca(self.confdir)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        proxy = f"http://127.0.0.1:{self.port}"
        # In replay mode every host is answered by the proxy: its CA alone verifies them all,
        # and a one-certificate bundle is what makes building a client cheap.
        bundle = (self.confdir / "mitmproxy-ca-cert.pem" if self.mode == "replay"
                  else ca_bundle(self.confdir))
        values = {"HTTPS_PROXY": proxy, "https_proxy": proxy,
                  "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
                  "SSL_CERT_FILE": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle),
                  "CURL_CA_BUNDLE": str(bundle), "NODE_EXTRA_CA_CERTS": str(bundle),
                  "AWS_CA_BUNDLE": str(bundle), "NODE_USE_ENV_PROXY": "1", "VCR_PROXY_URL": proxy}
        if option("vcr_http_proxy"):
            values.update({"HTTP_PROXY": proxy, "http_proxy": proxy})
        self.saved_environment = {name: os.environ.get(name) for name in values}
        os.environ.update(values)

    def _log_path(self) -> Path:
        cache = getattr(self.config, "cache", None)
        if cache is not None:
            folder = Path(cache.mkdir("vcr-proxy"))
        else:
            folder = Path(str(self.config.rootpath)) / ".pytest_cache" / "vcr-proxy"
            folder.mkdir(parents=True, exist_ok=True)
        return folder / f"proxy-{self.worker}.log"  # rewritten each session

    def wait(self) -> None:
        """Until the proxy answers on its control socket (it listens for clients by then)."""
        if self.ready:
            return
        self.launch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._not_started(f"vcr-proxy did not start; see {self.log_path}:\n"
                                  + self.log_path.read_text(errors="replace")[-2000:].rstrip())
            try:
                self._connect()
                self.ready = True
                return
            except OSError:
                time.sleep(0.01)
        self._not_started(f"vcr-proxy did not start within 30 s; see {self.log_path}")

    def _not_started(self, message: str) -> None:
        # One clear error, no traceback, and the session stops after this test: raised as any
        # other exception it was an error with a traceback for every marked test. (pytest.exit
        # would be an INTERNALERROR in an xdist worker.)
        if self.session is not None:
            self.session.shouldstop = "vcr-proxy did not start"
        pytest.fail(message, pytrace=False)

    def pytest_sessionstart(self, session) -> None:
        self.session = session

    def _connect(self) -> None:
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            channel.settimeout(60)
            channel.connect(self.socket_path)
        except OSError:
            channel.close()
            raise
        self.channel, self.received = channel, bytearray()

    def _disconnect(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def _line(self, wait: bool) -> bytes | None:
        """The proxy's next line; None when `wait` is false and no whole line has arrived."""
        while (end := self.received.find(b"\n")) < 0:
            if not wait and not select.select([self.channel], [], [], 0)[0]:
                return None
            chunk = self.channel.recv(65536)
            if not chunk:
                raise ConnectionError("the proxy closed its control socket")
            self.received += chunk
        line = bytes(self.received[:end])
        del self.received[:end + 1]
        return line

    def _take(self, line: bytes) -> dict | None:
        """An answer, or None for an event line (kept in self.events)."""
        message = json.loads(line)
        if "event" in message:
            self.events.append(message["event"])
            return None
        return message

    def control(self, path: str, payload: dict | None = None) -> dict:
        """One control call (control.py) on the kept-open socket; its answer."""
        self.wait()
        request = json.dumps({"method": "POST", "path": path, "body": payload or {}}).encode() + b"\n"
        try:
            if self.channel is None:
                self._connect()
            self.channel.sendall(request)
            while (answer := self._take(self._line(wait=True))) is None:
                pass
        except OSError:
            self._disconnect()
            raise
        if answer["status"] != 200:
            raise RuntimeError(f"vcr-proxy control {path}: {answer['status']} {answer['body']}")
        return answer["body"]

    def select(self, item) -> dict:
        """Select `item`'s cassette; the answer (with the report of the selection before)."""
        payload = self.selection(item)
        self.selected = None
        answer = self.control("/cassette", payload)
        self.selected = item.nodeid
        self.events.clear()  # told before this answer: they belong to the selection before
        return answer

    def told_of_events(self) -> bool:
        """Whether the proxy has told of a miss or a recording since the selection."""
        try:
            while (line := self._line(wait=False)) is not None:
                self._take(line)
        except OSError:
            return True  # then ask: the answer says what went wrong
        return bool(self.events)

    def stop(self) -> None:
        self._disconnect()
        for name, value in self.saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process is not None:
            self.log.close()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)

    # -- tests --

    def marker(self, item):
        return item.get_closest_marker(MARKER)

    def applies(self, item) -> bool:
        return self.all or self.marker(item) is not None

    def selection(self, item) -> dict:
        marker = self.marker(item)
        args = marker.args if marker else ()
        kwargs = marker.kwargs if marker else {}
        name = kwargs.get("name") or (args[0] if args else None)
        payload = {"name": name or cassette_name(item), "mode": kwargs.get("mode") or self.mode}
        fault = kwargs.get("fault") or self.config.getoption("vcr_fault")
        if fault:
            payload["fault"] = fault
        # Match rules, like pytest-recording's vcr_config: from the markers of the test, its
        # class and its module (`pytestmark`), the closest first; ignore_fields and normalize
        # add up, match is the closest one's.
        for marker_ in item.iter_markers(MARKER):
            for key in MATCH_FIELDS:
                value = marker_.kwargs.get(key)
                if value is None:
                    continue
                values = [value] if isinstance(value, str) else list(value)
                if key == "match":
                    payload.setdefault(key, values)
                else:
                    payload[key] = payload.get(key, []) + values
        item.stash[SHARED] = name is not None
        return payload

    def pytest_plugin_registered(self, plugin, manager) -> None:
        # A conftest.py that names the marker (say, adding it from a hook): the proxy is up
        # before the test modules it covers are imported (the conftest.py itself is already).
        path = getattr(plugin, "__file__", None)
        if (self.process is None and isinstance(path, str) and path.endswith("conftest.py")
                and mentions_marker(path)):
            self.launch()

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makemodule(self, module_path, parent) -> None:
        if self.process is None and mentions_marker(str(module_path)):
            self.launch()  # before the module is imported, and its clients built

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        if any(self.applies(item) for item in items):
            self.launch()
        self._find_shared_names([*self.deselected, *items])

    def pytest_deselected(self, items) -> None:
        self.deselected += items  # -k, --lf: their cassettes are still the same files

    def _find_shared_names(self, items) -> None:
        """Tests whose cassettes would be one file without a name saying so: test_api.py in
        two folders (the module is its file's stem), or parameters that sanitise alike
        (`[a b]` and `[a_b]`). Recorded one over the other, they would then miss."""
        claims: dict[str, list] = {}
        for item in items:
            if self.applies(item) and not self._named(item):
                claims.setdefault(cassette_name(item), []).append(item)
        for name, claimants in claims.items():
            if len(claimants) > 1:
                ids = " and ".join(item.nodeid for item in claimants[:3])
                for item in claimants:
                    item.stash[SHARES] = (
                        f"vcr-proxy: {ids} would share the cassette {name}: rename one (or its "
                        "parameter's id), or name its cassette in its marker, "
                        "@pytest.mark.vcr_proxy(\"suite/name\")")

    def _named(self, item) -> bool:
        marker = self.marker(item)
        return marker is not None and bool(marker.kwargs.get("name") or marker.args)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        item.stash[NEXT] = nextitem

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item) -> None:
        if self.applies(item) and SHARES in item.stash:
            pytest.fail(item.stash[SHARES], pytrace=False)
        if self.applies(item) and self.selected != item.nodeid:
            self.select(item)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if call.when == "setup" or self.selected != item.nodeid:
            return
        if (call.when == "call" and "vcr_cassette" not in item.fixturenames
                and not self.told_of_events()):
            return  # no miss and no recording told: nothing to report, no round trip
        report = outcome.get_result()
        try:
            data = self.control("/report") if call.when == "call" else self.finish(item)
        except Exception as error:  # the proxy died: say so on this test
            self.selected = None
            report.outcome = "failed"
            report.longrepr = f"vcr-proxy: the control endpoint did not answer: {error!r}"
            return
        if call.when == "call":
            item.stash[REPORT] = data
            self._judge(item, report, data, judged=None)
        else:
            self._judge(item, report, data, judged=item.stash.get(REPORT, None))

    def finish(self, item) -> dict:
        """The test and its teardown are over: select the next marked test's cassette (or
        eject), in one round trip whose answer is this test's final report."""
        nextitem = item.stash.get(NEXT, None)
        session = item.session
        # -x or --maxfail: the session stops after this test, so the next one never runs; what
        # runs after this teardown (sessionfinish hooks, background threads) must not go into
        # its cassette. (pytest tears the session fixtures down in this test's teardown.)
        stopping = session.shouldfail or session.shouldstop
        if nextitem is not None and self.applies(nextitem) and not stopping:
            return self.select(nextitem).get("previous", {})
        flush_sdk_telemetry()  # while this test's cassette still answers it
        self.selected = None
        return self.control("/eject")

    def _judge(self, item, report, data: dict, judged: dict | None) -> None:
        """Fail `report` for the misses and unsaved interactions in `data` that the report
        `judged` (the call's, when this is the teardown's) did not hold yet; at teardown, warn
        of (or, strict, fail for) interactions never requested."""
        misses = data.get("miss_messages") or data.get("misses") or []
        failed = data.get("failed", [])
        if judged is not None:
            misses = misses[len(judged.get("miss_messages") or judged.get("misses") or []):]
            failed = failed[len(judged.get("failed", [])):]
        final = report.when == "teardown"
        unused = [] if not final or item.stash.get(SHARED, False) else data.get("unused", [])
        sessions = [] if not final or item.stash.get(SHARED, False) else data.get("unused_sessions", [])
        lines = []
        for message in misses:
            lines.append(f"miss: {message}")
        for entry in failed:
            lines.append(f"not saved: {entry}")
        cassette = data.get("cassette")
        # WebSocket sessions (realtime/) are judged as interactions are.
        for numbers, what, never in ((unused, "interaction(s)", "requested"),
                                     (sessions, "WebSocket session(s)", "opened")):
            if not numbers:
                continue
            ids = ", ".join(f"#{n}" for n in numbers)
            lines.append(f"{'unused' if self.strict else 'warning: unused'}: {cassette} holds "
                         f"{what} {ids} that this test never {never} (a stale cassette? "
                         "re-record it with --vcr-mode=record)")
            if not self.strict:
                item.warn(pytest.PytestWarning(f"vcr-proxy: {cassette}: {what} {ids} never {never}"))
        if not lines:
            return
        text = "\n".join(lines)
        report.sections.append(("vcr-proxy" + (" (teardown)" if final else ""), text))
        if misses or failed or ((unused or sessions) and self.strict):
            if report.outcome == "passed":
                counts = [f"{len(misses)} miss(es)" if misses else "",
                          f"{len(failed)} interaction(s) not saved" if failed else "",
                          f"{len(unused)} interaction(s) never requested"
                          if unused and self.strict else "",
                          f"{len(sessions)} WebSocket session(s) never opened"
                          if sessions and self.strict else ""]
                when = " during teardown" if final and (misses or failed) else ""
                report.outcome = "failed"
                report.longrepr = (f"vcr-proxy: {', '.join(c for c in counts if c)}{when} "
                                   f"in {cassette}\n{text}")

    def pytest_report_header(self, config):
        if self.process is not None:
            return [f"vcr-proxy: 127.0.0.1:{self.port}, mode {self.mode}, cassettes {self.folder}, "
                    f"log {self.log_path}"]
        return None


def flush_sdk_telemetry() -> None:
    """Send what SDKs batch in a background thread and would send at exit, after the proxy has
    stopped (a refused connection, printed as an error): the OpenAI Agents SDK's traces of the
    last marked test. Called before the proxy goes back to passthrough, so they are answered
    where the cassette is replayed and reach their service where it is recorded."""
    tracing = sys.modules.get("agents.tracing")
    if tracing is None:
        return
    try:
        tracing.get_trace_provider().force_flush()
    except Exception:  # noqa: BLE001  (its exporter logs its own errors; never fail a test here)
        pass


NEXT = pytest.StashKey[object]()
SHARED = pytest.StashKey[bool]()
SHARES = pytest.StashKey[str]()  # why the test cannot run: its cassette name is another's
REPORT = pytest.StashKey[dict]()


@pytest.fixture
def vcr_cassette(request) -> dict:
    """After a marked test: what it recorded, replayed and missed (the eject report)."""
    report: dict = {}
    yield report
    state = request.config.stash.get(STATE, None)
    if state is not None:
        report.update(request.node.stash.get(REPORT, {}))


@pytest.fixture
def vcr_proxy_url(request) -> str:
    """The proxy's URL (for clients that do not read HTTPS_PROXY)."""
    state = request.config.stash[STATE]
    state.wait()
    return f"http://127.0.0.1:{state.port}"
