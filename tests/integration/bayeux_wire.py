"""Raw Bayeux over HTTP for the wire tests: build messages by hand, return replies untouched."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import httpx

Message = dict[str, Any]
_ids = itertools.count(1)

# Keys a delivered (broadcast) message may carry: never `successful`, never the publisher's id.
DELIVERY_KEYS = {"channel", "data", "id", "ext"}


def fresh_channel(prefix: str = "/t") -> str:
    """A channel no other test uses, so tests can share one server."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def next_id() -> str:
    return f"m{next(_ids)}"


class Wire:
    """One HTTP client speaking long-polling JSON to the Bayeux mount."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float) -> None:
        self.client = client
        self.url = url
        self.timeout_s = timeout_s

    async def post(self, messages: Message | list[Message], **kwargs: Any) -> list[Message]:
        response = await self.client.post(self.url, json=messages, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json"), response.headers
        replies = response.json()
        assert isinstance(replies, list), replies
        return replies

    async def handshake(self, types: list[str] | None = None) -> str:
        replies = await self.post(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "id": next_id(),
                    "supportedConnectionTypes": types or ["long-polling"],
                }
            ]
        )
        assert replies[0]["successful"] is True, replies
        client_id: str = replies[0]["clientId"]
        return client_id

    def connect_message(
        self, client_id: str, timeout_ms: int | None = None, connection_type: str = "long-polling"
    ) -> Message:
        message: Message = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "id": next_id(),
            "connectionType": connection_type,
        }
        if timeout_ms is not None:
            message["advice"] = {"timeout": timeout_ms}
        return message

    async def connect(self, client_id: str, timeout_ms: int | None = None) -> list[Message]:
        return await self.post([self.connect_message(client_id, timeout_ms)])

    async def timed_connect(
        self, client_id: str, timeout_ms: int | None = None
    ) -> tuple[float, list[Message]]:
        started = time.monotonic()
        replies = await self.connect(client_id, timeout_ms)
        return time.monotonic() - started, replies

    async def session(self, *channels: str) -> str:
        """Handshake, take the (immediate) first connect, subscribe: a ready long-poll client."""
        client_id = await self.handshake()
        await self.connect(client_id, 0)
        if channels:
            reply = await self.subscribe(client_id, list(channels))
            assert reply["successful"] is True, reply
        return client_id

    async def subscribe(
        self, client_id: str, subscription: str | list[str], channel: str = "/meta/subscribe"
    ) -> Message:
        replies = await self.post(
            [{"channel": channel, "clientId": client_id, "id": next_id(), "subscription": subscription}]
        )
        assert len(replies) == 1, replies
        return replies[0]

    async def publish(self, channel: str, data: Any, **fields: Any) -> Message:
        replies = await self.post([{"channel": channel, "data": data, "id": next_id(), **fields}])
        assert len(replies) == 1, replies
        return replies[0]

    async def drain(self, client_id: str, want: int, within_s: float = 5.0) -> list[Message]:
        """Collect `want` delivered messages with immediate connects, bounded in time."""
        got: list[Message] = []
        deadline = time.monotonic() + within_s
        while len(got) < want and time.monotonic() < deadline:
            replies = await self.connect(client_id, 0)
            assert replies[0]["channel"] == "/meta/connect" and replies[0]["successful"] is True, replies
            got.extend(replies[1:])
            if len(got) < want:
                await asyncio.sleep(0.05)
        return got
