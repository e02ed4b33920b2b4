"""1,000 cassettes broken on purpose: every command answers in one line and never overwrites.
And what is no cassette at all (a FIFO, a device, a confdir that is a file, a broken URL):
one line too, and never a hang."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys

import pytest

from proxy_addon.cassette import load
from proxy_addon.errors import CassetteError

from ..conftest import CORPUS, ROOT, corpus_files
from . import scaled, seeded

COUNT = scaled(1000)


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:  # truncated
        return data[:rng.randrange(len(data))]
    if kind == 1:  # bit flips
        buffer = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(buffer))
            buffer[position] ^= 1 << rng.randrange(8)
        return bytes(buffer)
    if kind == 2:  # wrong types
        field = rng.choice([b"code: ", b"content_length: ", b"duration: ", b"id: ", b"proto_major: "])
        return data.replace(field, field + rng.choice([b"[1] #", b"{a: b} #", b'"x" #', b"yes #"]), 1)
    if kind == 3:  # huge
        return data + b"# " + b"x" * rng.randint(1 << 20, 4 << 20) + b"\n"
    if kind == 4:  # deeply nested
        return data.replace(b"interactions:", b"interactions: " + b"[" * rng.randint(1000, 50000), 1)
    if kind == 5:  # billion laughs
        return (b"version: 2\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                b"interactions: [*d]\n")
    if kind == 6:  # invalid UTF-8
        position = rng.randrange(len(data))
        return data[:position] + b"\xff\xfe\xc3" + data[position:]
    return data.replace(b"version: 2", b"version: " + rng.choice([b"1", b"3", b"two", b"~"]), 1)


def test_mutated_cassettes_get_one_line_each_and_are_never_overwritten(tmp_path):
    rng = random.Random(seeded(20261125))
    sources = [path.read_bytes() for path in corpus_files()]
    originals = {}
    for number in range(COUNT):
        path = tmp_path / f"m{number:04}.yaml"
        path.write_bytes(mutate(rng.choice(sources), rng))
        originals[path] = path.read_bytes()
    broken = set()
    for path in originals:
        try:
            load(path)
        except CassetteError as error:
            assert "\n" not in str(error) and str(error).startswith(str(path))
            broken.add(path)
    assert len(broken) > COUNT // 2

    launcher = [sys.executable, str(ROOT / "scripts" / "vcr-proxy")]
    for command in (["check", str(tmp_path)], ["fmt", str(tmp_path)], ["fmt", "--check", str(tmp_path)],
                    ["ls", str(tmp_path)]):
        result = subprocess.run(launcher + command, capture_output=True, text=True, timeout=600)
        assert "Traceback" not in result.stderr, command
        assert result.returncode == 1, command
        reported = {line.split(":", 1)[0] for line in result.stderr.splitlines()}
        assert {str(p) for p in broken} <= reported, command
        assert all(line.startswith(str(tmp_path)) for line in result.stderr.splitlines()), command
    for path in broken:
        assert path.read_bytes() == originals[path], path


def test_the_proxy_answers_a_broken_cassette_with_its_one_line_error(tmp_path):
    from ..proxy import Proxy

    rng = random.Random(seeded(7))
    sources = [path.read_bytes() for path in corpus_files()]
    folder = tmp_path / "cassettes"
    folder.mkdir()
    broken = []
    while len(broken) < scaled(100):
        path = folder / f"b{len(broken):04}.yaml"
        path.write_bytes(mutate(rng.choice(sources), rng))
        try:
            load(path)
            path.unlink()
        except CassetteError as error:
            broken.append((path, path.read_bytes(), str(error)))
    proxy = Proxy(tmp_path, vcr_mode="replay", vcr_hosts="*").start()
    try:
        with proxy.client() as client:
            for path, _, error in broken:
                response = client.post("https://openrouter.ai/api/v1/chat/completions", content=b"{}",
                                       headers={"X-Vcr-Cassette": path.name})
                assert response.status_code == 404
                message = response.json()["error"]["message"]
                assert error in message and "\n" not in message
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.output()
    assert all(path.read_bytes() == data for path, data, _ in broken)


# -- Not a file to read (issue 19): FIFOs, devices, a confdir that is a file, a broken URL.
# Each ends in one line, never a traceback, and never a hang: a FIFO opened the ordinary way
# waits for a writer forever (a timeout here fails the test instead of hanging the suite).

CLI = [sys.executable, str(ROOT / "scripts" / "vcr-proxy")]
SEED_CASSETTE = CORPUS / "seed-dialect" / "TestOpenRouterCommon" / "tool_streaming_kimi-k2_fireworks.yaml"


def _run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def special(tmp_path):
    """A folder of things named like cassettes that are not files: a FIFO, and symlinks to
    /dev/zero (reads forever) and /dev/null (a character device too)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    (folder / "null.yaml").symlink_to("/dev/null")
    return folder


