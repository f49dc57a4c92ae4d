"""In-process reference broker: several nodes in one event loop share a hub.

It keeps the exact key set of every node, so it never sends a false positive; the
Redis broker must behave the same from a node's point of view, except that it may.
Used by a single node (a hub of one: publishes go nowhere) and by multi-node tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from realtime.broker.base import DeliverCallback, NodeUnavailable, ServeCallback


class MemoryHub:
    """The shared medium: node id -> (keys, deliver callback)."""

    def __init__(self) -> None:
        self.nodes: dict[str, MemoryBroker] = {}
        self.sent = 0


class MemoryBroker:
    def __init__(self, node_id: str, hub: MemoryHub | None = None) -> None:
        self.node_id = node_id
        self.hub = hub if hub is not None else MemoryHub()
        self.keys: dict[str, None] = {}
        self._deliver: DeliverCallback | None = None
        self._serve: ServeCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, deliver: DeliverCallback, serve: ServeCallback | None = None) -> None:
        self._deliver = deliver
        self._serve = serve
        self._loop = asyncio.get_running_loop()
        self.hub.nodes[self.node_id] = self

    def key_added(self, key: str) -> None:
        self.keys[key] = None

    def key_removed(self, key: str) -> None:
        self.keys.pop(key, None)

    def publish(self, keys: Sequence[str], payload: bytes) -> None:
        for node in self.hub.nodes.values():
            if node is self or node._deliver is None or node._loop is None:
                continue
            if any(k in node.keys for k in keys):
                self.hub.sent += 1
                # Deliver on the next tick, as a network broker would: never re-enter
                # the publisher's fan-out loop.
                node._loop.call_soon(node._deliver, payload)

    def may_route_many(self, key_lists: Sequence[Sequence[str]]) -> list[bool]:
        others = [n for n in self.hub.nodes.values() if n is not self and n._deliver is not None]
        if not others:
            return [False] * len(key_lists)
        return [any(k in n.keys for n in others for k in keys) for keys in key_lists]

    def is_live(self, node_id: str) -> bool:
        return node_id in self.hub.nodes

    async def forward(self, node_id: str, payload: bytes, timeout_s: float) -> bytes:
        node = self.hub.nodes.get(node_id)
        if node is None or node._serve is None:
            raise NodeUnavailable(node_id)
        try:
            return await asyncio.wait_for(node._serve(payload), timeout_s)
        except TimeoutError as exc:
            raise NodeUnavailable(node_id) from exc

    async def close(self) -> None:
        self.hub.nodes.pop(self.node_id, None)
        self._deliver = None
