"""Exchanges that go wrong: the proxy keeps serving everyone else and records no half
interaction."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from proxy_addon.cassette import load

from ..proxy import Proxy

RESPONSES = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\": 1}\r\n",
    b"/malformed": b"HTTP/1.1 two hundred\r\nnot a header line\r\n\r\n",
    b"/reset": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"9\r\ndata: 1\n\n\r\n",
    b"/never": None,
}


class RawUpstream:
    """A plain-HTTP upstream that misbehaves on purpose, one way per path."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].split(b"?")[0]
        answer = RESPONSES.get(path, RESPONSES[b"/ok"])
        if answer is None:
            await asyncio.sleep(3600)
        writer.write(answer)
        await writer.drain()
        writer.transport.abort()  # a reset, not a clean close


@pytest.fixture(scope="module")
def raw_upstream():
    return RawUpstream()


def _fail(client: httpx.Client, path: str) -> None:
    if path == "/malformed":  # the proxy answers for the upstream, with a 502
        assert client.get(f"https://openrouter.ai{path}").status_code == 502
    else:  # a reset mid-stream, or no answer until the client gives up
        with pytest.raises(httpx.HTTPError):
            client.get(f"https://openrouter.ai{path}").read()


@pytest.mark.parametrize("path", ["/malformed", "/reset", "/never"])
def test_a_broken_exchange_leaves_other_clients_served_and_no_half_interaction(tmp_path, raw_upstream, path):
    proxy = Proxy(tmp_path, vcr_mode="record", vcr_upstream=f"http://127.0.0.1:{raw_upstream.port}").start()
    try:
        with proxy.client(timeout=3) as client:
            assert client.get("https://openrouter.ai/ok").json() == {"ok": 1}
            _fail(client, path)
        # Everyone else is still served while (or after) that exchange failed.
        with proxy.client(timeout=10) as other:
            assert other.get("https://openrouter.ai/ok?again").json() == {"ok": 1}
    finally:
        proxy.stop()
    cassette = load(tmp_path / "cassettes" / "default.yaml")
    urls = [i.request.url for i in cassette.interactions]
    if path == "/reset":
        # A stream the upstream cut off is kept, marked partial, so replay can repeat the cut.
        partial = [i for i in cassette.interactions if i.request.url.endswith("/reset")]
        assert len(partial) == 1 and partial[0].response.headers["X-Vcr-Partial"] == ["true"]
        urls.remove("https://openrouter.ai/reset")
    assert urls == ["https://openrouter.ai/ok", "https://openrouter.ai/ok?again"]
