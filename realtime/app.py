"""create_app(settings) -> the ASGI application of one node.

Requests under the mount path (``/bayeux``, ``/bayeux/<anything>``, and WebSocket
upgrades there) go straight to the Bayeux transports as plain ASGI; everything else
(``/health``, ``/metrics``, the feed API) is a Starlette app. The lifespan starts the
broker and the session sweeper and, on shutdown, withdraws from routing first, then
answers held connects and closes every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from feeds.api import PREFIX as FEED_API_PREFIX
from feeds.api import FeedApi
from feeds.apps import development_app, parse_app
from realtime.broker.base import Broker
from realtime.broker.memory import MemoryBroker
from realtime.broker.redis import RedisBroker
from realtime.engine.engine import Engine
from realtime.feeds_bridge import BayeuxNotifier, build_feed_service
from realtime.inprocess import InProcessClient
from realtime.metrics import BrokerCollector, Stats, StatsCollector
from realtime.security.guard import build_guard
from realtime.server import BayeuxServer
from realtime.settings import Settings
from realtime.transports.direct_socket import DirectSocket
from realtime.transports.eventsource import serve_eventsource, wants_eventsource
from realtime.transports.forwarding import serve_forwarded
from realtime.transports.http import serve_http
from realtime.transports.websocket import serve_websocket
from realtime.transports.ws_protocol import FastWebSocketProtocol

log = logging.getLogger("realtime.app")


def make_broker(settings: Settings, node_id: str) -> Broker:
    if settings.broker.startswith("memory:"):
        return MemoryBroker(node_id)
    if settings.broker.startswith(
        ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    ):
        return RedisBroker.from_url(settings.broker, node_id, routing=settings.routing)
    raise ValueError(f"unsupported broker URL {settings.broker!r} (memory://, redis://, redis+cluster://)")


class RealtimeApp:
    """One node: engine + Bayeux server + transports + operational routes."""

    def __init__(
        self, settings: Settings, broker: Broker | None = None, routes: list[BaseRoute] | None = None
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id or secrets.token_hex(4)
        self.broker = broker if broker is not None else make_broker(settings, self.node_id)
        self.stats = Stats()
        self.apps = [parse_app(spec) for spec in settings.apps] or [development_app()]
        self.guard = build_guard(settings, self.stats, self.apps)
        self.engine = Engine(
            self.broker,
            self.stats,
            session_ttl_s=settings.session_expiry_s,
            max_queue=settings.max_queue_messages,
            max_sessions=settings.max_sessions,
            routing_keys=self.guard.policy.routing_keys,
        )
        self.server = BayeuxServer(settings, self.engine, self.guard)
        self.feeds = build_feed_service(settings, self.apps, BayeuxNotifier(self.server))
        self.registry = CollectorRegistry()
        self.registry.register(
            StatsCollector(
                self.stats,
                {
                    "sessions": ("Live sessions", lambda: float(len(self.engine.sessions))),
                    "subscriptions": (
                        "Session-channel subscriptions",
                        lambda: float(self.engine.index.count),
                    ),
                    "channels": (
                        "Distinct subscribed channels and patterns",
                        lambda: float(len(self.engine.index.holders)),
                    ),
                    "held_connects": ("Held /meta/connect requests", lambda: float(len(self.engine.holds))),
                },
            )
        )
        self.registry.register(BrokerCollector(self.broker))
        self._mount = settings.mount
        self._mount_prefix = settings.mount.rstrip("/") + "/"
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.feed_api = FeedApi(self.feeds)
        self._feed_prefix = FEED_API_PREFIX + "/"
        self.web = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/metrics", self.metrics),
                *(routes or []),
            ],
            lifespan=self.lifespan,
        )

    def client(self) -> InProcessClient:
        """A Bayeux client inside this process (Faye's ``getClient()``)."""
        return InProcessClient(self.server)

    async def health(self, request: Request) -> Response:
        status = 503 if self.server.closing else 200
        body = {"status": "stopping" if status == 503 else "ok", "node": self.node_id}
        if self.feeds.store.cache_loading:
            body["feeds_cache"] = "loading"
        return JSONResponse(body, status)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.broker.start(self.engine.deliver_remote, self._serve_forwarded)
        await self.feeds.start()
        self._tasks.append(asyncio.create_task(self.engine.run_sweeper(self.settings.sweep_interval_s)))
        log.info("node %s serving Bayeux at %s", self.node_id, self._mount)
        if not self.settings.apps:
            dev = self.apps[0]
            log.warning(
                "no apps configured: created a development app id=%s api_key=%s api_secret=%s",
                dev.app_id,
                dev.api_key,
                dev.api_secret,
            )
        try:
            yield
        finally:
            await self.stop()
            for task in self._tasks:
                task.cancel()

    async def _serve_forwarded(self, payload: bytes) -> bytes:
        return await serve_forwarded(self.server, payload)

    async def stop(self) -> None:
        """Leave routing, answer held connects, close every client. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.broker.close()
        except Exception:
            log.exception("broker close failed")
        self.server.begin_shutdown()
        # Let the answers to the released connects reach their sockets before closing them.
        for _ in range(3):
            await asyncio.sleep(0)
        self.engine.shutdown()
        try:
            await self.feeds.close()
        except Exception:
            log.exception("feed store close failed")

    def _is_bayeux(self, path: str) -> bool:
        return path == self._mount or path.startswith(self._mount_prefix)

    # --- WebSockets served by FastWebSocketProtocol itself (see transports.ws_protocol) --

    def serves_socket(self, path: str) -> bool:
        return self._is_bayeux(path)

    def open_socket(
        self, proto: FastWebSocketProtocol, origin: str | None, remote: str | None
    ) -> DirectSocket | None:
        """A Bayeux session for an accepted upgrade, or None to refuse it (HTTP 403)."""
        guard = self.guard
        if not guard.admit_connection(remote, origin):
            return None
        return DirectSocket(proto, self.server, remote, lambda: guard.release_connection(remote))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "lifespan" and self._is_bayeux(scope["path"]):
            if kind == "websocket":
                await serve_websocket(scope, receive, send, self.server)
                return
            client_id = wants_eventsource(scope, self._mount)
            if client_id is not None:
                await serve_eventsource(scope, receive, send, self.server, client_id)
            else:
                await serve_http(scope, receive, send, self.server)
            return
        if kind == "http" and scope["path"].startswith(self._feed_prefix):
            await self.feed_api(scope, receive, send)  # no framework on the feed API's hot path
            return
        await self.web(scope, receive, send)


def create_app(
    settings: Settings, broker: Broker | None = None, routes: list[BaseRoute] | None = None
) -> RealtimeApp:
    return RealtimeApp(settings, broker, routes)