@pytest.mark.parametrize("name, kind", [("pipe.yaml", "FIFO"), ("zero.yaml", "character device"),
                                        ("null.yaml", "character device")])
@pytest.mark.parametrize("command", ["show", "show --json", "show --raw", "ls", "check", "redact",
                                     "fmt", "fmt --check", "report", "diff"])
def test_every_command_refuses_a_fifo_or_a_device_by_its_type(special, tmp_path, command, name, kind):
    target = str(special / name)
    args = command.split()
    if args[0] == "report":
        args += ["-o", str(tmp_path / "r.html")]
    args.append(target)
    if args[0] == "diff":
        args.append(str(SEED_CASSETTE))
    result = _run(*args)
    line = _one_line(result, target, "not a regular file")
    assert f"is a {kind}" in line, line
    assert result.returncode in (1, 2), result
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("command", ["ls", "check", "redact", "fmt", "fmt --check", "report", "diff"])
def test_folder_commands_name_each_fifo_and_device_and_go_on(special, tmp_path, command):
    shutil.copy(SEED_CASSETTE, special / "good.yaml")
    args = command.split()
    if args[0] == "report":
        args += ["-o", str(tmp_path / "r.html")]
    args.append(str(special))
    if args[0] == "diff":
        args.append(str(special))
    result = _run(*args)
    for name in ("pipe.yaml", "zero.yaml", "null.yaml"):
        _one_line(result, str(special / name), "not a regular file")
    assert result.returncode in (1, 2)
    if args[0] in ("ls", "report"):
        assert "good.yaml" in result.stdout or (tmp_path / "r.html").exists()


@pytest.mark.parametrize("command", ["show", "show --json", "report"])
def test_a_fifo_as_the_timing_sidecar_is_refused(tmp_path, command):
    cassette = tmp_path / "kimi.yaml"
    shutil.copy(SEED_CASSETTE, cassette)
    os.mkfifo(tmp_path / "kimi.timing.jsonl")
    args = command.split()
    if args[0] == "report":
        args += ["-o", str(tmp_path / "r.html")]
    result = _run(*args, str(cassette))
    line = _one_line(result, str(tmp_path / "kimi.timing.jsonl"))
    assert "is a FIFO" in line and "remove it" in line
    assert result.returncode == 1


def test_start_refuses_a_broken_upstream_url_and_a_confdir_that_is_a_file(tmp_path):
    from ..upstream import free_port

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for args, needle in ((["--upstream", "https://[::1"], "vcr_upstream"),
                         (["--upstream", "https://127.0.0.1:99999"], "vcr_upstream"),
                         (["--confdir", "/dev/null"], "/dev/null"),
                         (["--confdir", str(afile)], str(afile)),
                         (["--dir", "/dev/null"], "vcr_dir: /dev/null is not a folder")):
        command = ["start", "--port", str(free_port()), "--dir", str(tmp_path / "c"), *args]
        if "--confdir" not in args:
            command += ["--confdir", str(tmp_path / "conf")]
        result = _run(*command)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip().startswith("vcr-proxy: "), result.stderr
        assert needle in _one_line(result, "vcr-proxy: "), args
    for command in (["env", "--confdir", str(afile)], ["env", "--confdir", "/dev/null"]):
        result = _run(*command)
        assert result.returncode == 1 and "is not a folder" in _one_line(result, "--confdir")
    conf = tmp_path / "fifo-conf"
    conf.mkdir()
    os.mkfifo(conf / "mitmproxy-ca-cert.pem")
    for command in (["env", "--confdir", str(conf)],
                    ["start", "--port", str(free_port()), "--confdir", str(conf)]):
        result = _run(*command)
        assert result.returncode in (1, 2), result.stderr
        assert "is a FIFO" in _one_line(result, str(conf / "mitmproxy-ca-cert.pem"))


