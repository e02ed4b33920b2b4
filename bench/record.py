"""Cost of recording, as ratios against bare mitmdump in the same run.

1. The same local SSE stream (500 events, 1 ms apart, HTTPS, from a local upstream) is read
   through bare `mitmdump` (streaming bodies: `stream_large_bodies=1`; by default it would
   hold the whole stream back) and through `mitmdump -s proxy_addon/addon.py` recording it,
   alternately. For each event: the time from the upstream sending it to the client
   reading it. Prints the added latency per event (p50, p99), and the ratio of the median
   time to first byte over 40 short streams each, every one on a new connection.
   Goals: <= 0.3 ms added per event at p50; TTFB <= 1.05x.
2. Saving interaction 1 of a new cassette against saving interaction 1000 of a large one.
   Goal: <= 2x.

Run: `.venv/bin/python bench/record.py` (needs the test dependencies: `make test` installs them).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import report  # noqa: E402
from proxy_addon.cassette import Cassette, Interaction, Request, Response  # noqa: E402
from proxy_addon.persisters.filesystem import CassetteWriter  # noqa: E402
from proxy_addon.serializers.emitter import DEFAULT_LAYOUT  # noqa: E402
from proxy_addon.timing import Timing  # noqa: E402
from tests.proxy import Proxy  # noqa: E402
from tests.upstream import Upstream, make_certificate  # noqa: E402

EVENTS = 500
ROUNDS = 6
TTFB_SAMPLES = 40


def read_stream(proxy: Proxy, url: str, upstream: Upstream) -> tuple[float, list[float]]:
    """(time to first byte, per-event delay from upstream send to client read), in seconds."""
    upstream.event_sent_at.clear()
    arrivals = []
    with proxy.client() as client:
        started = time.monotonic()
        with client.stream("GET", url) as response:
            first_byte = time.monotonic() - started
            buffer = b""
            for data in response.iter_raw():
                now = time.monotonic()
                buffer += data
                while b"\n\n" in buffer:
                    _, buffer = buffer.split(b"\n\n", 1)
                    arrivals.append(now)
    sent = [upstream.event_sent_at[n] for n in range(len(arrivals))]
    return first_byte, [a - s for a, s in zip(arrivals, sent)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stream_latency(folder: Path) -> None:
    cert, key = make_certificate(folder)
    upstream = Upstream(cert, key, http2=False, event_delay=0.001).start()
    # Bare mitmdump buffers whole bodies unless told to stream them; the fair reference streams.
    bare = Proxy(folder / "bare", upstream_ca=cert, addon=False, stream_large_bodies="1")
    recording = Proxy(folder / "rec", upstream_ca=cert, vcr_mode="record", vcr_upstream=upstream.url)
    for proxy in (bare, recording):
        proxy.folder.mkdir(parents=True, exist_ok=True)
        proxy.start()
    results = {"bare": ([], []), "record": ([], [])}
    try:
        for _ in range(ROUNDS):
            for name, proxy, url in (("bare", bare, f"{upstream.url}/events?n={EVENTS}"),
                                     ("record", recording, f"https://openrouter.ai/events?n={EVENTS}")):
                _, delays = read_stream(proxy, url, upstream)
                results[name][1].extend(delays)
        # Time to first byte, each on a new connection (CONNECT and TLS included): many short
        # streams, alternating, as one sample each is noisy on a shared machine.
        for _ in range(TTFB_SAMPLES):
            for name, proxy, url in (("bare", bare, f"{upstream.url}/events?n=2"),
                                     ("record", recording, "https://openrouter.ai/events?n=2")):
                ttfb, _ = read_stream(proxy, url, upstream)
                results[name][0].append(ttfb)
    finally:
        bare.stop()
        recording.stop()
        upstream.stop()
    (bare_ttfb, bare_delays), (rec_ttfb, rec_delays) = results["bare"], results["record"]
    p50 = (percentile(rec_delays, 0.5) - percentile(bare_delays, 0.5)) * 1e3
    p99 = (percentile(rec_delays, 0.99) - percentile(bare_delays, 0.99)) * 1e3
    ttfb = statistics.median(rec_ttfb) / statistics.median(bare_ttfb)
    report("record: added latency per event, p50", f"{p50:+.3f} ms", "<= 0.3 ms", p50 <= 0.3)
    report("record: added latency per event, p99", f"{p99:+.3f} ms", "-", None)
    report("record: time to first byte vs bare mitmdump", f"{ttfb:.2f}x", "<= 1.05x", ttfb <= 1.05)
    print(f"stream: {ROUNDS} x {EVENTS} SSE events, 1 ms apart, bare mitmdump vs recording addon")
    print(f"  per-event delay p50: bare {percentile(bare_delays, 0.5) * 1e3:.3f} ms, "
          f"recording {percentile(rec_delays, 0.5) * 1e3:.3f} ms -> added {p50:+.3f} ms "
          f"(goal <= 0.3 ms)")
    print(f"  per-event delay p99: bare {percentile(bare_delays, 0.99) * 1e3:.3f} ms, "
          f"recording {percentile(rec_delays, 0.99) * 1e3:.3f} ms -> added {p99:+.3f} ms")
    print(f"  time to first byte: bare {statistics.median(bare_ttfb) * 1e3:.2f} ms, recording "
          f"{statistics.median(rec_ttfb) * 1e3:.2f} ms -> {ttfb:.2f}x (goal <= 1.05x)")


def sample_interaction(n: int) -> tuple[Interaction, Timing]:
    body = "".join(f'data: {{"n": {i}, "text": "token {i}"}}\n\n' for i in range(200))
    interaction = Interaction(
        id=n, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1, url="https://openrouter.ai/api/v1/chat/completions",
                              method="POST", body='{"model": "m", "stream": true}', content_length=30),
        response=Response(proto="HTTP/2.0", proto_major=2, content_length=-1, body=body,
                          headers={"Content-Type": ["text/event-stream"]}, status="200 OK",
                          code=200, duration=123_456_789))
    return interaction, Timing(n, "0" * 16, 123.4, [float(i) for i in range(200)], 500.0)


def save_cost(folder: Path) -> None:
    samples = 20
    first = []
    for n in range(samples):
        writer = CassetteWriter(folder / f"new-{n}.yaml", DEFAULT_LAYOUT, fresh=True)
        interaction, timing = sample_interaction(0)
        started = time.perf_counter()
        writer.append(interaction, timing)
        first.append(time.perf_counter() - started)
    big = folder / "big.yaml"
    big.write_text(Cassette(interactions=[sample_interaction(n)[0] for n in range(999)]).dumps())
    writer = CassetteWriter(big, DEFAULT_LAYOUT, fresh=False)
    later = []
    for n in range(samples):
        interaction, timing = sample_interaction(writer.reserve_id())
        started = time.perf_counter()
        writer.append(interaction, timing)
        later.append(time.perf_counter() - started)
    size = big.stat().st_size / 1e6
    ratio = statistics.median(later) / statistics.median(first)
    report("record: save interaction 1000 vs interaction 1", f"{ratio:.2f}x", "<= 2x", ratio <= 2)
    print(f"save: interaction 1 of a new cassette {statistics.median(first) * 1e3:.2f} ms; "
          f"interaction 1000+ of a {size:.1f} MB cassette {statistics.median(later) * 1e3:.2f} ms "
          f"-> {ratio:.2f}x (goal <= 2x; medians of {samples})")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        stream_latency(Path(folder))
        save_cost(Path(folder))


if __name__ == "__main__":
    main()
