"""Speed of reading cassettes as conversations, as ratios against `vcr-proxy check` on the same
files (the same process start, load and validation, so the ratio is what reading costs on top).

- show: `vcr-proxy show` on the corpus's largest cassette. Goal: under 2 s.
- report: `vcr-proxy report` on the whole corpus into one HTML file. Goal: under 2 s.

Each command runs as a user runs it (a new process), best of 5.
Run: `make bench` (or .venv/bin/python bench/reading.py [CORPUS_DIR]).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "corpus"
CLI = [sys.executable, str(ROOT / "scripts" / "vcr-proxy")]
GOAL_SECONDS = 2.0


def best_of(runs: int, args: list[str]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(CLI + args, capture_output=True)
        best = min(best, time.perf_counter() - start)
        if result.returncode not in (0, 1):
            sys.exit(f"bench/reading.py: {' '.join(args[:1])} failed: {result.stderr.decode()[-500:]}")
    return best


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.results import report

    files = sorted(CORPUS.rglob("*.yaml"))
    if not files:
        sys.exit(f"bench/reading.py: no cassettes under {CORPUS}")
    largest = max(files, key=lambda f: f.stat().st_size)
    runs = 5
    with tempfile.TemporaryDirectory() as folder:
        output = str(Path(folder) / "report.html")
        t_show, t_show_check = best_of(runs, ["show", str(largest)]), best_of(runs, ["check", str(largest)])
        t_report, t_report_check = (best_of(runs, ["report", str(CORPUS), "-o", output]),
                                    best_of(runs, ["check", str(CORPUS)]))
        size = Path(output).stat().st_size
    print(f"show {largest.name} ({largest.stat().st_size / 1e3:.0f} KB): {t_show:.3f} s; "
          f"check: {t_show_check:.3f} s")
    print(f"report on {len(files)} cassettes ({size / 1e3:.0f} KB of HTML): {t_report:.3f} s; "
          f"check: {t_report_check:.3f} s")
    report("show on the largest cassette vs check", f"{t_show / t_show_check:.2f}x ({t_show:.2f} s)",
           f"< {GOAL_SECONDS:.0f} s", t_show < GOAL_SECONDS)
    report("report on the whole corpus vs check", f"{t_report / t_report_check:.2f}x ({t_report:.2f} s)",
           f"< {GOAL_SECONDS:.0f} s", t_report < GOAL_SECONDS)


if __name__ == "__main__":
    main()
