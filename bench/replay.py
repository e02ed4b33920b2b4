"""Replay throughput, as ratios against mitmproxy itself in the same run.

Requests per second for one small JSON response, over HTTPS through mitmdump, from the same
client (16 concurrent keep-alive connections), served by:
  (a) vcr-proxy replay (`-s proxy_addon/addon.py --set vcr_mode=replay`);
  (b) mitmproxy's own `server_replay` with the same flow;
  (c) a bare addon that answers a constant response: the floor of what mitmproxy can do.
Goals: (a) >= 1.5x (b) and >= 0.9x (c).
Then the time to the first replayed byte from a 10 MB cassette, cold (the cassette is loaded
by that first request) and warm.

Run: `.venv/bin/python bench/replay.py` (needs the test dependencies: `make test` installs them).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import report  # noqa: E402
from proxy_addon.cassette import Cassette, Interaction, Request, Response  # noqa: E402
from tests.proxy import Proxy  # noqa: E402

URL = "https://openrouter.ai/api/v1/models"
BODY = b'{"data": [{"id": "moonshotai/kimi-k2-0905", "name": "Kimi K2", "context_length": 262144}]}'
CONCURRENCY = 16
SECONDS = 4.0

CONSTANT_ADDON = f'''
from mitmproxy import http

BODY = {BODY!r}


def request(flow: http.HTTPFlow) -> None:
    flow.response = http.Response.make(200, BODY, {{"Content-Type": "application/json"}})
'''


def write_cassette(path: Path) -> None:
    interaction = Interaction(id=0, request=Request(proto="HTTP/1.1", proto_major=1, proto_minor=1,
                                                    url=URL, method="GET"),
                              response=Response(proto="HTTP/2.0", proto_major=2, body=BODY.decode(),
                                                content_length=len(BODY), status="200 OK", code=200,
                                                headers={"Content-Type": ["application/json"]}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Cassette(interactions=[interaction]).dumps())


def write_flows(path: Path) -> None:
    from mitmproxy import http, io
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request = http.Request.make("GET", URL)
    flow.response = http.Response.make(200, BODY, {"Content-Type": "application/json"})
    with open(path, "wb") as stream:
        io.FlowWriter(stream).add(flow)


async def throughput(proxy: Proxy) -> float:
    context = ssl.create_default_context(cafile=proxy.ca)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(proxy=proxy.url, verify=context, limits=limits, timeout=30) as client:
        for _ in range(CONCURRENCY * 2):  # warm up connections
            assert (await client.get(URL)).content == BODY
        count = 0
        deadline = time.monotonic() + SECONDS

        async def worker():
            nonlocal count
            while time.monotonic() < deadline:
                response = await client.get(URL)
                assert response.content == BODY, response.text[:200]
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.monotonic() - started)


def first_byte(folder: Path) -> None:
    interactions = []
    chunk = "data: " + "x" * 1000 + "\n\n"
    for n in range(100):
        body = chunk * 100  # 100 KB each: 10 MB in all
        interactions.append(Interaction(id=n, request=Request(url=f"{URL}/{n}", method="GET"),
                                        response=Response(body=body, code=200, status="200 OK",
                                                          headers={"Content-Type": ["text/event-stream"]})))
    path = folder / "big" / "cassettes" / "default.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Cassette(interactions=interactions).dumps())
    proxy = Proxy(folder / "big", vcr_mode="replay").start()
    try:
        with proxy.client() as client:
            timings = []
            for n in (99, 50):
                started = time.monotonic()
                with client.stream("GET", f"{URL}/{n}") as response:
                    for index, _ in enumerate(response.iter_raw()):
                        if index == 0:
                            timings.append(time.monotonic() - started)
    finally:
        proxy.stop()
    report("replay: first byte from a 10 MB cassette, cold / warm",
           f"{timings[0] * 1e3:.0f} ms / {timings[1] * 1e3:.1f} ms", "-", None)
    print(f"first byte from a {path.stat().st_size / 1e6:.1f} MB cassette: cold {timings[0] * 1e3:.0f} ms "
          f"(loads the cassette), warm {timings[1] * 1e3:.1f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_cassette(folder / "vcr" / "cassettes" / "default.yaml")
        write_flows(folder / "flows.mitm")
        (folder / "constant.py").write_text(CONSTANT_ADDON)
        servers = {
            "vcr-proxy replay": Proxy(folder / "vcr", vcr_mode="replay", vcr_allow_repeats="true"),
            "mitmproxy server_replay": Proxy(folder / "sr", addon=False, connection_strategy="lazy",
                                             server_replay=str(folder / "flows.mitm"),
                                             server_replay_reuse="true"),
            "constant-response addon": Proxy(folder / "const", addon=False, connection_strategy="lazy"),
        }
        servers["constant-response addon"].args += ["-s", str(folder / "constant.py")]
        rates = {}
        for label, proxy in servers.items():
            proxy.start()
        try:
            for _ in range(2):  # alternate, keep the better of two runs each
                for label, proxy in servers.items():
                    rates[label] = max(rates.get(label, 0.0), asyncio.run(throughput(proxy)))
        finally:
            for proxy in servers.values():
                proxy.stop()
        ours = rates["vcr-proxy replay"]
        print(f"replay throughput, {CONCURRENCY} keep-alive HTTPS connections, best of 2 x {SECONDS:.0f} s:")
        for label, rate in rates.items():
            print(f"  {label:26} {rate:8.0f} req/s")
        versus_replay = ours / rates["mitmproxy server_replay"]
        versus_constant = ours / rates["constant-response addon"]
        report("replay: req/s vs mitmproxy server_replay", f"{versus_replay:.2f}x", ">= 1.5x",
               versus_replay >= 1.5)
        report("replay: req/s vs constant-response addon", f"{versus_constant:.2f}x", ">= 0.9x",
               versus_constant >= 0.9)
        print(f"  vcr-proxy / server_replay  {ours / rates['mitmproxy server_replay']:8.2f}x (goal >= 1.5x)")
        print(f"  vcr-proxy / constant addon {ours / rates['constant-response addon']:8.2f}x (goal >= 0.9x)")
        first_byte(folder)


if __name__ == "__main__":
    main()
