"""Timed replay at load-test scale: how many concurrent streams the replay proxy holds.

Clients (Go, bench/streamgen, so that the proxy is the bottleneck and not the client) each open
a new TLS connection per stream, as a load test's virtual users do, and read a 51-event stream
whose events are due 20 ms apart after 200 ms (its recorded timeline, replayed with
`--timing events`). For 10, 20, 50, 100 and 200 concurrent clients, 6 s each: the p99 of the
events' lateness, through `vcr-proxy start --workers N` (one worker per core) and through one
worker (what a core holds). The reference is a Go HTTPS server sending the same stream on the
same machine, read directly. Figure: the most streams held at p99 <= 10 ms, replay (reference).
Goal: >= 200. Workers serve through the direct front (vcr_front=direct, the default with
--workers); one worker is measured through it and through mitmproxy's layers.

Run: `.venv/bin/python bench/capacity.py` (needs Go: `make test` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import go_binary, report  # noqa: E402
from proxy_addon.cassette import Cassette, Interaction, Request, Response  # noqa: E402
from proxy_addon.timing import Timing, body_hash, sidecar_path  # noqa: E402
from tests.proxy import Proxy  # noqa: E402
from tests.upstream import make_certificate  # noqa: E402

FIRST_MS, GAP_MS, EVENTS = 200, 20, 51
LEVELS = (10, 20, 50, 100, 200)
SECONDS = 6
URL = "https://openrouter.ai/api/v1/chat/completions"


def write_cassette(path: Path) -> None:
    body = "".join(f'data: {{"n": {n}}}\n\n' for n in range(EVENTS))
    interaction = Interaction(id=0, request=Request(url=URL, method="POST", body='{"stream": true}',
                                                    headers={"Content-Type": ["application/json"]}),
                              response=Response(body=body, code=200, status="200 OK",
                                                headers={"Content-Type": ["text/event-stream"]}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Cassette(interactions=[interaction]).dumps())
    timing = Timing(id=0, body_hash=body_hash(body), headers_ms=FIRST_MS,
                    events_ms=[FIRST_MS + n * GAP_MS for n in range(EVENTS)],
                    end_ms=FIRST_MS + (EVENTS - 1) * GAP_MS)
    sidecar_path(path).write_text(timing.to_json() + "\n")


def p99(binary: Path, proxy: str, ca: Path, url: str, clients: int,
        seconds: float = SECONDS) -> tuple[float, int]:
    result = subprocess.run([str(binary), "load", proxy, str(ca), url, str(clients), str(seconds),
                             str(FIRST_MS), str(GAP_MS), str(EVENTS)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"streamgen failed: {result.stderr}")
    late, _, failures = result.stdout.split()
    return float(late), int(failures)


def capacity(figures: dict[int, tuple[float, int]]) -> int:
    held = [level for level, (late, failures) in figures.items() if late <= 10 and not failures]
    return max(held, default=0)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        binary = go_binary(folder, "streamgen")
        cert, key = make_certificate(folder)
        server = subprocess.Popen([str(binary), "serve", str(cert), str(key), str(FIRST_MS),
                                   str(GAP_MS), str(EVENTS)], stdout=subprocess.PIPE, text=True)
        reference_url = server.stdout.readline().strip()
        write_cassette(folder / "vcr" / "cassettes" / "default.yaml")
        workers = os.cpu_count() or 1
        setups = (("replay", workers, "direct"), ("one worker", 1, "direct"),
                  ("mitmproxy front", 1, "mitmproxy"))
        proxies = {name: Proxy(folder / "vcr", launcher=True, workers=count, vcr_mode="replay",
                               vcr_timing="events", vcr_allow_repeats="true",
                               vcr_front=front).start()
                   for name, count, front in setups}
        figures: dict[str, dict[int, tuple[float, int]]] = {name: {} for name in proxies}
        figures["reference"] = {}
        try:
            for proxy in proxies.values():  # first connections make certificates: not measured
                p99(binary, proxy.url, proxy.ca, URL, 10, seconds=1)
            for level in LEVELS:
                figures["reference"][level] = p99(binary, "direct", cert, reference_url, level)
                for name, proxy in proxies.items():
                    figures[name][level] = p99(binary, proxy.url, proxy.ca, URL, level)
                print(f"{level:4d} streams: p99 lateness replay ({workers} workers) "
                      f"{figures['replay'][level][0]:7.2f} ms ({figures['replay'][level][1]} failed), "
                      f"one worker {figures['one worker'][level][0]:7.2f} ms, one worker through "
                      f"mitmproxy's layers {figures['mitmproxy front'][level][0]:7.2f} ms, direct Go "
                      f"server {figures['reference'][level][0]:6.2f} ms")
        finally:
            for proxy in proxies.values():
                proxy.stop()
            server.kill()
        held, reference = capacity(figures["replay"]), capacity(figures["reference"])
        report(f"timed replay ({workers} workers): streams held at p99 <= 10 ms (direct Go server)",
               f"{held} ({reference})", ">= 200", held >= 200)
        report("timed replay, one worker: streams held at p99 <= 10 ms", str(capacity(figures["one worker"])),
               "-", None)
        report("timed replay, one worker through mitmproxy's layers (vcr_front=mitmproxy): "
               "streams held at p99 <= 10 ms", str(capacity(figures["mitmproxy front"])), "-", None)


if __name__ == "__main__":
    main()
