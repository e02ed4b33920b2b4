"""Running mitmproxy in-process with the vcr-proxy addon, quietly, for `vcr-proxy start`."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import click


def run_proxy(listen_host: str, port: int, settings: dict[str, str], confdir: str | None,
              workers: int = 1) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit status."""
    if workers > 1:
        return _run_workers(listen_host, port, settings, confdir, workers)
    return asyncio.run(_serve(listen_host, port, settings, confdir))


def _run_workers(listen_host: str, port: int, settings: dict[str, str], confdir: str | None,
                 workers: int) -> int:
    """`workers` replay processes on one port (SO_REUSEPORT: the kernel hands each new
    connection to one of them, and only processes of the same user can join): one event loop
    holds about half the timed streams a load test wants of a 2-core machine.

    Forked before any of them starts mitmproxy or a thread. This process is the first worker;
    the others stop when it does."""
    if settings.get("vcr_mode") != "replay":
        click.echo(f"vcr-proxy: --workers {workers}: workers replay only (recording writes each "
                   "cassette from one process); add --mode replay, or leave --workers out", err=True)
        return 2
    reserved = None
    if port == 0:  # one port for all: chosen here, held until they listen on it
        try:
            reserved = socket.socket(socket.AF_INET6 if ":" in listen_host else socket.AF_INET)
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind((listen_host, 0))
        except OSError as error:  # an address not of this machine, a name that does not resolve
            click.echo(f"vcr-proxy: cannot listen on {listen_host}:0: {error.strerror or error}",
                       err=True)
            return 1
        port = reserved.getsockname()[1]
    settings = {**settings, "vcr_workers": str(workers)}
    children = []
    for _ in range(workers - 1):
        child = os.fork()
        if child == 0:
            status = 1
            try:
                # Quiet until it listens: every worker reads the same settings, so a setting or
                # an address that fails, fails in each; the first tells it, once.
                sys.stdout.flush()
                sys.stderr.flush()
                told = (os.dup(1), os.dup(2))  # mitmproxy's log goes to stdout, ours to stderr
                with open(os.devnull, "wb") as devnull:
                    os.dup2(devnull.fileno(), 1)
                    os.dup2(devnull.fileno(), 2)
                worker = {**settings, "vcr_parent_pid": str(os.getppid())}
                status = asyncio.run(_serve(listen_host, port, worker, confdir, announce=False,
                                            share_port=True, forked=told))
            finally:
                sys.stderr.flush()
                os._exit(status)
        children.append(child)
    ended: set[int] = set()  # children already waited for
    try:
        return asyncio.run(_serve(listen_host, port, settings, confdir, share_port=True,
                                  held=reserved, children=(children, ended)))
    finally:
        for child in children:
            if child in ended:
                continue
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for child in children:
            if child not in ended:
                os.waitpid(child, 0)


class _Listening:
    """A forked worker's addon: once it listens (mitmproxy's `running` comes after its servers
    are up, and after the vcr-proxy addon's), its output goes where the first's does."""

    def __init__(self, told: tuple[int, int], vcr) -> None:
        self.told, self.vcr = told, vcr

    def running(self) -> None:
        if not self.vcr.failed_to_start:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.told[0], 1)
            os.dup2(self.told[1], 2)


class _Workers:
    """The first worker's addon: tells of any other worker that ends before it stops."""

    def __init__(self, children: list[int], ended: set[int]) -> None:
        self.children, self.ended = children, ended
        self.lost = False  # a worker ended by a signal or with an error
        self.watch: asyncio.Task | None = None

    def running(self) -> None:
        self.watch = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        from mitmproxy import ctx

        log = logging.getLogger("vcr-proxy")
        total = len(self.children) + 1
        while len(self.ended) < len(self.children):
            await asyncio.sleep(0.25)
            for child in self.children:
                if child in self.ended:
                    continue
                try:
                    pid, status = os.waitpid(child, os.WNOHANG)
                except ChildProcessError:
                    pid, status = child, 0
                if pid == 0:
                    continue
                self.ended.add(child)
                if ctx.master.should_exit.is_set():
                    continue  # stopping with the others
                if os.WIFSIGNALED(status):
                    how = f"killed by signal {os.WTERMSIG(status)}"
                else:
                    how = f"exit status {os.waitstatus_to_exitcode(status)}"
                self.lost = self.lost or how != "exit status 0"
                log.warning(f"vcr-proxy: replay worker {child} ended ({how}); "
                            f"{total - len(self.ended)} of {total} workers serve on")


