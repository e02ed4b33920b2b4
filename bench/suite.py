"""A test suite's replay through the pytest plugin, against pytest-recording on the same tests.

A generated project of TESTS tests, each one openai SDK call (half of them streamed) to the
local upstream stand-in (tests/upstream.py), in two variants: a new `OpenAI()` client per test,
and one client for the session (built at import time). Each variant is recorded once with
vcr-proxy's plugin (`--vcr-upstream`) and once with pytest-recording (vcrpy), then replayed
offline with each (best of two runs, alternating), and run once against the live upstream with
no recorder at all (the floor). Figures are the wall time of the whole `pytest` process
(interpreter start, imports, collection, the proxy's start-up included).
Goals: vcr-proxy replay <= 1.25x pytest-recording for the new-client suite, <= 1.5x for the
one-client suite.

Run: `.venv/bin/python bench/suite.py` (installs pytest-recording and vcrpy into the running
environment if missing).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import report  # noqa: E402
from tests.upstream import Upstream, make_certificate  # noqa: E402

TESTS = 200
RUNS = 5

NEW_CLIENT = '''
import os

import openai
import pytest

pytestmark = [pytest.mark.vcr, pytest.mark.vcr_proxy]
BASE_URL = os.environ.get("BENCH_BASE_URL") or None
'''
NEW_CLIENT_TEST = '''

def test_call_{n:03d}():
    client = openai.OpenAI(api_key="sk-bench-not-a-key", base_url=BASE_URL, max_retries=0)
    messages = [{{"role": "user", "content": "question {n}"}}]
    if {streamed}:
        assert [chunk for chunk in client.chat.completions.create(model="m", messages=messages, stream=True)]
    else:
        assert client.chat.completions.create(model="m", messages=messages).id
'''
ONE_CLIENT = NEW_CLIENT + '''
CLIENT = openai.OpenAI(api_key="sk-bench-not-a-key", base_url=BASE_URL, max_retries=0)
'''
ONE_CLIENT_TEST = NEW_CLIENT_TEST.replace(
    '    client = openai.OpenAI(api_key="sk-bench-not-a-key", base_url=BASE_URL, max_retries=0)\n',
    '    client = CLIENT\n')
INI = "[pytest]\nmarkers =\n    vcr\n    vcr_proxy\naddopts = -q -p no:randomly\n"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NO_PROXY", "no_proxy")


def ensure_pytest_recording() -> None:
    if importlib.util.find_spec("pytest_recording") is None or importlib.util.find_spec("vcr") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pytest-recording", "vcrpy"],
                       check=True)


def write_project(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text(INI)
    for name, head, test in (("test_new_client.py", NEW_CLIENT, NEW_CLIENT_TEST),
                             ("test_one_client.py", ONE_CLIENT, ONE_CLIENT_TEST)):
        body = head + "".join(test.format(n=n, streamed=n % 2 == 1) for n in range(TESTS))
        (folder / name).write_text(body)


def run(folder: Path, test_file: str, args: list[str], env: dict[str, str]) -> float:
    environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    environment.update(env)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", test_file, *args], cwd=folder,
                            env=environment, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode:
        sys.exit(f"pytest {test_file} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ensure_pytest_recording()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        project = folder / "project"
        write_project(project)
        cert, key = make_certificate(folder)
        upstream = Upstream(cert, key, event_delay=0.0).start()
        confdir = folder / "conf"
        vcr = ["-p", "no:recording", f"--vcr-confdir={confdir}"]
        recording = ["-p", "no:vcr_proxy"]
        direct = {"BENCH_BASE_URL": f"{upstream.url}/v1", "SSL_CERT_FILE": str(cert)}
        floor = {}
        try:
            for test_file in ("test_new_client.py", "test_one_client.py"):
                run(project, test_file, [*vcr, "--vcr-mode=record", f"--vcr-upstream={upstream.url}",
                                         f"--vcr-set=ssl_verify_upstream_trusted_ca={cert}"], {})
                run(project, test_file, [*recording, "--record-mode=once"], direct)
                floor[test_file] = run(project, test_file, ["-p", "no:vcr_proxy", "-p", "no:recording"],
                                       direct)
        finally:
            upstream.stop()
        times: dict[tuple[str, str], float] = {}
        for _ in range(RUNS):
            for test_file in ("test_new_client.py", "test_one_client.py"):
                for runner, args, env in (
                        ("vcr-proxy", [*vcr, "--vcr-mode=replay"], {}),
                        ("pytest-recording", [*recording, "--record-mode=none"],
                         {"BENCH_BASE_URL": direct["BENCH_BASE_URL"]})):
                    elapsed = run(project, test_file, args, env)
                    times[test_file, runner] = min(times.get((test_file, runner), elapsed), elapsed)
    print(f"{TESTS} tests per suite (one openai SDK call each, half streamed), replayed offline, "
          f"wall time of the pytest process, best of {RUNS}:")
    for test_file, label, goal in (("test_new_client.py", "new client per test", 1.25),
                                   ("test_one_client.py", "one client per session", 1.5)):
        ours, theirs = times[test_file, "vcr-proxy"], times[test_file, "pytest-recording"]
        print(f"  {label:24} vcr-proxy {ours:6.2f} s ({ours / TESTS * 1e3:5.1f} ms/test)   "
              f"pytest-recording {theirs:6.2f} s ({theirs / TESTS * 1e3:5.1f} ms/test)   "
              f"no recorder, live upstream {floor[test_file]:6.2f} s "
              f"({floor[test_file] / TESTS * 1e3:5.1f} ms/test)")
        ratio = ours / theirs
        report(f"suite replay ({label}): vcr-proxy plugin vs pytest-recording", f"{ratio:.2f}x",
               f"<= {goal}x", ratio <= goal)


if __name__ == "__main__":
    main()
