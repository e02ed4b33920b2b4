"""Speed of the cassette format, as ratios against PyYAML's C (libyaml) code on the same data.

- emitter: our byte-exact writer against `yaml.dump(..., Dumper=CDumper)` of the same cassettes
  as plain dicts and lists. Goal: throughput >= 1.0x CDumper's.
- loader: our `load` (parse, Go typing, checks) against a bare `yaml.load(..., CSafeLoader)`.
  Goal: time <= 1.2x CSafeLoader's.

Run: `make bench` (or .venv/bin/python bench/format.py [CORPUS_DIR]).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import report  # noqa: E402
from proxy_addon.cassette import loads  # noqa: E402

CORPUS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "corpus"


def best_of(runs: int, function) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    files = sorted(CORPUS.rglob("*.yaml"))
    if not files:
        sys.exit(f"bench/format.py: no cassettes under {CORPUS}")
    texts = [f.read_bytes() for f in files]
    cassettes = [loads(t) for t in texts]
    plain = [dataclasses.asdict(c) for c in cassettes]
    for data in plain:
        data.pop("layout"), data.pop("ignored")
    size = sum(map(len, texts))

    def ours_dump():
        for c in cassettes:
            c.dumps()

    def cdumper():
        for data in plain:
            yaml.dump(data, Dumper=yaml.CDumper, sort_keys=False, allow_unicode=True, width=1 << 30)

    def ours_load():
        for t in texts:
            loads(t)

    def csafeloader():
        for t in texts:
            yaml.load(t, Loader=yaml.CSafeLoader)

    runs = 7
    t_dump, t_cdump = best_of(runs, ours_dump), best_of(runs, cdumper)
    t_load, t_cload = best_of(runs, ours_load), best_of(runs, csafeloader)
    mb = size / 1e6
    print(f"corpus: {len(files)} cassettes, {mb:.2f} MB; best of {runs} runs")
    print(f"{'':24}{'ours':>10}{'PyYAML C':>12}{'ratio':>9}  goal")
    print(f"{'emit (MB/s)':24}{mb / t_dump:10.1f}{mb / t_cdump:12.1f}{t_cdump / t_dump:8.2f}x  "
          f">= 1.0x CDumper throughput")
    report("emitter throughput vs PyYAML CDumper", f"{t_cdump / t_dump:.2f}x", ">= 1.0x",
           t_cdump / t_dump >= 1.0)
    report("load time vs PyYAML CSafeLoader", f"{t_load / t_cload:.2f}x", "<= 1.2x", t_load / t_cload <= 1.2)
    print(f"{'load (ms, whole corpus)':24}{t_load * 1e3:10.1f}{t_cload * 1e3:12.1f}{t_load / t_cload:8.2f}x  "
          f"<= 1.2x CSafeLoader time")


if __name__ == "__main__":
    main()
