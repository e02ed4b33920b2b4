"""1,000 cassettes broken on purpose: every command answers in one line and never overwrites."""

from __future__ import annotations

import random
import subprocess
import sys

from proxy_addon.cassette import load
from proxy_addon.errors import CassetteError

from ..conftest import ROOT, corpus_files
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
