"""An in-process node (engine + server + MemoryBroker) with a clock the test moves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from feeds.apps import App
from realtime.broker.memory import MemoryBroker, MemoryHub
from realtime.engine.engine import Engine
from realtime.metrics import Stats
from realtime.security.guard import build_guard
from realtime.server import BayeuxServer, Context
from realtime.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    server: BayeuxServer
    engine: Engine
    clock: Clock
    broker: MemoryBroker
    stats: Stats
    events: list[tuple[Any, ...]] = field(default_factory=list)

    async def send(
        self, *messages: dict[str, Any], transport: str = "long-polling", wait_s: float = 2.0
    ) -> list[Any]:
        """One batch in; the decoded reply array out, held connects awaited (bounded)."""
        result = await self.server.process(list(messages), Context(transport))
        parts = list(result.replies)
        pending = result.pending
        if pending is not None:
            await asyncio.wait_for(asyncio.shield(pending.future), wait_s)
            encoded = await self.server.finish(pending)
            assert encoded is not None
            parts.insert(0, encoded)
            if not pending.session.closed:
                parts.extend(pending.session.drain())
        return [orjson.loads(p) for p in parts]

    async def handshake(self) -> str:
        reply = await self.send(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        assert reply[0]["successful"], reply
        cid: str = reply[0]["clientId"]
        first = await self.send(connect(cid))
        assert first[0]["successful"]
        return cid


def connect(cid: str, **extra: Any) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", **extra}


def subscribe(cid: str, sub: Any, **extra: Any) -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "clientId": cid, "subscription": sub, **extra}


def make_node(
    hub: MemoryHub | None = None, name: str = "n1", apps: list[App] | None = None, **overrides: Any
) -> Node:
    specs = tuple(f"{a.app_id}:{a.api_key}:{a.api_secret}" for a in apps or [])
    settings = Settings(timeout_s=1.0, apps=specs, **overrides)
    clock = Clock()
    stats = Stats()
    broker = MemoryBroker(name, hub)
    guard = build_guard(settings, stats, apps or [])
    guard.clock = clock
    engine = Engine(
        broker,
        stats,
        session_ttl_s=settings.session_expiry_s,
        max_queue=settings.max_queue_messages,
        max_sessions=settings.max_sessions,
        clock=clock,
        routing_keys=guard.policy.routing_keys,
    )
    server = BayeuxServer(settings, engine, guard)
    node = Node(server, engine, clock, broker, stats)
    for name_ in ("handshake", "subscribe", "unsubscribe", "publish", "disconnect"):
        server.events.on(name_, lambda *args, n=name_: node.events.append((n, *args)))
    return node
