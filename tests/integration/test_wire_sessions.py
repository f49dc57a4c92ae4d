"""Session lifetime, shutdown and the operational endpoints, each on a server of its own."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .bayeux_wire import Wire, fresh_channel
from .conftest import Server, ServerFactory


@pytest.mark.slow
async def test_session_survives_short_gaps_and_expires_after_twice_the_timeout(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(timeout_s=1.0)
    async with httpx.AsyncClient(timeout=10.0) as client:
        wire = Wire(client, srv.url, srv.timeout_s)
        client_id = await wire.session(fresh_channel())
        for _ in range(3):  # gaps of 1.2 x timeout keep it alive
            await asyncio.sleep(1.2)
            [reply] = await wire.connect(client_id, 0)
            assert reply["successful"] is True, reply
        last_ping = time.monotonic()
        # Subscribe does not refresh the session, so it can probe for expiry.
        expired_after = None
        while time.monotonic() - last_ping < 6.0:
            reply = await wire.subscribe(client_id, fresh_channel())
            if not reply["successful"]:
                assert reply["error"] == f"401:{client_id}:Unknown client"
                expired_after = time.monotonic() - last_ping
                break
            await asyncio.sleep(0.1)
        assert expired_after is not None, "the session never expired"
        assert 1.5 <= expired_after <= 4.5, expired_after


@pytest.mark.slow
async def test_sigterm_answers_held_connects_closes_sockets_and_exits(server_factory: ServerFactory) -> None:
    srv = server_factory(timeout_s=20.0)
    async with httpx.AsyncClient(timeout=30.0) as client, ws_connect(srv.ws_url, open_timeout=5) as ws:
        wire = Wire(client, srv.url, srv.timeout_s)
        client_id = await wire.session()
        held = asyncio.create_task(wire.connect(client_id))
        await ws.send(
            json.dumps(
                {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}
            )
        )
        json.loads(await asyncio.wait_for(ws.recv(), timeout=3))
        await asyncio.sleep(0.3)
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        [reply] = await asyncio.wait_for(held, timeout=8.0)
        assert time.monotonic() - signalled < 6.0
        assert reply["channel"] == "/meta/connect"
        assert reply["advice"]["reconnect"] in ("retry", "handshake"), reply
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=8.0)
        assert closed.value.rcvd is not None and closed.value.rcvd.code in (1000, 1001, 1012)
    code = await asyncio.to_thread(srv.proc.wait, 10.0)
    assert code in (0, -signal.SIGTERM), srv.log()
    assert time.monotonic() - signalled < 10.0


async def test_health_and_metrics(wire: Wire, server: Server) -> None:
    assert (await wire.client.get(f"{server.base_url}/health")).status_code == 200
    await wire.session(fresh_channel())
    await wire.publish(fresh_channel(), 1)
    response = await wire.client.get(f"{server.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    for topic in ("connection", "session", "subscription", "message", "overflow"):
        assert any(topic in name for name in names), (topic, sorted(names))
