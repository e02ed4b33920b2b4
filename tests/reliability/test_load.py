"""200 concurrent streams recorded into one cassette and into 20: none lost, none mixed,
ids in the order the requests reached the proxy."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ..proxy import Proxy
from ..test_record import CHAT, recorded
from ..upstream import Upstream, make_certificate
from . import scaled

STREAMS = scaled(200)


@pytest.mark.parametrize("cassettes", [1, 20])
def test_concurrent_streams_are_all_recorded_whole_with_ids_in_request_order(tmp_path, cassettes):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key, event_delay=0.01).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record").start()

    async def one(client, n, started: asyncio.Event):
        async with client.stream("POST", CHAT, json={"stream": True, "gated": True, "n": n},
                                 headers={"X-Vcr-Cassette": f"load/c{n % cassettes}"}) as response:
            started.set()
            return [line async for line in response.aiter_lines() if line]

    async def all_of_them():
        # Request n is sent once request n-1 has its response headers (so the proxy has seen
        # it), and every stream then waits at the upstream until all are open: the
        # request order is known, and the streams run, and end, all at once.
        async with proxy.async_client(limits=httpx.Limits(max_connections=STREAMS),
                                      timeout=60 + STREAMS * 0.2) as client:
            tasks = []
            for n in range(STREAMS):
                started = asyncio.Event()
                tasks.append(asyncio.create_task(one(client, n, started)))
                await asyncio.wait_for(started.wait(), 60)
            upstream.gate.set()
            return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(all_of_them())
        assert upstream.released_by_test is True
        assert all(r[-1] == "data: [DONE]" and len(r) == 7 for r in results)
        seen = []
        for c in range(cassettes):
            cassette = recorded(proxy.cassettes / "load" / f"c{c}.yaml", STREAMS // cassettes)
            id_of = {}
            for interaction in cassette.interactions:
                n = json.loads(interaction.request.body)["n"]
                assert n % cassettes == c
                assert interaction.response.body.count("data: ") == 7
                assert interaction.response.body.endswith("data: [DONE]\n\n")
                id_of[n] = interaction.id
            assert [id_of[n] for n in sorted(id_of)] == list(range(STREAMS // cassettes))
            seen += id_of
        assert sorted(seen) == list(range(STREAMS))
    finally:
        proxy.stop()
        upstream.stop()
