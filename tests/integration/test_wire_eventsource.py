"""EventSource (bayeux-spec.md §7.6): `GET <mount>/<clientId>` streams `data: [...]` events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx

from .bayeux_wire import Message, Wire, fresh_channel


async def next_data(lines: AsyncIterator[str], within_s: float) -> list[Message]:
    """The next `data:` payload of the stream, skipping retry lines and keep-alive comments."""
    deadline = time.monotonic() + within_s
    while True:
        line = await asyncio.wait_for(anext(lines), timeout=max(0.05, deadline - time.monotonic()))
        if line.startswith("data:"):
            decoded = json.loads(line[len("data:") :].strip())
            assert isinstance(decoded, list), line
            return decoded


async def test_eventsource_stream_receives_published_messages(wire: Wire) -> None:
    channel = fresh_channel()
    client_id = await wire.handshake(["eventsource", "long-polling"])
    reply = await wire.subscribe(client_id, channel)
    assert reply["successful"] is True
    headers = {"accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as streamer,
        streamer.stream("GET", f"{wire.url}/{client_id}", headers=headers) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in stream.headers["cache-control"]
        lines = stream.aiter_lines()
        started = time.monotonic()
        [connected] = await wire.post([wire.connect_message(client_id, connection_type="eventsource")])
        # Messages go to the stream, so an eventsource connect is never held.
        assert time.monotonic() - started < 1.0
        assert connected["successful"] is True and connected["clientId"] == client_id
        for n in range(2):
            await wire.publish(channel, {"n": n})
        first = await next_data(lines, within_s=3.0)
        second = await next_data(lines, within_s=3.0)
        assert [m["data"] for m in first + second] == [{"n": 0}, {"n": 1}]
        assert all(m["channel"] == channel and "clientId" not in m for m in first + second)
