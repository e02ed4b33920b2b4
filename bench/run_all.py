"""`make bench`: run every benchmark in bench/, print one table, write bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["format.py", "record.py", "replay.py", "memory.py", "reading.py", "suite.py", "realtime.py",
           "bigbody.py", "capacity.py"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "?")
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {memory} RAM, "
            f"Python {platform.python_version()}")


def main() -> int:
    rows, failed = [], []
    for script in SCRIPTS:
        result = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True,
                                cwd=HERE.parent)
        for line in result.stdout.splitlines():
            if line.startswith("RESULT\t"):
                rows.append(line.split("\t")[1:])
            else:
                print(f"  [{script}] {line}")
        if result.returncode:
            failed.append(script)
            print(f"  [{script}] failed:\n{result.stderr[-2000:]}")
    header = ("measure", "figure", "goal", "")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    print()
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    lines = ["# Benchmark results\n", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}.",
             "Each figure is a ratio against a reference measured in the same run (see each script's "
             "docstring).\n", "| measure | figure | goal | |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
