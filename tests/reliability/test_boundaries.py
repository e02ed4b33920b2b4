"""Cassette names cannot leave vcr_dir; the proxy listens on loopback unless told otherwise."""

from __future__ import annotations

import subprocess
import time

import pytest

from proxy_addon.addon import cassette_path

from ..proxy import Proxy, control_headers
from ..test_record import CHAT


@pytest.mark.parametrize("name", ["../up", "a/../../up", "/etc/passwd", "a\x00b", "a\\b", "", "sub/../../x"])
def test_names_that_leave_the_folder_are_refused(tmp_path, name):
    with pytest.raises(ValueError):
        cassette_path(tmp_path, name)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        cassette_path(folder, "link/stolen")
    assert cassette_path(folder, "suite/ok") == folder / "suite" / "ok.yaml"

    proxy = Proxy(tmp_path, vcr_dir=str(folder)).start()
    try:
        with proxy.client() as client:
            response = client.post(CHAT, json={}, headers={"X-Vcr-Cassette": "link/stolen"})
    finally:
        proxy.stop()
    assert response.status_code == 400 and "outside" in response.json()["error"]["message"]
    assert list(outside.iterdir()) == []


def _wait_listening_on_loopback(proxy: Proxy) -> None:
    """Until mitmdump says it listens on 127.0.0.1 (the addon's rebind is done)."""
    deadline = time.monotonic() + 10
    while f"listening at 127.0.0.1:{proxy.port}" not in proxy.output():
        assert time.monotonic() < deadline, proxy.output()
        time.sleep(0.05)


def test_plain_mitmdump_with_the_addon_listens_on_loopback_only(tmp_path):
    proxy = Proxy(tmp_path)
    proxy.args.remove("--listen-host")
    proxy.args.remove("127.0.0.1")
    proxy.start()
    try:
        _wait_listening_on_loopback(proxy)
        sockets = subprocess.run(["ss", "-ltnH", f"sport = :{proxy.port}"], capture_output=True,
                                 text=True).stdout.split()
        local = [field for field in sockets if field.endswith(f":{proxy.port}")]
        assert local and all(address.startswith("127.0.0.1:") for address in local), sockets
    finally:
        proxy.stop()


def test_nothing_beyond_loopback_is_answered_while_mitmdump_starts(tmp_path):
    """`mitmdump -s proxy_addon/addon.py` without --listen-host binds its server on every
    interface before it loads the script (which then forces loopback). 127.0.0.2 stands for
    another interface: a socket bound to 127.0.0.1 does not accept there, a wildcard one does.
    A client hammering it throughout start-up may see a connection accepted, but never an
    answer on it: not from the control endpoint, not to a proxied request."""
    import socket
    import threading

    proxy = Proxy(tmp_path, vcr_mode="replay")
    proxy.args.remove("--listen-host")
    proxy.args.remove("127.0.0.1")
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                accepted.append(socket.create_connection(("127.0.0.2", proxy.port), timeout=1))
            except OSError:
                time.sleep(0.001)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    proxy.start()
    try:
        _wait_listening_on_loopback(proxy)
        time.sleep(0.5)  # and a while after, for good measure
        stop.set()
        thread.join(10)
        answers = []
        token = control_headers(proxy)["X-Vcr-Control"].encode()  # the right one, even
        requests = [b"GET http://vcr-proxy.control/status HTTP/1.1\r\nHost: vcr-proxy.control\r\n"
                    b"X-Vcr-Control: " + token + b"\r\n\r\n",
                    b"GET http://api.openai.com/v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"]
        for number, connection in enumerate(accepted):
            with connection:
                connection.settimeout(5)
                try:
                    connection.sendall(requests[number % 2])
                    answers.append(connection.recv(4096))
                except OSError:  # reset: refused
                    answers.append(b"")
        # The proxy itself answers on loopback.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as own:
            own.settimeout(5)
            own.sendall(requests[0])
            status = own.recv(4096)
    finally:
        stop.set()
        proxy.stop()
    assert all(answer == b"" for answer in answers), answers
    assert status.startswith(b"HTTP/1.1 200"), status
    assert "Traceback" not in proxy.output()
