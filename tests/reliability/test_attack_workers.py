"""Attacks on `vcr-proxy start --workers N`: how its replay processes start, fail, stop and
lose one of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.proxy import ROOT, Proxy
from tests.test_paced_replay import _children, _free_port, _gone, _read_stream
from tests.test_replay import _stream_cassette

CHAT = "https://openrouter.ai/api/v1/chat/completions"
VCR_PROXY = [sys.executable, str(ROOT / "scripts" / "vcr-proxy")]


def _start(tmp_path, *args: str) -> list[str]:
    return [*VCR_PROXY, "start", "--mode", "replay", "--dir", str(tmp_path),
            "--confdir", str(tmp_path / "conf"), *args]


@pytest.mark.parametrize("args", [
    ["--port", "0", "--listen-host", "nosuchhost.invalid"],
    ["--port", "0", "--listen-host", "192.0.2.1"],  # TEST-NET-1: no address of this machine
], ids=["unresolvable", "not-local"])
def test_workers_on_an_address_they_cannot_listen_on_say_so_in_one_line(tmp_path, args):
    """With --port 0 the launcher reserves the workers' port itself: an address it cannot bind
    ended the start in a Python traceback."""
    result = subprocess.run(_start(tmp_path, "--workers", "2", *args), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"vcr-proxy: cannot listen on {args[-1]}:0: "), lines


@pytest.mark.parametrize("bad", [["--set", "vcr_speed=fast"], ["--set", "no_such_option=1"]],
                         ids=["bad-value", "unknown-option"])
def test_a_start_that_fails_is_told_once_not_once_a_worker(tmp_path, bad):
    """Every worker read the same settings and told the same error, as many times as there
    were workers that got to it before the first stopped them: 1 to 4 lines for 4 workers,
    one line about half the time (so a few starts)."""
    for _ in range(5):
        result = subprocess.run(_start(tmp_path, "--workers", "4", "--port", str(_free_port()),
                                       *bad), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vcr-proxy: "), result.stderr


def test_a_stop_signal_to_the_whole_group_stops_every_worker_quietly(tmp_path):
    """SIGTERM to the process group (what `timeout`, a CI job's cancel or `kill -- -PGID` send):
    each worker stops on it, and the first then tells the others to stop again; one told as its
    event loop was closing printed 'Exception ignored when trying to write to the signal
    wakeup fd' and a traceback. A race (one start in three to one in ten, by the machine's
    load): repeated, with four workers, to be seen."""
    for _ in range(12):
        port = _free_port()
        process = subprocess.Popen(_start(tmp_path, "--workers", "4", "--port", str(port)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            proxy = Proxy(tmp_path, launcher=True)
            proxy.port, proxy.confdir = port, tmp_path / "conf"
            pids = _serving_pids(proxy, 4)
            os.killpg(process.pid, signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        lines = [line for line in stderr.splitlines() if "(Ctrl-C stops)" not in line]
        assert process.returncode == 0 and not lines, stderr
        for pid in pids:
            _gone(pid)


def test_the_first_worker_tells_of_a_worker_killed_and_the_others_serve_on(tmp_path):
    """A worker killed (the OOM killer, kill -9) went unnoticed: no line said so, the load test
    ran on with a share of its capacity gone, and the proxy exited 0."""
    _stream_cassette(tmp_path, [0.05])
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_timing="events", vcr_allow_repeats="true",
                  launcher=True, workers=3).start()
    try:
        pids = _serving_pids(proxy, 3)
        children = _children(proxy.process.pid)
        assert len(children) == 2 and set(children) <= pids
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while f"replay worker {children[0]} ended" not in proxy.output():
            assert time.monotonic() < deadline, proxy.output()
            time.sleep(0.1)
        told = [line for line in proxy.output().splitlines() if "replay worker" in line]
        assert len(told) == 1 and "killed by signal 9" in told[0] and "2 of 3" in told[0], told
        for _ in range(6):  # a new connection each: all reach a living worker
            with proxy.client() as client:
                _, body, _ = _read_stream(client, CHAT, {"X-Vcr-Cassette": "paced"})
            assert body.endswith(b"data: [DONE]\n\n")
    finally:
        proxy.stop()
    assert proxy.process.returncode == 1  # a run that lost a worker does not look green
    _gone(children[1])
    assert "Traceback" not in proxy.output()


def _serving_pids(proxy: Proxy, workers: int) -> set[int]:
    """The pids of `workers` workers, each seen answering /status (new connections until all
    have been: the kernel spreads them)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < workers:
        assert time.monotonic() < deadline, pids
        try:
            with proxy.control(timeout=5) as control:
                pids.add(control.get("http://vcr-proxy.control/status").json()["pid"])
        except Exception:
            time.sleep(0.05)
    return pids
