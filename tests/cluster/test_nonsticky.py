"""Non-sticky long-polling across real node processes on Redis: a session is served through
any node while its owner lives, and is answered 401 + handshake advice once the owner is gone."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import NodeProcess
from .redis_server import delete_prefix, unique_prefix

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def hs() -> dict[str, Any]:
    return {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}


def connect(cid: str, **kw: Any) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", **kw}


async def test_long_polls_through_another_node_then_owner_killed(redis_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    url = f"{redis_url}?key_prefix={prefix}&heartbeat_s=0.25&ttl_s=1.5"
    owner, other = NodeProcess(url, "own", tmp_path), NodeProcess(url, "oth", tmp_path)
    try:
        owner.wait_ready()
        other.wait_ready()
        async with httpx.AsyncClient(timeout=10) as http:
            cid = (await http.post(owner.url, json=[hs()])).json()[0]["clientId"]
            assert cid.startswith("own-")
            deadline = time.monotonic() + 5
            while True:  # the other node must see the owner live before it forwards
                first = (await http.post(other.url, json=[connect(cid)])).json()
                if first[0]["successful"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
                cid = (await http.post(owner.url, json=[hs()])).json()[0]["clientId"]
            assert first[0]["successful"], first
            sub = {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/ns/x"}
            assert (await http.post(other.url, json=[sub])).json()[0]["successful"]
            held = asyncio.ensure_future(http.post(other.url, json=[connect(cid)]))
            await asyncio.sleep(0.3)
            assert not held.done(), "held at the owner, relayed by the other node"
            await http.post(other.url, json=[{"channel": "/ns/x", "data": "relayed"}])
            reply = (await asyncio.wait_for(held, 8)).json()
            assert reply[0]["successful"] and {"channel": "/ns/x", "data": "relayed"} in reply[1:]

            owner.signal(signal.SIGKILL)
            owner.proc.wait(5)
            deadline = time.monotonic() + 8
            while True:  # until the owner's heartbeat key expires, forwarding fails fast
                gone = (await http.post(other.url, json=[connect(cid, advice={"timeout": 0})])).json()[0]
                if not gone["successful"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert gone["error"] == f"401:{cid}:Unknown client" and gone["advice"] == {
                "reconnect": "handshake"
            }
    finally:
        owner.stop()
        other.stop()
        delete_prefix(redis_url, prefix)
