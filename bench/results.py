"""One line per measured figure, so that `bench/run_all.py` can tabulate every script's results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def report(name: str, figure: str, goal: str, met: bool | None) -> None:
    status = "n/a" if met is None else ("met" if met else "MISSED")
    print(f"RESULT\t{name}\t{figure}\t{goal}\t{status}", flush=True)


def go_binary(folder, package: str):
    """bench/PACKAGE (a Go command of the standard library alone) built into `folder`."""
    go = shutil.which("go")
    if go is None:
        sys.exit(f"bench/{package} needs Go: apt-get install golang-go")
    binary = Path(folder) / package
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="", GOCACHE=str(Path(folder) / "gocache"))
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=Path(__file__).parent / package,
                   env=env, check=True)
    return binary
