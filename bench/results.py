"""One line per measured figure, so that `bench/run_all.py` can tabulate every script's results."""

from __future__ import annotations


def report(name: str, figure: str, goal: str, met: bool | None) -> None:
    status = "n/a" if met is None else ("met" if met else "MISSED")
    print(f"RESULT\t{name}\t{figure}\t{goal}\t{status}", flush=True)
