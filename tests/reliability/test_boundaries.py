"""Cassette names cannot leave vcr_dir; the proxy listens on loopback unless told otherwise."""

from __future__ import annotations

import subprocess
import time

import pytest

from proxy_addon.addon import cassette_path

from ..proxy import Proxy
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


def test_plain_mitmdump_with_the_addon_listens_on_loopback_only(tmp_path):
    proxy = Proxy(tmp_path)
    proxy.args.remove("--listen-host")
    proxy.args.remove("127.0.0.1")
    proxy.start()
    try:
        deadline = time.monotonic() + 10
        while f"listening at 127.0.0.1:{proxy.port}" not in proxy.output():
            assert time.monotonic() < deadline, proxy.output()
            time.sleep(0.05)
        sockets = subprocess.run(["ss", "-ltnH", f"sport = :{proxy.port}"], capture_output=True,
                                 text=True).stdout.split()
        local = [field for field in sockets if field.endswith(f":{proxy.port}")]
        assert local and all(address.startswith("127.0.0.1:") for address in local), sockets
    finally:
        proxy.stop()