def _share_listening_port() -> None:
    # mitmproxy opens its listening socket with asyncio.start_server and no way to ask for
    # SO_REUSEPORT; each worker asks for it so that all of them can listen on one port.
    original = asyncio.start_server

    async def start_server(*args, **kwargs):
        kwargs.setdefault("reuse_port", True)
        return await original(*args, **kwargs)

    asyncio.start_server = start_server


async def _serve(listen_host: str, port: int, settings: dict[str, str], confdir: str | None,
                 announce: bool = True, share_port: bool = False,
                 held: socket.socket | None = None, forked: tuple[int, int] | None = None,
                 children: tuple[list[int], set[int]] | None = None) -> int:
    if share_port:
        _share_listening_port()
    _bare_addons_package()
    from mitmproxy import exceptions, options

    def fresh_options() -> options.Options:
        opts = options.Options(listen_host=listen_host, listen_port=port)
        if confdir:
            opts.update(confdir=str(Path(confdir).expanduser()))
        return opts

    from .addon import VcrProxy
    from .devshell import ensure_ca
    from .errors import CassetteError

    vcr = VcrProxy()
    opts = fresh_options()
    try:
        ensure_ca(Path(opts.confdir).expanduser())  # before mitmproxy would make an RSA one
    except CassetteError as error:  # a confdir that is a file, or holds a FIFO
        click.echo(f"vcr-proxy: {error}", err=True)
        return 2
    # `--set onboarding=false` (the pytest plugin's): no http://mitm.it, and no Flask to import.
    onboarding = settings.get("onboarding", "true").lower() not in ("false", "off", "no", "0")
    if not onboarding:
        # The same spellings for mitmproxy's own parser (only "false"), should the full set
        # (with Onboarding) come in: `onboarding=0` must not start or fail by another option.
        settings = {**settings, "onboarding": "false"}
    master = _lean_master(opts, vcr, onboarding)
    if any(key not in opts for key in settings if key != "onboarding"):
        # An option (--set) that belongs to one of mitmproxy's other addons: load them all.
        await master.done()  # takes the first master's log handlers away again
        opts = fresh_options()
        vcr = VcrProxy()
        master = _full_master(opts, vcr)
    elif "onboarding" not in opts:  # left out of the lean set: nothing to turn off
        settings = {key: value for key, value in settings.items() if key != "onboarding"}
    try:
        opts.update(termlog_verbosity="warn", vcr_log_replays=True)
        opts.set(*[f"{key}={value}" for key, value in settings.items()])
    except exceptions.OptionsError as error:
        click.echo(f"vcr-proxy: {error}", err=True)
        return 2
    _show_status_lines()
    watcher = _Workers(*children) if children is not None else None
    if watcher is not None:
        master.addons.add(watcher)
    if forked is not None:
        master.addons.add(_Listening(forked, vcr))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, master.shutdown)
    address = f"--port {port}" + (f" --listen-host {listen_host}" if listen_host != "127.0.0.1" else "")
    if confdir:
        address += f" --confdir {confdir}"
    command = sys.argv[0] if sys.argv[0].endswith("vcr-proxy") else "vcr-proxy"
    workers = int(settings.get("vcr_workers", "1"))
    shown = f", {workers} workers" if workers > 1 else ""
    if announce:
        click.echo(f"vcr-proxy ({settings['vcr_mode']}, {settings['vcr_dir']}/{shown}) on "
                   f"http://{listen_host}:{port}; in another shell: eval \"$({command} env {address})\"  "
                   f"(Ctrl-C stops)", err=True)
    if held is not None:
        loop.call_later(5, held.close)  # the port is taken by then, by the workers' own sockets
    try:
        await master.run()
    except OSError as error:
        click.echo(f"vcr-proxy: cannot listen on {listen_host}:{port}: {error.strerror}", err=True)
        return 1
    finally:
        # Connections still open when the proxy stops are cancelled with the event loop;
        # asyncio would print each cancellation as a traceback.
        loop.set_exception_handler(_quiet_cancellations)
        if forked is not None:
            # Stopping already (a signal to the whole group, Ctrl-C's), it may be told to stop
            # again by the first worker: a signal that came as the event loop closed its own
            # wakeup pipe was printed as a traceback. Nothing is left to stop.
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)
        if watcher is not None and watcher.watch is not None:
            watcher.watch.cancel()
    # The addon has listed them at shutdown; a run that lost recordings must not look green,
    # nor one that lost a replay worker.
    lost = watcher is not None and watcher.lost
    return 1 if vcr.recorder.failures or vcr.failed_to_start or lost else 0


