"""The storage guarantees through real proxies: parallel writers, hostile folders, bombs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from proxy_addon.cassette import load

from ..proxy import Proxy
from ..test_cli import _cli
from ..test_record import CHAT, recorded
from ..upstream import Upstream, make_certificate
from . import scaled


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    cert, key = make_certificate(tmp_path_factory.mktemp("cert"))
    server = Upstream(cert, key, event_delay=0.001).start()
    server.cert = cert
    yield server
    server.stop()


def _proxy(folder: Path, upstream, cassettes: Path, **options) -> Proxy:
    return Proxy(folder, upstream_ca=upstream.cert, vcr_upstream=upstream.url, vcr_dir=str(cassettes),
                 launcher=True, **options)


@pytest.mark.parametrize("mode", ["record", "new-episodes"])
def test_two_proxies_write_one_cassette(tmp_path, upstream, mode):
    cassettes = tmp_path / "shared"
    proxies = [_proxy(tmp_path / f"p{n}", upstream, cassettes, vcr_mode=mode).start() for n in range(2)]
    per_proxy = scaled(30)
    errors = []

    def client_loop(proxy: Proxy, tag: int):
        try:
            with proxy.client() as client:
                for n in range(per_proxy):
                    body = {"n": f"{tag}-{n}", "stream": n % 2 == 0}
                    assert client.post(CHAT, json=body).status_code == 200
        except Exception as error:  # reported below, with the proxies' logs
            errors.append(error)

    threads = [threading.Thread(target=client_loop, args=(proxy, tag)) for tag, proxy in enumerate(proxies)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        cassette = recorded(cassettes / "default.yaml", 2 * per_proxy, timeout=30)
    finally:
        for proxy in proxies:
            proxy.stop()
    import json

    ids = [i.id for i in cassette.interactions]
    assert len(ids) == len(set(ids)) == 2 * per_proxy
    assert sorted(json.loads(i.request.body)["n"] for i in cassette.interactions) == sorted(
        f"{tag}-{n}" for tag in range(2) for n in range(per_proxy))
    assert _cli("fmt", "--check", str(cassettes)).stdout == ""


@pytest.mark.parametrize("side_file", [".default.yaml.appending", "default.timing.jsonl", ".default.yaml.lock"])
def test_a_symlinked_side_file_is_refused_and_nothing_outside_is_written(tmp_path, upstream, side_file):
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (cassettes / side_file).symlink_to(outside)
    proxy = _proxy(tmp_path, upstream, cassettes, vcr_mode="record").start()
    try:
        with proxy.client() as client:
            response = client.post(CHAT, json={"model": "m"})
            client.post(CHAT, json={"model": "again"})
    finally:
        proxy.stop()
    assert outside.read_text() == "precious\n"
    output = proxy.output()
    assert side_file in output and "symlink" in output and "Traceback" not in output
    assert response.status_code in (200, 400)


def test_a_cassette_folder_deleted_while_recording_is_started_again(tmp_path, upstream):
    import shutil

    cassettes = tmp_path / "cassettes"
    proxy = _proxy(tmp_path, upstream, cassettes, vcr_mode="record").start()
    try:
        with proxy.client() as client:
            assert client.post(CHAT, json={"n": 1}).status_code == 200
            recorded(cassettes / "default.yaml", 1)
            shutil.rmtree(cassettes)  # git clean -fdx
            assert client.post(CHAT, json={"n": 2}).status_code == 200
            assert client.post(CHAT, json={"n": 3}).status_code == 200
            cassette = recorded(cassettes / "default.yaml", 2)
    finally:
        proxy.stop()
    assert [i.request.body for i in cassette.interactions] == ['{"n":2}', '{"n":3}']
    assert proxy.output().count("was deleted while recording; starting it again") == 1


def test_a_gzip_bomb_reaches_the_client_unchanged_and_is_not_recorded(tmp_path, upstream):
    from bench.memory import memory

    proxy = _proxy(tmp_path, upstream, tmp_path / "cassettes", vcr_mode="record").start()
    try:
        with proxy.client(timeout=120) as client:
            with client.stream("GET", "https://openrouter.ai/bomb?mb=1024") as response:
                raw = b"".join(response.iter_raw())
            assert response.status_code == 200 and len(raw) == int(response.headers["content-length"])
            # The client still got every byte; the next exchange is served and recorded as usual.
            assert client.post(CHAT, json={"model": "m"}).status_code == 200
            recorded(proxy.cassettes / "default.yaml", 1)
        _, peak = memory(proxy.process.pid)
    finally:
        proxy.stop()
    assert peak < 512 * 2**20, f"peak RSS {peak >> 20} MiB"
    assert "vcr_max_body" in proxy.output()
    assert [i.request.method for i in load(proxy.cassettes / "default.yaml").interactions] == ["POST"]


def test_an_alias_bomb_is_refused_and_never_rewritten(tmp_path, upstream):
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    bomb = ["version: 2", "interactions:", "    - &a", "      id: 0", "      request:",
            "        url: https://openrouter.ai/api/v1/chat/completions", "        method: POST",
            "        body: &b " + "x" * 10000, "      response:", "        code: 200"]
    bomb += [f"    - {{id: {n}, request: {{url: {n}, method: POST, body: *b}}, response: {{code: 200}}}}"
             for n in range(1, 400)]
    text = "\n".join(bomb) + "\n"
    (cassettes / "default.yaml").write_text(text)
    proxy = _proxy(tmp_path, upstream, cassettes, vcr_mode="new-episodes").start()
    try:
        with proxy.client() as client:
            response = client.post(CHAT, json={"model": "m"})
    finally:
        proxy.stop()
    assert response.status_code == 400 and "alias" in response.text
    assert (cassettes / "default.yaml").read_text() == text


def test_no_client_waits_on_the_disk(tmp_path, upstream):
    """The cassette's lock held by someone else (a stuck disk, a slow writer): clients are still
    answered, streamed or not, and the interactions are saved once the lock is free."""
    import fcntl
    import os

    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    proxy = _proxy(tmp_path, upstream, cassettes, vcr_mode="record").start()
    try:
        with proxy.client(timeout=20) as client:
            assert client.post(CHAT, json={"n": 0}).status_code == 200  # opens the cassette
            recorded(cassettes / "default.yaml", 1)
            lock = os.open(cassettes / ".default.yaml.lock", os.O_RDWR)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for n in range(1, 4):
                    response = client.post(CHAT, json={"n": n, "stream": n % 2 == 0})
                    assert response.status_code == 200 and response.content
                assert len(load(cassettes / "default.yaml").interactions) == 1  # still waiting
            finally:
                os.close(lock)
            cassette = recorded(cassettes / "default.yaml", 4)
    finally:
        proxy.stop()
    assert [i.id for i in cassette.interactions] == [0, 1, 2, 3]
