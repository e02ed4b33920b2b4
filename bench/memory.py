"""Memory, against the proxy's own size at rest in the same run (peak RSS from /proc).

- Replaying a 100 MB set of cassettes (20 files of 5 MB, every one loaded): the growth of
  the proxy's peak RSS as a multiple of the set's size. Goal: <= 3x.
- Recording one 50 MB stream: the growth as a multiple of the stream's size. Goal: it does
  not grow with the stream beyond the copy kept (about 1x).

Run: `.venv/bin/python bench/memory.py` (needs the test dependencies: `make test` installs them).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import report  # noqa: E402
from proxy_addon.cassette import Cassette, Interaction, Request, Response  # noqa: E402
from tests.proxy import Proxy  # noqa: E402
from tests.upstream import Upstream, make_certificate  # noqa: E402

URL = "https://openrouter.ai/api/v1/chat/completions"


def memory(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def replay_set(folder: Path) -> None:
    cassettes = folder / "replay" / "cassettes"
    cassettes.mkdir(parents=True)
    body = ('data: {"choices": [{"delta": {"content": "' + "token " * 1600 + '"}}]}\n\n')
    total = 0
    for c in range(20):
        interactions = [Interaction(id=n, request=Request(url=f"{URL}?c={c}&n={n}", method="POST", body="{}"),
                                    response=Response(body=body * 10, code=200, status="200 OK",
                                                      headers={"Content-Type": ["application/json"]}))
                        for n in range(50)]
        path = cassettes / f"c{c}.yaml"
        path.write_text(Cassette(interactions=interactions).dumps())
        total += path.stat().st_size
    proxy = Proxy(folder / "replay", vcr_mode="replay").start()
    try:
        time.sleep(0.5)
        rest, _ = memory(proxy.process.pid)
        with proxy.client(timeout=120) as client:
            for c in range(20):
                response = client.post(f"{URL}?c={c}&n=0", content=b"{}",
                                       headers={"X-Vcr-Cassette": f"c{c}"})
                assert response.status_code == 200, response.text[:200]
        _, peak = memory(proxy.process.pid)
    finally:
        proxy.stop()
    ratio = (peak - rest) / total
    print(f"replay: {total / 1e6:.0f} MB of cassettes loaded; RSS at rest {rest / 1e6:.0f} MB, "
          f"peak {peak / 1e6:.0f} MB -> growth {ratio:.2f}x the set")
    report("replay: peak RSS growth for a 100 MB cassette set", f"{ratio:.2f}x", "<= 3x", ratio <= 3)


def record_stream(folder: Path) -> None:
    cert, key = make_certificate(folder)
    upstream = Upstream(cert, key, http2=False, event_delay=0.0).start()
    proxy = Proxy(folder / "record", upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record").start()
    events, pad = 5000, 10_000
    try:
        time.sleep(0.5)
        rest, _ = memory(proxy.process.pid)
        received = 0
        with proxy.client(timeout=300) as client:
            with client.stream("GET", f"https://openrouter.ai/events?n={events}&pad={pad}") as response:
                for data in response.iter_raw():
                    received += len(data)
        deadline = time.monotonic() + 60
        cassette = proxy.cassettes / "default.yaml"
        while not (cassette.exists() and cassette.stat().st_size > received):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _, peak = memory(proxy.process.pid)
    finally:
        proxy.stop()
        upstream.stop()
    ratio = (peak - rest) / received
    print(f"record: one {received / 1e6:.0f} MB stream; RSS at rest {rest / 1e6:.0f} MB, "
          f"peak {peak / 1e6:.0f} MB -> growth {ratio:.2f}x the stream")
    report("record: peak RSS growth for a 50 MB stream", f"{ratio:.2f}x", "~1x (the copy kept)",
           ratio <= 1.25)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        replay_set(Path(name))
        record_stream(Path(name))


if __name__ == "__main__":
    main()