def _quiet_cancellations(loop, context) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def _lean_master(opts, vcr, onboarding: bool = True):
    """mitmproxy with only the addons a recording proxy uses.

    mitmproxy calls every addon for every event: with its ~35 default addons that dispatch
    took about half the proxy's time per replayed request (profiled in bench/replay.py's
    setting). Kept: the proxy itself (core, proxyserver, next_layer, tlsconfig), its safety
    checks (block: no open proxy on a public address; disable_h2c; errorcheck) and
    onboarding (http://mitm.it serves the CA), unless `onboarding=false`.
    """
    from mitmproxy import master
    from mitmproxy.addons import block, core, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig

    lean = master.Master(opts, with_termlog=True)
    lean.addons.__class__ = _handler_table_class()
    lean.addons.add(core.Core(), block.Block(), disable_h2c.DisableH2C())
    if onboarding:
        from mitmproxy.addons.onboarding import Onboarding

        lean.addons.add(Onboarding())
    lean.addons.add(proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                    errorcheck.ErrorCheck(), vcr)
    return lean


def _handler_table_class():
    from mitmproxy import addonmanager, exceptions

    class HandlerTable(addonmanager.AddonManager):
        """mitmproxy's addon manager, each event's handlers looked up once.

        The stock manager walks every addon for every event (a getattr, a generator and a
        context manager each), and a replayed request on a new connection raises about twenty
        events, each flow event twice (with an `update` that no addon here handles). Every way
        the chain or an addon's sub-addons change (add, register, remove, clear) starts the
        table over, once the change is made.
        """

        def add(self, *addons):
            super().add(*addons)
            self.__dict__.pop("handlers", None)

        def register(self, addon):
            registered = super().register(addon)
            self.__dict__.pop("handlers", None)
            return registered

        def remove(self, addon):
            super().remove(addon)
            self.__dict__.pop("handlers", None)

        def clear(self):
            super().clear()
            self.__dict__.pop("handlers", None)

        async def trigger_event(self, event):
            table = self.__dict__.setdefault("handlers", {})
            handlers = table.get(event.name)
            if handlers is None:
                handlers = table[event.name] = [
                    function for addon in self.chain for _, function in self._iter_hooks(addon, event)]
            if not handlers:
                return
            arguments = event.args()
            for function in handlers:
                # What addonmanager.safecall() does, without a context manager made per call
                # (a connection raises about twenty events: it was a tenth of their dispatch).
                try:
                    result = function(*arguments)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except exceptions.AddonHalt:
                    return
                except exceptions.OptionsError:
                    raise
                except Exception as error:
                    addonmanager.logger.error(f"Addon error: {error}", exc_info=True)

    return HandlerTable


def _bare_addons_package() -> None:
    """Make `mitmproxy.addons` importable without running its __init__, which imports all ~40
    of mitmproxy's default addons (werkzeug, ldap3, ...: about a fifth of the proxy's
    start-up, which a test session waits for) where the lean master uses eight.
    _full_master runs it after all."""
    if "mitmproxy.addons" not in sys.modules:
        spec = importlib.util.find_spec("mitmproxy.addons")
        sys.modules["mitmproxy.addons"] = importlib.util.module_from_spec(spec)


def _full_master(opts, vcr):
    package = sys.modules.get("mitmproxy.addons")
    if package is not None and not hasattr(package, "default_addons"):
        package.__spec__.loader.exec_module(package)
    from mitmproxy.tools.dump import DumpMaster

    full = DumpMaster(opts, with_termlog=True, with_dumper=False)
    full.addons.add(vcr)
    return full


def _show_status_lines() -> None:
    # mitmproxy's own log is turned down to warnings; the addon's one line per
    # interaction stays visible.
    # Log records without what no line shows (the logging HOWTO's "Optimization"): looking
    # up the caller and the thread, process and task names made the line per replayed
    # request cost 7% of the proxy's throughput.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.logAsyncioTasks = False
    logger = logging.getLogger("vcr-proxy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ClockFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class _ClockFormatter(logging.Formatter):
    """"HH:MM:SS message", the clock rendered once a second rather than once a line."""

    second = -1
    clock = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self.second:
            self.second, self.clock = second, time.strftime("%H:%M:%S", time.localtime(second))
        line = f"{self.clock} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
