"""Only the user who started the proxy steers it. Another local user (uid 65534, through
setpriv) finds the proxy's ports in /proc/net/tcp as anyone can, and tries to switch it to
passthrough through the HTTP control endpoint, and to take paced streams from the in-process
replay server; it must get nothing, and the proxy's own user everything."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from proxy_addon.cassette import Cassette, Interaction, Request, Response
from proxy_addon.persisters.filesystem import write_atomic

from ..proxy import Proxy, control_client, control_headers
from ..test_record import CHAT
from ..upstream import Upstream, make_certificate

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # one the other user can run (the venv's lives under /root)
TOKEN_FILE = "vcr-proxy-control-token"
LAUNCHERS = pytest.mark.parametrize("launcher", [False, True], ids=["mitmdump", "vcr-proxy-start"])


@pytest.fixture(scope="module")
def other_user():
    """The command that runs other_user.py as uid 65534: a copy in a folder of /tmp it may read."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as another user")
    folder = Path(tempfile.mkdtemp(prefix="vcr-other-user-"))
    folder.chmod(0o755)
    script = folder / "other_user.py"
    shutil.copy(HERE / "other_user.py", script)
    script.chmod(0o644)
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, str(script)]
    probe = subprocess.run([*command, "listening"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or json.loads(probe.stdout)["uid"] != 65534:
        pytest.skip(f"setpriv cannot run a process as uid 65534 here: {probe.stderr.strip()}")
    yield command
    shutil.rmtree(folder)


def _run(command: list[str], timeout: float = 120) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _world_traversable_folder() -> Path:
    """A folder every user may enter (as a home folder often is): what keeps the token from
    another user there is the token file's own mode."""
    folder = Path(tempfile.mkdtemp(prefix="vcr-proxy-home-"))
    folder.chmod(0o755)
    return folder


@LAUNCHERS
def test_another_user_cannot_steer_a_standalone_proxy(other_user, launcher):
    home = _world_traversable_folder()
    proxy = Proxy(home, vcr_mode="replay", launcher=launcher).start()
    token_file = proxy.confdir / TOKEN_FILE
    try:
        taken = _run([*other_user, "control", str(proxy.port), str(token_file)])
        with control_client(proxy) as control:
            status = control.get("http://vcr-proxy.control/status").json()
        with proxy.client() as client:
            miss = client.post(CHAT, json={"model": "m"})
    finally:
        proxy.stop()
        output = proxy.output()
        shutil.rmtree(home)
    assert taken["uid"] == 65534 and taken["listed"]  # it found the port
    assert {answer["status"] for answer in taken["answers"]} == {403}, taken["answers"]
    refusal = taken["answers"][0]["body"]
    assert f"X-Vcr-Control: <token>" in refusal and str(token_file) in refusal
    assert "VCR_PROXY_CONTROL_TOKEN" in refusal
    assert taken["token_file"] == "refused: Permission denied"
    # Still the owner's proxy: the configured cassette and mode, a miss answered here.
    assert (status["cassette"], status["mode"]) == ("default", "replay")
    assert miss.status_code == 404 and "vcr-proxy" in miss.text
    assert "Traceback" not in output


PLUGIN_TEST = '''
import json
import os
import subprocess

import httpx
import pytest

URL = "https://127.0.0.1:{port}/v1/chat/completions"


@pytest.mark.vcr_proxy
def test_replayed():
    port = os.environ["VCR_PROXY_URL"].rsplit(":", 1)[1]
    taken = subprocess.run({other_user!r} + ["control", port], capture_output=True, text=True)
    print("OTHER USER", taken.stdout.strip())
    with httpx.Client(proxy=os.environ["VCR_PROXY_URL"], verify=False) as client:
        print("STATUS", client.post(URL, json={{"n": 1}}).status_code)
'''


def test_another_user_cannot_steer_a_pytest_session(pytester: pytest.Pytester, tmp_path, other_user):
    """The plugin's proxy serves no HTTP control endpoint at all (its runner uses its private
    Unix socket): a request to the control host is answered there, and forwarded nowhere."""
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key).start()
    pytester.makepyfile(test_session=PLUGIN_TEST.format(port=upstream.port, other_user=other_user))
    try:
        result = pytester.runpytest_subprocess(f"--vcr-confdir={tmp_path / 'conf'}", "-p",
                                               "no:cacheprovider", "--vcr-mode=replay", "-s")
    finally:
        upstream.stop()
    output = result.stdout.str()
    taken = json.loads(output.split("OTHER USER ", 1)[1].split("\n", 1)[0])
    assert taken["uid"] == 65534 and taken["listed"]
    assert {answer["status"] for answer in taken["answers"]} == {404}, taken["answers"]
    assert "no HTTP control endpoint" in taken["answers"][0]["body"]
    # Still replaying: the request is a miss, and the test fails for it.
    assert "STATUS 404" in output
    result.assert_outcomes(failed=1)
    assert upstream.requests == []
    assert not (tmp_path / "conf" / TOKEN_FILE).exists()  # no token made for an endpoint it lacks


def _listening_ports(pid: int) -> list[int]:
    """The TCP ports process `pid` listens on (the root side's view: its socket inodes)."""
    inodes = set()
    for descriptor in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].split(":")[1], 16))
    return sorted(ports)


