"""The app under a plain ASGI WebSocket server (no fast paths): Bayeux still works."""

from __future__ import annotations

import asyncio

import orjson
import websockets
from helpers.asgi_server import serving

from realtime.app import create_app
from realtime.settings import Settings


async def test_round_trip_held_connect_and_disconnect_over_plain_asgi() -> None:
    app = create_app(Settings(timeout_s=1.0))
    async with (
        serving(app, ws="websockets-sansio") as url,
        websockets.connect(url.replace("http", "ws") + "/bayeux") as ws,
    ):
        await ws.send(
            orjson.dumps(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "supportedConnectionTypes": ["websocket"],
                    }
                ]
            ).decode()
        )
        cid = orjson.loads(await ws.recv())[0]["clientId"]
        connect = {"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}
        await ws.send(orjson.dumps([connect]).decode())
        assert orjson.loads(await ws.recv())[0]["successful"]
        await ws.send(
            orjson.dumps(
                [connect, {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/p"}]
            ).decode()
        )
        assert orjson.loads(await ws.recv())[0]["channel"] == "/meta/subscribe"
        await ws.send(orjson.dumps([{"channel": "/p", "data": "hi", "id": "m1"}]).decode())
        frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 2)) for _ in range(2)]
        assert [{"channel": "/p", "data": "hi", "id": "m1"}] in frames, frames
        await ws.send(orjson.dumps([{"channel": "/meta/disconnect", "clientId": cid}]).decode())
        replies = []
        while True:
            try:
                replies += orjson.loads(await asyncio.wait_for(ws.recv(), 2))
            except websockets.ConnectionClosed:
                break
        assert any(r.get("channel") == "/meta/disconnect" and r["successful"] for r in replies), replies
