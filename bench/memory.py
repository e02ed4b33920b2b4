"""Memory, against the proxy's own size at rest in the same run (peak RSS from /proc).

- Replaying a 100 MB set of cassettes (20 files of 5 MB, every one loaded): the growth of
  the proxy's peak RSS as a multiple of the set's size. Goal: <= 3x.
- Recording one 50 MB stream: the growth as a multiple of the stream's size. Goal: it does
  not grow with the stream beyond the copy kept (about 1x).
- Decoding a gzip bomb (1 MB on the wire, 1 GB decoded) through the recorder's decode path,
  in a process of its own: peak RSS as a multiple of RSS at rest. Goal: the bomb is refused
  at vcr_max_body (256 MiB), so the peak stays under rest + 1.25x that, far under the 1 GB.

- Through the proxy (`vcr-proxy start`): a 1 GiB gzip bomb recorded (goal: peak RSS under
  512 MB), then 100 streams of 10 MB each abandoned by the client after 1 MB (RSS after, as a
  multiple of RSS at rest: nothing kept).
- Through the proxy: six chat requests of 50 MB each (an image as base64) recorded on one
  keep-alive connection; RSS once they are saved, the client still connected, as a multiple of
  RSS at rest. Goal: <= 1.5x (nothing kept).

Run: `.venv/bin/python bench/memory.py` (needs the test dependencies: `make test` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
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


_BOMB = """
import sys, zlib
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from proxy_addon.recorder import BodyTooLarge, DEFAULT_MAX_BODY, decode_body

def memory():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
zeros = bytes(1 << 20)
bomb = b"".join([compressor.compress(zeros) for _ in range(1024)] + [compressor.flush()])
del zeros
rest, rest_peak = memory()
try:
    decode_body(bomb, "gzip")
    refused = False
except BodyTooLarge:
    refused = True
_, peak = memory()
print(len(bomb), rest, max(rest_peak, rest), peak, DEFAULT_MAX_BODY, int(refused))
"""


def gzip_bomb() -> None:
    """In a process of its own, so that its peak RSS is the decode's and nothing else's."""
    root = str(Path(__file__).resolve().parent.parent)
    output = subprocess.run([sys.executable, "-c", _BOMB, root], capture_output=True, text=True,
                            check=True).stdout.split()
    size, rest, rest_peak, peak, limit, refused = map(int, output)
    ratio = peak / rest
    print(f"gzip bomb: {size / 1e6:.1f} MB decoding to 1 GiB; RSS at rest {rest / 1e6:.0f} MB, "
          f"peak {peak / 1e6:.0f} MB ({ratio:.1f}x rest), refused at {limit >> 20} MiB: {bool(refused)}")
    report("record: peak RSS decoding a 1 GB gzip bomb, x RSS at rest", f"{ratio:.1f}x",
           f"refused; peak < rest + 1.25 x vcr_max_body ({limit >> 20} MiB)",
           bool(refused) and peak - rest < 1.25 * limit)


def proxy_bomb_and_aborts(folder: Path) -> None:
    """Through the real proxy: a 1 GiB gzip bomb recorded, then 100 streams of 10 MB that the
    client abandons after 1 MB. Peak RSS for the first, RSS after for the second."""
    cert, key = make_certificate(folder)
    upstream = Upstream(cert, key, http2=False, event_delay=0.0).start()
    proxy = Proxy(folder / "bomb", upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record",
                  launcher=True).start()
    try:
        time.sleep(0.5)
        rest, _ = memory(proxy.process.pid)
        with proxy.client(timeout=300) as client:
            with client.stream("GET", "https://openrouter.ai/bomb?mb=1024") as response:
                wire = sum(len(data) for data in response.iter_raw())
            time.sleep(2)  # the save (and its refusal) follows the answer
            _, peak = memory(proxy.process.pid)
            for n in range(100):
                with client.stream("GET", f"https://openrouter.ai/events?n=1000&pad=10000&a={n}") as response:
                    read = 0
                    for data in response.iter_raw():
                        read += len(data)
                        if read > 1 << 20:
                            break
            time.sleep(2)
            after, _ = memory(proxy.process.pid)
    finally:
        proxy.stop()
        upstream.stop()
    print(f"through the proxy: RSS at rest {rest / 1e6:.0f} MB; a {wire / 1e6:.1f} MB gzip bomb of 1 GiB: "
          f"peak {peak / 1e6:.0f} MB ({peak / rest:.1f}x rest); after 100 aborted 10 MB streams: "
          f"{after / 1e6:.0f} MB ({after / rest:.1f}x rest)")
    report("proxy: peak RSS while a 1 GB gzip bomb passes, x RSS at rest", f"{peak / rest:.1f}x",
           "< 512 MB", peak < 512e6)
    # 100 streams of up to 10 MB each: copies kept until a garbage collection would show here.
    report("proxy: RSS after 100 aborted 10 MB streams, x RSS at rest", f"{after / rest:.1f}x",
           "<= 1.5x (nothing kept)", after <= 1.5 * rest)


def image_request(seed: int, size: int) -> bytes:
    image = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    return json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"What is in picture {seed}?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]}).encode()


def record_big_bodies(folder: Path, count: int = 6, size: int = 50_000_000) -> None:
    """Six 50 MB request bodies recorded through `vcr-proxy start`, one after the other on one
    connection: RSS once all are saved (the client still connected) against RSS at rest."""
    cert, key = make_certificate(folder)
    upstream = Upstream(cert, key, http2=False).start()
    proxy = Proxy(folder / "big", upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record",
                  launcher=True).start()
    try:
        with proxy.client(timeout=120) as client:
            client.post(URL, json={"model": "m", "messages": []})  # what recording loads, loaded
            time.sleep(1)
            rest, _ = memory(proxy.process.pid)
            for n in range(count):
                response = client.post(URL, content=image_request(n, size),
                                       headers={"Content-Type": "application/json"})
                assert response.status_code == 200, response.text[:200]
                upstream.requests.clear()  # the stand-in's copy, in this process
            deadline = time.monotonic() + 60
            while proxy.output().count("recorded POST") < count + 1:
                assert time.monotonic() < deadline, proxy.output()[-2000:]
                time.sleep(0.1)
            time.sleep(2)
            after, peak = memory(proxy.process.pid)
    finally:
        proxy.stop()
        upstream.stop()
    print(f"record: {count} request bodies of {size / 1e6:.0f} MB; RSS at rest {rest / 1e6:.0f} MB, "
          f"peak {peak / 1e6:.0f} MB, after {after / 1e6:.0f} MB ({after / rest:.2f}x rest)")
    report(f"proxy: RSS after {count} recorded {size / 1e6:.0f} MB request bodies, x RSS at rest",
           f"{after / rest:.2f}x", "<= 1.5x (nothing kept)", after <= 1.5 * rest)


def main() -> None:
    gzip_bomb()
    with tempfile.TemporaryDirectory() as name:
        replay_set(Path(name))
        record_stream(Path(name))
        proxy_bomb_and_aborts(Path(name))
        record_big_bodies(Path(name))


if __name__ == "__main__":
    main()
