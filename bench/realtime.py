"""Realtime (WebSocket) replay: messages per second and pacing, against a direct local
WebSocket server in the same run.

  (a) throughput: one client message, then 2,000 small server messages as fast as they go:
      replayed through the proxy (`vcr_timing=none`, over the proxy's TLS, the in-process
      player behind mitmproxy's WebSocket relay) against the same messages sent by a local
      wss:// server straight to the client; the figure is the ratio, the goal an absolute
      1,000 messages/s (realtime APIs send well under 200 a second per session; the path is
      two Python hops, mitmproxy's relay and the player).
  (b) lateness: 100 server messages recorded 20 ms apart, replayed with `vcr_timing=events`;
      how late each reached the client against its recorded offset from the client message
      it answers (mean and worst, ms). Goal: mean <= 5 ms.

Run: `.venv/bin/python bench/realtime.py` (the test dependencies: `make bench` installs them).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.server import serve  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from bench.results import report  # noqa: E402
from proxy_addon.realtime.format import Message, Session, message_line  # noqa: E402
from tests.proxy import Proxy  # noqa: E402
from tests.upstream import free_port, make_certificate  # noqa: E402

COUNT, PACED, GAP_MS = 2000, 100, 20.0
URL = "wss://api.openai.com/v1/realtime?model=bench"


def payload(index: int) -> str:
    return json.dumps({"type": "response.output_text.delta", "event_id": f"event_{index}", "delta": "tok "})


def write_sidecar(path: Path, count: int, gap_ms: float) -> None:
    session = Session(0, URL)
    lines = [session.open_line(), message_line(0, Message(True, 1.0, "go"))]
    lines += [message_line(0, Message(False, 1.0 + gap_ms * (i + 1), payload(i))) for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def run_client(proxy_url: str | None, url: str, context: ssl.SSLContext, count: int) -> list[float]:
    """Send "go", read `count` messages; when each arrived, in seconds after "go" was sent."""
    options = {"proxy": proxy_url} if proxy_url else {"proxy": None}
    with connect(url, ssl=context, open_timeout=30, max_size=None, compression=None, **options) as websocket:
        start = time.monotonic()
        websocket.send("go")
        return [websocket.recv(30) and time.monotonic() - start for _ in range(count)]


def direct_server(cert: Path, key: Path) -> tuple[int, threading.Event]:
    port, ready, stop = free_port(), threading.Event(), threading.Event()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def handler(websocket) -> None:
        await websocket.recv()
        for index in range(COUNT):
            await websocket.send(payload(index))
        await websocket.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, ssl=context, compression=None):
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    ready.wait(10)
    return port, stop


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cert, key = make_certificate(root)
        port, stop = direct_server(cert, key)
        direct_context = ssl.create_default_context(cafile=cert)
        direct = min(run_client(None, f"wss://127.0.0.1:{port}/", direct_context, COUNT)[-1] for _ in range(3))
        stop.set()

        write_sidecar(root / "fast" / "cassettes" / "default.realtime.jsonl", COUNT, 0.0)
        proxy = Proxy(root / "fast", vcr_mode="replay", vcr_timing="none", vcr_allow_repeats="true").start()
        try:
            context = ssl.create_default_context(cafile=proxy.ca)
            replayed = min(run_client(proxy.url, URL, context, COUNT)[-1] for _ in range(3))
        finally:
            proxy.stop()
        ratio = direct / replayed
        print(f"direct: {COUNT / direct:,.0f} messages/s; replayed: {COUNT / replayed:,.0f} messages/s")
        report("realtime replay, messages/s vs a direct local WebSocket server",
               f"{ratio:.2f}x ({COUNT / replayed:,.0f}/s)", ">= 1,000/s", COUNT / replayed >= 1000)

        write_sidecar(root / "paced" / "cassettes" / "default.realtime.jsonl", PACED, GAP_MS)
        proxy = Proxy(root / "paced", vcr_mode="replay", vcr_timing="events").start()
        try:
            context = ssl.create_default_context(cafile=proxy.ca)
            arrivals = run_client(proxy.url, URL, context, PACED)
        finally:
            proxy.stop()
        late = [max(0.0, at * 1e3 - GAP_MS * (i + 1)) for i, at in enumerate(arrivals)]
        mean = sum(late) / len(late)
        print(f"paced replay lateness: mean {mean:.2f} ms, worst {max(late):.2f} ms")
        report("realtime replay lateness (vcr_timing=events), mean / worst", f"{mean:.1f} / {max(late):.1f} ms",
               "mean <= 5 ms", mean <= 5)


if __name__ == "__main__":
    main()