ROUNDS, STREAMS = 5, 40
EVENTS = [f"data: {{\"n\": {n}}}\n\n" for n in range(5)] + ["data: [DONE]\n\n"]


def test_another_user_can_neither_find_nor_take_a_paced_stream(tmp_path, other_user):
    """A paced stream is played by the proxy's in-process replay server (a 127.0.0.1 port):
    another user who requests its paths while streams are replayed gets none of them. Taking
    one is a race (a plan lives from the request's routing to the proxy's own connection), so
    the other user tries through up to ROUNDS fresh proxies of STREAMS concurrent streams."""
    rounds = []
    for number in range(ROUNDS):
        taken, answers = _paced_round(tmp_path / f"round-{number}", other_user)
        rounds.append((taken, answers))
        if taken["taken"] or answers != [(200, "".join(EVENTS))] * STREAMS:
            break
    for taken, answers in rounds:
        assert taken["uid"] == 65534 and taken["requests"] > 0
        assert taken["taken"] == 0, taken
        assert answers == [(200, "".join(EVENTS))] * STREAMS


def _paced_round(folder: Path, other_user: list[str]) -> tuple[dict, list]:
    interactions = [Interaction(
        id=n, request=Request(url=CHAT, method="POST", body=json.dumps({"n": n})),
        response=Response(body="".join(EVENTS), code=200, status="200 OK", duration=300_000_000,
                          headers={"Content-Type": ["text/event-stream"]}))
        for n in range(STREAMS)]
    write_atomic(folder / "cassettes" / "default.yaml",
                 Cassette(interactions=interactions).dumps().encode())
    # duration pacing: every stream goes through the in-process replay server.
    proxy = Proxy(folder, vcr_mode="replay", vcr_timing="duration", launcher=True).start()
    try:
        # The replay server's port, which the other user sees listening on 127.0.0.1.
        ports = []
        for _ in range(200):
            ports = [port for port in _listening_ports(proxy.process.pid) if port != proxy.port]
            if ports:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert ports, "the replay server is not listening"
        assert set(ports) <= set(_run([*other_user, "listening"])["ports"])
        attacker = subprocess.Popen([*other_user, "replay", str(proxy.process.pid), *map(str, ports)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            answers = asyncio.run(_streams(proxy))
        finally:
            taken_output, _ = attacker.communicate("", timeout=120)
    finally:
        proxy.stop()
    return json.loads(taken_output), answers


async def _streams(proxy: Proxy) -> list[tuple[int, str]]:
    async with proxy.async_client() as client:
        async def one(n: int) -> tuple[int, str]:
            response = await client.post(CHAT, json={"n": n})
            return response.status_code, response.text
        return await asyncio.gather(*(one(n) for n in range(STREAMS)))


def test_a_password_on_the_proxy_port_keeps_other_users_out(tmp_path, other_user):
    """What the README gives a shared machine: mitmproxy's proxyauth with an htpasswd file.
    The other user's requests through the port (a control call included) get 407."""
    import bcrypt

    htpasswd = tmp_path / "proxy.htpasswd"
    htpasswd.write_text("me:" + bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt()).decode() + "\n")
    htpasswd.chmod(0o600)
    proxy = Proxy(tmp_path, vcr_mode="replay", launcher=True, proxyauth=f"@{htpasswd}").start()
    try:
        taken = _run([*other_user, "control", str(proxy.port)])
        headers = control_headers(proxy)  # the token, as the owner reads it
        with httpx.Client(proxy=f"http://me:s3cret-pass@127.0.0.1:{proxy.port}", timeout=30) as owner:
            status = owner.get("http://vcr-proxy.control/status", headers=headers)
    finally:
        proxy.stop()
    assert {answer["status"] for answer in taken["answers"]} == {407}
    assert status.status_code == 200 and status.json()["mode"] == "replay"
