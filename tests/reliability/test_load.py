"""200 concurrent streams recorded into one cassette and into 20: none lost, none mixed."""

from __future__ import annotations

import asyncio
import json

import pytest

from ..proxy import Proxy
from ..test_record import CHAT, recorded
from ..upstream import Upstream, make_certificate

STREAMS = 200


@pytest.mark.parametrize("cassettes", [1, 20])
def test_two_hundred_concurrent_streams(tmp_path, cassettes):
    cert, key = make_certificate(tmp_path)
    upstream = Upstream(cert, key, event_delay=0.01).start()
    proxy = Proxy(tmp_path, upstream_ca=cert, vcr_upstream=upstream.url, vcr_mode="record").start()

    async def one(client, n):
        async with client.stream("POST", CHAT, json={"stream": True, "n": n},
                                 headers={"X-Vcr-Cassette": f"load/c{n % cassettes}"}) as response:
            return [line async for line in response.aiter_lines() if line]

    async def all_of_them():
        async with proxy.async_client(limits=__import__("httpx").Limits(max_connections=STREAMS)) as client:
            return await asyncio.gather(*(one(client, n) for n in range(STREAMS)))

    try:
        results = asyncio.run(all_of_them())
        assert all(r[-1] == "data: [DONE]" and len(r) == 7 for r in results)
        seen = []
        for c in range(cassettes):
            cassette = recorded(proxy.cassettes / "load" / f"c{c}.yaml", STREAMS // cassettes)
            ids = [i.id for i in cassette.interactions]
            assert sorted(ids) == list(range(STREAMS // cassettes))
            for interaction in cassette.interactions:
                n = json.loads(interaction.request.body)["n"]
                assert n % cassettes == c
                assert interaction.response.body.count("data: ") == 7
                assert interaction.response.body.endswith("data: [DONE]\n\n")
                seen.append(n)
        assert sorted(seen) == list(range(STREAMS))
    finally:
        proxy.stop()
        upstream.stop()
