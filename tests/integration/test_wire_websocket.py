"""Raw WebSocket Bayeux (bayeux-spec.md §7.5): frames, held connects, pushes, dropped sockets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .bayeux_wire import DELIVERY_KEYS, Message, Wire, fresh_channel, next_id
from .conftest import Server

HANDSHAKE: Message = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["websocket"],
}


async def send(ws: ClientConnection, messages: Message | list[Message]) -> None:
    await ws.send(json.dumps(messages))


async def frame(ws: ClientConnection, within_s: float = 3.0) -> list[Message]:
    raw = await asyncio.wait_for(ws.recv(), timeout=within_s)
    decoded = json.loads(raw)
    assert isinstance(decoded, list), raw
    return decoded


async def ws_session(ws: ClientConnection, *channels: str) -> str:
    """Handshake, first connect (answered at once) and subscribe, all over the socket."""
    await send(ws, {**HANDSHAKE, "id": "h"})
    [reply] = await frame(ws)
    assert reply["successful"] is True and reply["id"] == "h", reply
    client_id: str = reply["clientId"]
    await send(
        ws, [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket", "id": "c0"}]
    )
    [connected] = await frame(ws)
    assert connected["id"] == "c0" and connected["successful"] is True
    if channels:
        await send(
            ws,
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": list(channels), "id": "s0"},
        )
        [subscribed] = await frame(ws)
        assert subscribed["successful"] is True, subscribed
    return client_id


def connect_message(client_id: str, **extra: Any) -> Message:
    return {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "websocket",
        "id": next_id(),
        **extra,
    }


async def test_handshake_reply_over_websocket(server: Server) -> None:
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        await send(ws, [{**HANDSHAKE, "id": "x"}])
        [reply] = await frame(ws)
        assert (
            reply["successful"] is True
            and reply["id"] == "x"
            and "websocket" in reply["supportedConnectionTypes"]
        )
        assert reply["advice"] == {
            "reconnect": "retry",
            "interval": 0,
            "timeout": int(server.timeout_s * 1000),
        }


async def test_held_connect_does_not_block_and_pushes_are_single_frames(wire: Wire, server: Server) -> None:
    channel, other = fresh_channel(), fresh_channel()
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        client_id = await ws_session(ws, channel)
        held = connect_message(client_id)
        held_at = time.monotonic()
        await send(ws, [held])
        await asyncio.sleep(0.2)
        await send(
            ws, {"channel": "/meta/subscribe", "clientId": client_id, "subscription": other, "id": "s1"}
        )
        [subscribed] = await frame(ws, within_s=1.0)
        assert subscribed == {
            "id": "s1",
            "clientId": client_id,
            "channel": "/meta/subscribe",
            "successful": True,
            "subscription": other,
        }
        # Three publishes in one HTTP batch: each arrives as its own one-message frame.
        await wire.post(
            [{"channel": ch, "data": n, "id": next_id()} for n, ch in enumerate([channel, other, channel])]
        )
        pushes = [await frame(ws, within_s=2.0) for _ in range(3)]
        assert [len(p) for p in pushes] == [1, 1, 1], pushes
        assert [(p[0]["channel"], p[0]["data"]) for p in pushes] == [(channel, 0), (other, 1), (channel, 2)]
        assert all(set(p[0]) <= DELIVERY_KEYS for p in pushes)
        # The held connect ends at the hold time with no messages in it.
        [answered] = await frame(ws, within_s=server.timeout_s + 2)
        elapsed = time.monotonic() - held_at
        assert answered["id"] == held["id"] and answered["successful"] is True
        assert server.timeout_s - 0.5 <= elapsed <= server.timeout_s + 1.5


async def test_batch_in_one_frame_is_answered_in_one_frame(server: Server) -> None:
    channel = fresh_channel()
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        client_id = await ws_session(ws)
        await send(
            ws,
            [
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel, "id": "a"},
                {"channel": channel + "/*", "data": 1, "id": "b"},
                {"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": channel, "id": "c"},
            ],
        )
        replies = await frame(ws)
        assert [(r["id"], r["successful"]) for r in replies] == [("a", True), ("b", False), ("c", True)]
        assert replies[1]["error"] == f"405:{channel}/*:Invalid channel"


@pytest.mark.parametrize("garbage", ["not json{", "42", '"str"', "", "[1,2", "\u0000"])
async def test_garbage_frame_is_ignored_and_the_socket_stays_usable(server: Server, garbage: str) -> None:
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        await ws.send(garbage)
        await send(ws, [{**HANDSHAKE, "id": "after"}])
        deadline = time.monotonic() + 3.0
        while True:  # the server may or may not answer the garbage; the handshake must follow
            replies = await frame(ws, within_s=max(0.1, deadline - time.monotonic()))
            if any(r.get("id") == "after" for r in replies):
                break
        assert next(r for r in replies if r.get("id") == "after")["successful"] is True
    assert server.is_healthy()


async def test_session_survives_a_dropped_socket_and_gets_its_queue(wire: Wire, server: Server) -> None:
    channel = fresh_channel()
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        client_id = await ws_session(ws, channel)
        await send(ws, [connect_message(client_id)])  # bound and held when the socket drops
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    for n in range(2):
        await wire.publish(channel, n)
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        await send(ws, [connect_message(client_id)])
        got: list[Message] = []
        connect_replies: list[Message] = []
        deadline = time.monotonic() + 3.0
        while len(got) < 2 and time.monotonic() < deadline:
            for message in await frame(ws, within_s=max(0.1, deadline - time.monotonic())):
                (connect_replies if message["channel"] == "/meta/connect" else got).append(message)
        assert [m["data"] for m in got] == [0, 1]
        assert all(r["successful"] is True for r in connect_replies), connect_replies


async def test_socket_is_closed_when_its_session_ends(wire: Wire, server: Server) -> None:
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        client_id = await ws_session(ws)
        await send(ws, [connect_message(client_id)])
        await asyncio.sleep(0.2)
        [reply] = await wire.post([{"channel": "/meta/disconnect", "clientId": client_id, "id": "d"}])
        assert reply["successful"] is True
        with pytest.raises(ConnectionClosed):
            for _ in range(5):  # a pending connect reply may come first; then the close
                await frame(ws, within_s=3.0)


async def test_connect_for_another_client_rebinds_the_socket(wire: Wire, server: Server) -> None:
    first_channel, second_channel = fresh_channel(), fresh_channel()
    async with ws_connect(server.ws_url, open_timeout=5) as ws:
        first = await ws_session(ws, first_channel)
        await ws_session(ws, second_channel)  # its connect takes the socket over
        await wire.publish(first_channel, "queued for first")
        await wire.publish(second_channel, "pushed to second")
        [push] = await frame(ws, within_s=2.0)
        assert (push["channel"], push["data"]) == (second_channel, "pushed to second")
    # The first session lost the socket but not its messages.
    assert [m["data"] for m in await wire.drain(first, 1)] == ["queued for first"]
