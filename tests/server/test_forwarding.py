"""Non-sticky long-polling: any node answers for a session owned by another live node."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from helpers.asgi_server import serving

from realtime.app import create_app
from realtime.broker.memory import MemoryBroker, MemoryHub
from realtime.settings import Settings


def hs() -> dict[str, Any]:
    return {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}


def conn(cid: str, **kw: Any) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", **kw}


async def test_a_session_is_served_through_any_node_and_dies_with_its_owner() -> None:
    hub = MemoryHub()
    a = create_app(Settings(timeout_s=2.0, node_id="a"), MemoryBroker("a", hub))
    b = create_app(Settings(timeout_s=2.0, node_id="b"), MemoryBroker("b", hub))
    async with serving(a) as url_a, serving(b) as url_b, httpx.AsyncClient(timeout=10) as http:
        post = http.post
        cid = (await post(url_a + "/bayeux", json=[hs()])).json()[0]["clientId"]
        assert cid.startswith("a-")
        # Every later request goes to node b, which holds no session.
        first = (await post(url_b + "/bayeux", json=[conn(cid)])).json()
        assert first[0]["successful"], first
        sub = (
            await post(
                url_b + "/bayeux",
                json=[{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/f/x"}],
            )
        ).json()
        assert sub[0]["successful"], sub
        held = asyncio.ensure_future(post(url_b + "/bayeux", json=[conn(cid)]))
        await asyncio.sleep(0.2)
        assert not held.done()
        await post(url_b + "/bayeux", json=[{"channel": "/f/x", "data": "via b"}])
        reply = (await asyncio.wait_for(held, 5)).json()
        assert reply[0]["successful"] and reply[1] == {"channel": "/f/x", "data": "via b"}
        assert b.engine.sessions == {} and cid in a.engine.sessions

        await a.stop()  # the owner leaves the cluster
        gone = (await post(url_b + "/bayeux", json=[conn(cid)])).json()
        assert gone[0]["error"] == f"401:{cid}:Unknown client" and gone[0]["advice"] == {
            "reconnect": "handshake"
        }


async def test_messages_come_back_to_the_owner_when_the_client_leaves_mid_relay() -> None:
    hub = MemoryHub()
    a = create_app(Settings(timeout_s=2.0, node_id="a"), MemoryBroker("a", hub))
    b = create_app(Settings(timeout_s=2.0, node_id="b"), MemoryBroker("b", hub))
    async with serving(a) as url_a, serving(b) as url_b, httpx.AsyncClient(timeout=10) as http:
        cid = (await http.post(url_a + "/bayeux", json=[hs()])).json()[0]["clientId"]
        await http.post(url_a + "/bayeux", json=[conn(cid)])
        await http.post(
            url_a + "/bayeux", json=[{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/g"}]
        )
        # A poll through b that the client abandons before the owner answers.
        async with httpx.AsyncClient(timeout=0.3) as impatient:
            with contextlib.suppress(httpx.TimeoutException):
                await impatient.post(url_b + "/bayeux", json=[conn(cid, advice={"timeout": 1000})])
        await http.post(url_a + "/bayeux", json=[{"channel": "/g", "data": 1}])
        await asyncio.sleep(1.0)  # the owner's hold ends; b finds its client gone and gives back
        reply = (await http.post(url_a + "/bayeux", json=[conn(cid, advice={"timeout": 0})])).json()
        assert [m.get("data") for m in reply if "successful" not in m] == [1]
