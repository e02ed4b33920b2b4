"""Big bodies: what a multimodal request costs, as ratios against bare mitmdump in the same run.

1. Scrub throughput: scrubbing a 5.3 MB chat request (a 4 MB image as base64) and a 4.6 MB
   conversation (5,000 messages) of credentials, against `json.loads` of the same body.
   Goal: >= 200 MB/s on both (the figure printed is MB/s, the ratio to json.loads beside it).
2. The same 5.3 MB request (a new image each time), through bare `mitmdump` forwarding to a
   local HTTPS upstream, through `vcr-proxy start --mode record` recording it, and through
   `vcr-proxy start --mode replay` answering it from that recording; median of 6 requests each,
   alternating, each on a keep-alive connection of its own proxy. Goal: <= 1.5x bare mitmdump.
3. `vcr-proxy check` on a 1.2 MB cassette whose 300 request bodies are aliases of one 1 MB
   anchor. Goal: < 1 s.
4. Many interactions: finding a recorded request (a hit, after the first) and naming the
   nearest recording on a miss, in a cassette of 50,000 chat interactions against one of 10
   (the matcher alone, the cassette already loaded). Goal: <= 10x.
5. Loading that cassette of 50,000 interactions from its file (`proxy_addon.cassette.load`, in
   this process, the first load), against PyYAML's C loader (`yaml.load` with CSafeLoader) on
   the same bytes. Goal: <= 3 s. `vcr-proxy check` on the file is timed too (printed).

Run: `.venv/bin/python bench/bigbody.py` (needs the test dependencies: `make test` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import report  # noqa: E402
import yaml  # noqa: E402

from proxy_addon.cassette import Cassette, Interaction, Request, Response, load  # noqa: E402
from proxy_addon.credentials import scrub_request  # noqa: E402
from proxy_addon.matchers import IncomingRequest, Matcher, MatchRules  # noqa: E402
from tests.proxy import Proxy  # noqa: E402
from tests.upstream import Upstream, make_certificate  # noqa: E402

ROUNDS = 6
URL = "https://openrouter.ai/api/v1/chat/completions"
KEY = "sk-or-v1-" + "0123456789abcdef" * 4


def image_request(seed: int) -> bytes:
    image = base64.b64encode(os.urandom(4_000_000)).decode()
    return json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"What is in picture {seed}?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]}).encode()


def conversation() -> bytes:
    words = "The quick brown fox asks what the key to the night is, and the token count. "
    return json.dumps({"model": "m", "messages": [
        {"role": "user" if n % 2 else "assistant", "content": words * 10, "name": f"n{n}"}
        for n in range(5000)]}).encode()


def best_of(runs: int, function, body: bytes) -> float:
    best = float("inf")
    for run in range(runs):
        # A body not seen before each time: what is remembered per body must not flatter it.
        fresh = b'{"run": %d, ' % run + body[1:]
        started = time.perf_counter()
        function(fresh)
        best = min(best, time.perf_counter() - started)
    return best


def scrub_throughput() -> None:
    headers = [("Authorization", f"Bearer {KEY}"), ("Content-Type", "application/json")]
    for label, body in (("5.3 MB image request", image_request(0)), ("4.6 MB conversation", conversation())):
        parse = best_of(5, json.loads, body)
        scrub = best_of(5, lambda b: scrub_request(URL, headers, b, "application/json"), body)
        rate = len(body) / scrub / 1e6
        print(f"scrub {label}: {scrub * 1e3:.1f} ms ({rate:.0f} MB/s); json.loads {parse * 1e3:.1f} ms")
        report(f"scrub throughput, {label} (x json.loads)", f"{rate:.0f} MB/s ({parse / scrub:.2f}x)",
               ">= 200 MB/s", rate >= 200)


def post(client, url: str, body: bytes) -> float:
    started = time.perf_counter()
    response = client.post(url, content=body, headers={"Authorization": f"Bearer {KEY}",
                                                        "Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        sys.exit(f"{url}: {response.status_code} {response.text[:300]}")
    return elapsed


def big_requests(folder: Path) -> None:
    cert, key = make_certificate(folder)
    upstream = Upstream(cert, key, http2=False).start()
    bodies = [image_request(n) for n in range(ROUNDS)]
    bare = Proxy(folder / "bare", upstream_ca=cert, addon=False).start()
    recording = Proxy(folder / "vcr", upstream_ca=cert, launcher=True, vcr_mode="record",
                      vcr_upstream=upstream.url).start()
    times = {"bare": [], "record": [], "replay": []}
    try:
        with bare.client() as direct, recording.client() as recorder:
            post(direct, f"{upstream.url}/v1/chat/completions", bodies[0])  # warm both up
            for body in bodies:
                times["bare"].append(post(direct, f"{upstream.url}/v1/chat/completions", body))
                times["record"].append(post(recorder, URL, body))
        recording.stop()
        replaying = Proxy(folder / "vcr", launcher=True, vcr_mode="replay").start()
        try:
            with bare.client() as direct, replaying.client() as replayer:
                for body in bodies:
                    times["bare"].append(post(direct, f"{upstream.url}/v1/chat/completions", body))
                    times["replay"].append(post(replayer, URL, body))
        finally:
            replaying.stop()
    finally:
        bare.stop()
        recording.stop()
        upstream.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print("5.3 MB request, median of " + ", ".join(f"{name} {value * 1e3:.0f} ms"
                                                  for name, value in medians.items()))
    for mode in ("record", "replay"):
        ratio = medians[mode] / medians["bare"]
        report(f"{mode}: 5.3 MB request vs bare mitmdump", f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5)


def timed_check(path: Path) -> float:
    """Seconds `vcr-proxy check` takes on `path`, which must pass."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "proxy_addon.cli", "check", str(path)],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"check failed: {result.stderr}")
    return elapsed


