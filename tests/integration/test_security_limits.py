"""Per-address limits on a real server: each refused case is counted in /metrics."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest
import websockets

from .conftest import Server, ServerFactory


def counted(metrics: str, limit: str) -> float:
    m = re.search(rf'realtime_limit_rejections_total{{limit="{limit}"}} ([0-9.e+]+)', metrics)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def tight(server_factory: ServerFactory) -> Server:
    return server_factory(
        timeout_s=5.0,
        env={
            "REALTIME_MAX_CONNECTIONS_PER_IP": "2",
            "REALTIME_PUBLISHES_PER_IP_PER_S": "5",
            "REALTIME_MAX_LONG_POLLS": "1",
        },
    )


async def test_connections_per_address(tight: Server) -> None:
    async with websockets.connect(tight.ws_url), websockets.connect(tight.ws_url):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(tight.ws_url):
                pass
        assert refused.value.response.status_code == 403
    await asyncio.sleep(0.2)
    async with websockets.connect(tight.ws_url):
        pass  # slots are given back when sockets close
    async with httpx.AsyncClient() as http:
        assert counted((await http.get(tight.base_url + "/metrics")).text, "connections_per_ip") == 1


async def test_publish_rate_per_address(tight: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        replies = []
        for i in range(20):
            r = await http.post(tight.url, json={"channel": "/rate", "data": i})
            replies.append(r.json()[0])
        refused = [r for r in replies if not r["successful"]]
        assert 0 < len(refused) <= 20 - 10, "a burst of 2 s x 5/s passes, then refusals"
        assert refused[0]["error"] == "429:publish:Rate limit exceeded"
        assert counted((await http.get(tight.base_url + "/metrics")).text, "publish_rate_ip") == len(refused)


async def test_long_poll_concurrency(tight: Server) -> None:
    hs = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    async with httpx.AsyncClient(timeout=10) as http:
        ids = []
        for _ in range(2):
            cid = (await http.post(tight.url, json=[hs])).json()[0]["clientId"]
            await http.post(
                tight.url,
                json=[{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}],
            )
            ids.append(cid)
        connect = [{"channel": "/meta/connect", "clientId": ids[0], "connectionType": "long-polling"}]
        held = asyncio.ensure_future(http.post(tight.url, json=connect))
        await asyncio.sleep(0.3)
        assert not held.done()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        over = await http.post(tight.url, json=[{**connect[0], "clientId": ids[1]}])
        assert loop.time() - t0 < 1.0, "over the limit: answered at once instead of held"
        assert orjson.loads(over.content)[0]["advice"]["interval"] >= 1000
        assert counted((await http.get(tight.base_url + "/metrics")).text, "long_polls") == 1
        held.cancel()
