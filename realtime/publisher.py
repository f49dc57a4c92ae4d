"""``Publisher``: publish to Bayeux channels from a backend process, straight through Redis.

It joins no routing itself (it holds no subscribers and receives nothing): it reads the member
set, loads every node's filter snapshot, follows their deltas on the control channel, and sends
each message only to the nodes whose filter may hold ``expand(channel)``, batched per node as a
node's own publishes are (``RedisLink``). Subscribers receive ``{"channel", "data"[, "id"][, "ext"]}``.

::

    async with Publisher("redis://127.0.0.1:6379/0") as pub:
        await pub.publish("/chat/room1", {"text": "hi"})
        await pub.publish_many([("/feed/u1", item), ("/feed/u2", item)])
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import orjson

from realtime.bayeux.channels import expand, is_valid_name
from realtime.broker.redis_link import RedisLink, split_url_options


class Publisher(RedisLink):
    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str | None = None,
        routing: str = "filter",
        heartbeat_s: float = 1.0,
        ttl_s: float = 3.0,
        connect_wait_s: float = 3.0,
    ) -> None:
        """``redis_url`` is the nodes' broker URL (its ``key_prefix`` option included, which an
        explicit ``key_prefix`` overrides)."""
        url, options = split_url_options(redis_url)
        prefix = key_prefix if key_prefix is not None else options.get("key_prefix", "rt:")
        super().__init__(url, None, key_prefix=prefix, routing=routing, heartbeat_s=heartbeat_s, ttl_s=ttl_s)
        self.connect_wait_s = connect_wait_s
        self.publishes = 0

    async def start(self) -> None:
        """Connect and load the replicas; ``ConnectionError`` if Redis does not answer in time."""
        await self._start_link(self.connect_wait_s)
        if not self.connected:
            await self._stop_link()
            raise ConnectionError(f"cannot reach Redis at {self.url}")

    async def close(self) -> None:
        await self._stop_link()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def nodes(self) -> list[str]:
        """Live nodes currently known (each with a loaded filter replica)."""
        return self.replicas.live(None)

    def _envelope(self, channel: str, data: Any, ext: Any, id: str | None) -> bytes:
        if not is_valid_name(channel) or channel.startswith(("/meta/", "/service/")):
            raise ValueError(f"not a channel one can publish to: {channel!r}")
        message: dict[str, Any] = {"channel": channel, "data": data}
        if id is not None:
            message["id"] = id
        if ext is not None:
            message["ext"] = ext
        return channel.encode() + b"\n" + orjson.dumps(message)

    def _queue(self, items: list[tuple[str, bytes]]) -> None:
        if not self.connected:
            raise ConnectionError("not connected to Redis")
        for channel, envelope in items:
            self.submit(expand(channel), envelope)
        self.publishes += len(items)

    async def publish(self, channel: str, data: Any, ext: Any = None, id: str | None = None) -> None:
        """Route one message; returns once it is on the wire to Redis (``ConnectionError`` if not)."""
        self._queue([(channel, self._envelope(channel, data, ext, id))])
        await self._flush_future()

    async def publish_many(self, messages: Iterable[tuple[str, Any]], ext: Any = None) -> None:
        """Route many messages as one batch: one Redis message per target node (a feed fan-out)."""
        # Encode (and validate) everything first: a bad channel sends nothing.
        self._queue([(channel, self._envelope(channel, data, ext, None)) for channel, data in messages])
        await self._flush_future()