def alias_check(folder: Path) -> None:
    anchor = "x" * 1_000_000
    lines = ["---", "version: 2", "interactions:"]
    for n in range(300):
        body = f"&big '{anchor}'" if n == 0 else "*big"
        lines += [f"    - id: {n}", "      request:", f"        body: {body}",
                  f"        url: {URL}", "        method: POST", "      response:",
                  "        body: '{}'", "        status: 200 OK", "        code: 200"]
    path = folder / "aliases.yaml"
    path.write_text("\n".join(lines) + "\n")
    elapsed = timed_check(path)
    print(f"check on 300 aliases of a 1 MB anchor: {elapsed:.2f} s")
    report("check: 300 aliases of one 1 MB body", f"{elapsed:.2f} s", "< 1 s", elapsed < 1)


def chat_interactions(count: int) -> list[Interaction]:
    return [Interaction(id=n, request=Request(
        url=URL, method="POST", headers={"Content-Type": ["application/json"]},
        body=json.dumps({"model": "m", "messages": [{"role": "user", "content": f"question {n}, asked in full"}]})),
        response=Response(body='{"choices": []}', code=200, status="200 OK")) for n in range(count)]


def many_interactions() -> None:
    timings = {}
    for count in (10, 50_000):
        interactions = chat_interactions(count)
        matcher = Matcher(MatchRules())
        index = matcher.index(interactions)

        def incoming(n: int, suffix: str = "") -> IncomingRequest:
            return IncomingRequest("POST", URL, json.dumps({"model": "m", "messages": [
                {"role": "user", "content": f"question {n}, asked in full{suffix}"}]}).encode())

        matcher.find(index, set(), incoming(0))  # the index is built on the first request
        hits, misses = [], []
        for n in range(1, 9):
            started = time.perf_counter()
            found, _ = matcher.find(index, set(), incoming(n))
            hits.append(time.perf_counter() - started)
            assert found is not None and found.id == n
            started = time.perf_counter()
            found, _ = matcher.find(index, set(), incoming(n, " again"))
            nearest = matcher.nearest(interactions, incoming(n, " again"))
            misses.append(time.perf_counter() - started)
            assert found is None and nearest is not None
        timings[count] = (statistics.median(hits), statistics.median(misses))
    for label, slot in (("match", 0), ("miss (nearest named)", 1)):
        small, large = timings[10][slot], timings[50_000][slot]
        print(f"{label}: 10 interactions {small * 1e3:.2f} ms, 50,000 {large * 1e3:.2f} ms")
        report(f"{label} on a 50,000-interaction cassette vs a 10-interaction one",
               f"{large / small:.1f}x ({large * 1e3:.1f} ms)", "<= 10x", large / small <= 10)


def big_load(folder: Path) -> None:
    path = folder / "many.yaml"
    with open(path, "wb") as handle:
        Cassette(interactions=chat_interactions(50_000)).write(handle.write)
    data = path.read_bytes()
    started = time.perf_counter()
    loaded = load(path)
    ours = time.perf_counter() - started
    assert len(loaded.interactions) == 50_000
    del loaded
    started = time.perf_counter()
    yaml.load(data, Loader=yaml.CSafeLoader)
    reference = time.perf_counter() - started
    check = timed_check(path)
    size = len(data) / 1e6
    print(f"load 50,000 interactions ({size:.1f} MB): {ours:.2f} s; PyYAML CSafeLoader {reference:.2f} s; "
          f"vcr-proxy check {check:.2f} s")
    report(f"load a 50,000-interaction cassette ({size:.0f} MB) vs PyYAML C loader",
           f"{ours:.2f} s ({ours / reference:.2f}x)", "<= 3 s", ours <= 3)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        big_load(Path(name))
    many_interactions()
    scrub_throughput()
    with tempfile.TemporaryDirectory() as name:
        big_requests(Path(name))
        alias_check(Path(name))


if __name__ == "__main__":
    main()
