"""Shared fixtures: the reference corpus beside the checkout, and the Go oracle."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
CORPUS_FILES = sorted(CORPUS.rglob("*.yaml"))


def corpus_files() -> list[Path]:
    if not CORPUS_FILES:
        raise RuntimeError(f"no cassettes under {CORPUS}: the tests need ../shared beside the checkout")
    return CORPUS_FILES


def _b64(value: str | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return base64.b64encode(raw).decode("ascii")


def _header(header: dict) -> dict:
    return {_b64(k): [_b64(v) for v in values] for k, values in header.items()}


def go_json(cassette) -> dict:
    """The cassette as the oracle's JSON: every string base64-encoded."""
    interactions = []
    for i in cassette.interactions:
        q, r = i.request, i.response
        interactions.append({"id": i.id, "request": {
            "proto": _b64(q.proto), "proto_major": q.proto_major, "proto_minor": q.proto_minor,
            "content_length": q.content_length,
            "transfer_encoding": [_b64(v) for v in q.transfer_encoding],
            "trailer": _header(q.trailer), "host": _b64(q.host), "remote_addr": _b64(q.remote_addr),
            "request_uri": _b64(q.request_uri), "body": _b64(q.body), "form": _header(q.form),
            "headers": _header(q.headers), "url": _b64(q.url), "method": _b64(q.method),
        }, "response": {
            "proto": _b64(r.proto), "proto_major": r.proto_major, "proto_minor": r.proto_minor,
            "transfer_encoding": [_b64(v) for v in r.transfer_encoding],
            "trailer": _header(r.trailer), "content_length": r.content_length,
            "uncompressed": r.uncompressed, "body": _b64(r.body), "headers": _header(r.headers),
            "status": _b64(r.status), "code": r.code, "duration": r.duration,
        }})
    return {"version": cassette.version, "interactions": interactions}


class GoOracle:
    """go-vcr's Load and Save with Go's real yaml.v3, in one long-running process."""

    def __init__(self, binary: Path):
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def round_trip(self, data: bytes) -> tuple[int, bool, bytes]:
        """go-vcr's Load then Save: (status, stable, output). Status 0 ok, 1 Go refused to
        unmarshal, 2 marshal failed; stable when Go reads its own output back the same."""
        return self._ask(b"Y", data)

    def marshal(self, cassette) -> tuple[int, bool, bytes]:
        """What go-vcr's Save writes for `cassette`, sent to Go as data rather than as YAML."""
        return self._ask(b"J", json.dumps(go_json(cassette)).encode())

    def _ask(self, mode: bytes, data: bytes) -> tuple[int, bool, bytes]:
        self.process.stdin.write(mode + struct.pack(">Q", len(data)) + data)
        self.process.stdin.flush()
        status, stable = self.process.stdout.read(2)
        (size,) = struct.unpack(">Q", self.process.stdout.read(8))
        return status, bool(stable), self.process.stdout.read(size)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def go_oracle(tmp_path_factory) -> GoOracle:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Go is not installed: apt-get install golang-go golang-gopkg-yaml.v3-dev")
    build = tmp_path_factory.mktemp("go_oracle")
    binary = build / "go_oracle"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=str(build / "cache"), GOFLAGS="")
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=ROOT / "tests" / "go_oracle",
                   env=env, check=True)
    oracle = GoOracle(binary)
    yield oracle
    oracle.close()


def assert_same_bytes(ours: bytes, theirs: bytes) -> None:
    """Equal bytes, or a failure that shows the first lines that differ."""
    if ours == theirs:
        return
    import difflib

    diff = difflib.unified_diff(theirs.decode("utf-8", "backslashreplace").splitlines(),
                                ours.decode("utf-8", "backslashreplace").splitlines(),
                                "go", "ours", lineterm="", n=2)
    shown = [repr(line)[:300] for line in list(diff)[:30]]
    raise AssertionError("bytes differ from Go's:\n" + "\n".join(shown))


def pytest_report_header(config):
    from .reliability import SCALE, SEED

    return f"vcr-proxy reliability: VCR_RELIABILITY_SCALE={SCALE} VCR_RELIABILITY_SEED={SEED}"
