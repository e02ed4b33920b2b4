"""Running mitmproxy in-process with the vcr-proxy addon, quietly, for `vcr-proxy start`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click


def run_proxy(listen_host: str, port: int, settings: dict[str, str], confdir: str | None) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit status."""
    return asyncio.run(_serve(listen_host, port, settings, confdir))


async def _serve(listen_host: str, port: int, settings: dict[str, str], confdir: str | None) -> int:
    from mitmproxy import exceptions, options
    from mitmproxy.tools.dump import DumpMaster

    from .addon import VcrProxy

    opts = options.Options(listen_host=listen_host, listen_port=port)
    if confdir:
        opts.update(confdir=str(Path(confdir).expanduser()))
    master = DumpMaster(opts, with_termlog=True, with_dumper=False)
    master.addons.add(VcrProxy())
    try:
        opts.update(termlog_verbosity="warn", vcr_log_replays=True)
        opts.set(*[f"{key}={value}" for key, value in settings.items()])
    except exceptions.OptionsError as error:
        click.echo(f"vcr-proxy: {error}", err=True)
        return 2
    _show_status_lines()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, master.shutdown)
    address = f"--port {port}" + (f" --listen-host {listen_host}" if listen_host != "127.0.0.1" else "")
    if confdir:
        address += f" --confdir {confdir}"
    command = sys.argv[0] if sys.argv[0].endswith("vcr-proxy") else "vcr-proxy"
    click.echo(f"vcr-proxy ({settings['vcr_mode']}, {settings['vcr_dir']}/) on "
               f"http://{listen_host}:{port}; in another shell: eval \"$({command} env {address})\"  "
               f"(Ctrl-C stops)", err=True)
    try:
        await master.run()
    except OSError as error:
        click.echo(f"vcr-proxy: cannot listen on {listen_host}:{port}: {error.strerror}", err=True)
        return 1
    return 0


def _show_status_lines() -> None:
    # mitmproxy's own log is turned down to warnings; the addon's one line per
    # interaction stays visible.
    logger = logging.getLogger("vcr-proxy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
