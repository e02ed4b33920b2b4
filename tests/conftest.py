"""Shared fixtures: the reference corpus beside the checkout, and the Go oracle."""

from __future__ import annotations

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


class GoOracle:
    """go-vcr's Load and Save with Go's real yaml.v3, in one long-running process."""

    def __init__(self, binary: Path):
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def round_trip(self, data: bytes) -> tuple[int, bool, bytes]:
        """(status, stable, output): status 0 ok, 1 Go refused to unmarshal, 2 marshal failed;
        stable when Go reads its own output back to the same value."""
        self.process.stdin.write(struct.pack(">Q", len(data)) + data)
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