def test_mitmdump_with_a_broken_upstream_url_is_one_line(tmp_path):
    from ..proxy import Proxy

    proxy = Proxy(tmp_path, vcr_upstream="https://[::1")
    result = subprocess.run(proxy.args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "vcr_upstream" in line]
    assert len(lines) == 1 and "'https://[::1' is not an http(s) URL" in lines[0], output


LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])


@LAUNCHERS
@pytest.mark.parametrize("mode", ["replay", "once", "record", "new-episodes"])
def test_a_fifo_cassette_is_answered_with_its_error_and_sigterm_still_stops_the_proxy(tmp_path, mode, launcher):
    import httpx

    from ..proxy import Proxy, control_headers

    folder = tmp_path / "cassettes"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    os.mkfifo(folder / "ahead.yaml")
    proxy = Proxy(tmp_path, vcr_mode=mode, launcher=launcher).start()
    try:
        with proxy.client(timeout=20) as client:
            try:
                response = client.post("https://openrouter.ai/api/v1/chat/completions", json={},
                                       headers={"X-Vcr-Cassette": "pipe"})
            except httpx.TimeoutException:
                pytest.fail(f"the request hung on the FIFO: {proxy.output()[-2000:]}")
            # Selected through the control endpoint: read ahead in a thread.
            selected = client.post("http://vcr-proxy.control/cassette", json={"name": "ahead"},
                                   headers=control_headers(proxy))
            assert selected.status_code == 200
            after = client.post("https://openrouter.ai/api/v1/chat/completions", json={})
        proxy.process.send_signal(signal.SIGTERM)
        try:
            proxy.process.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not stop the proxy: {proxy.output()[-2000:]}")
    finally:
        proxy.stop()
    for answer, name in ((response, "pipe.yaml"), (after, "ahead.yaml")):
        assert answer.status_code in (400, 404), answer.text
        message = answer.json()["error"]["message"]
        assert f"{folder / name}: is a FIFO (named pipe), not a regular file" in message, message
        assert "\n" not in message
    assert "Traceback" not in proxy.output()


@LAUNCHERS
def test_a_fifo_sidecar_is_refused_when_recording_and_skipped_when_replaying(tmp_path, launcher):
    from ..proxy import Proxy
    from ..test_record import CHAT

    folder = tmp_path / "cassettes"
    folder.mkdir()
    os.mkfifo(folder / "new.timing.jsonl")
    os.mkfifo(folder / "kimi.timing.jsonl")
    shutil.copy(SEED_CASSETTE, folder / "kimi.yaml")
    interaction = load(SEED_CASSETTE).interactions[0]
    proxy = Proxy(tmp_path, vcr_mode="new-episodes", vcr_timing="events", launcher=launcher).start()
    try:
        with proxy.client(timeout=20) as client:
            recording = client.post(CHAT, json={}, headers={"X-Vcr-Cassette": "new"})
            replayed = client.post(interaction.request.url, content=interaction.request.body,
                                   headers={"X-Vcr-Cassette": "kimi", "Content-Type": "application/json"})
        proxy.process.send_signal(signal.SIGTERM)
        proxy.process.wait(20)
    finally:
        proxy.stop()
    assert recording.status_code == 400
    assert f"{folder / 'new.timing.jsonl'}: is a FIFO" in recording.json()["error"]["message"]
    assert replayed.status_code == 200 and replayed.headers["X-Vcr-Proxy"].startswith("replayed ")
    output = proxy.output()
    assert f"{folder / 'kimi.timing.jsonl'}: is a FIFO" in output and "without its event timing" in output
    assert "Traceback" not in output
