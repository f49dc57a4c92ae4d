"""The Redis side shared by ``RedisBroker`` (a node) and ``Publisher`` (a backend process).

Lifecycle (``_supervise``)::

    start() -> connect -> subscribe -> on_connect (announce, load replicas) -> connected
                  ^                                                              |
                  |           a Redis error in any task of the session           |
                  +------ backoff (50 ms doubling to 2 s, jittered) <------------+

A session runs three tasks on one client: the **reader** (pub/sub: control messages feed the
replicas, the node channel feeds ``on_frame``), the **sender** and the **maintainer** (heartbeat
every ``heartbeat_s``: liveness of the other nodes, snapshot loads when a replica asks).

The sender is the only task that sends data: ``submit`` appends a publish and sets an event;
the sender wakes on the next loop tick, routes everything submitted meanwhile in one vectorised
pass, and sends one pipeline (one frame per target node, control commands first). One pipeline
is in flight at a time, so a node's messages reach Redis in the order they were made, and a
burst made while a pipeline is in flight becomes the next batch. While disconnected, publishes
are dropped and counted (delivery is at most once); local clients are served regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from realtime.broker.redis_routing import Publish, Replicas
from realtime.broker.redis_wire import KeySpace, pack_envelopes

log = logging.getLogger("realtime.broker.redis")

MAX_PENDING = 200_000  # publishes queued behind a slow pipeline before new ones are dropped
CLOSE_S = 2.0  # the longest a connection close may take before it is abandoned
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


BROKER_OPTIONS = ("key_prefix", "heartbeat_s", "ttl_s")


def split_url_options(url: str) -> tuple[str, dict[str, str]]:
    """``(url for redis-py, broker options)``: our options ride in the URL's query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in query if k in BROKER_OPTIONS}
    rest = urlencode([(k, v) for k, v in query if k not in BROKER_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), mine


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


class RedisLink:
    def __init__(
        self,
        url: str,
        node_id: str | None,
        *,
        key_prefix: str = "rt:",
        routing: str = "filter",
        heartbeat_s: float = 1.0,
        ttl_s: float = 3.0,
    ) -> None:
        if routing not in ("filter", "broadcast"):
            raise ValueError(f"routing must be 'filter' or 'broadcast', not {routing!r}")
        if not 0 < heartbeat_s < ttl_s:
            raise ValueError("heartbeat_s must be positive and shorter than ttl_s")
        self.url = url
        self.cluster = is_cluster_url(url)
        self.keys = KeySpace(key_prefix)
        self.replicas = Replicas(self.keys, node_id)
        self.broadcast = routing == "broadcast"
        self.heartbeat_s = heartbeat_s
        self.ttl_ms = int(ttl_s * 1000)
        self._self_id = node_id
        self._pending: list[Publish] = []
        self._wake = asyncio.Event()
        self._client: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._flushed: asyncio.Future[None] | None = None
        self.connected = False
        self.closing = False
        # Counters (plain ints, read by /metrics).
        self.frames_sent = 0  # pub/sub messages carrying envelopes (the "wire" count)
        self.envelopes_sent = 0  # envelopes in them (one per publish and target node)
        self.bytes_sent = 0
        self.control_sent = 0  # filter deltas, snapshots announced, leaves
        self.dropped = 0  # publishes dropped while disconnected or over MAX_PENDING
        self.reconnects = 0

    # -- commands (standalone PUBLISH / cluster SPUBLISH) ---------------------------------------

    def _new_client(self) -> Any:
        opts: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "retry": Retry(NoBackoff(), 0),  # the supervisor reconnects; never replay commands
        }
        if self.cluster:
            url = self.url.replace("+cluster", "", 1)
            return RedisCluster.from_url(url, **opts)
        return aioredis.Redis.from_url(self.url, **opts)

    def _publish(self, target: Any, channel: str, data: bytes) -> Any:
        if self.cluster:
            return target.spublish(channel, data)
        return target.publish(channel, data)

    def _channels(self) -> list[str]:
        channels = [self.keys.control]
        if self._self_id is not None:
            channels.append(self.keys.node_channel(self._self_id))
        return channels

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start_link(self, wait_s: float) -> None:
        """Start the supervisor; wait until the first connection attempt ends (at most ``wait_s``)."""
        self.closing = False
        self._first_attempt = asyncio.Event()
        self._supervisor = asyncio.create_task(self._supervise())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_s)

    async def _supervise(self) -> None:
        backoff = BACKOFF_MIN_S
        loop = asyncio.get_running_loop()
        while not self.closing:
            client = self._new_client()
            began = loop.time()
            try:
                await self._session(client)
            except (RedisError, OSError) as exc:
                if not self.closing:
                    log.warning("Redis link lost (%s: %s); reconnecting", type(exc).__name__, exc)
            except Exception:
                # Cluster topology errors and the like are not RedisErrors; never let the
                # supervisor die, or the node would stay out of the cluster for good.
                if not self.closing:
                    log.exception("Redis link failed; reconnecting")
            finally:
                self.connected = False
                self._client = None
                self._fail_flush(ConnectionError("Redis connection lost"))
                self._first_attempt.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), CLOSE_S)
            if self.closing:
                return
            if loop.time() - began > 10 * BACKOFF_MAX_S:
                backoff = BACKOFF_MIN_S
            self.reconnects += 1
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, client: Any) -> None:
        if self.cluster:
            await client.initialize()  # slot map first: sharded subscribes route by it
        pubsub = client.pubsub()
        try:
            if self.cluster:
                await pubsub.ssubscribe(*self._channels())
            else:
                await pubsub.subscribe(*self._channels())
            self._client = client
            await self._on_connect(client)
            self.replicas.clear()
            await self.replicas.sync_members(client)
            self.connected = True
            self._first_attempt.set()
            self._wake.set()
            # Sharded subscriptions live on one connection per shard owning a channel: read
            # each with a blocking read of its own (polling them in turn would add latency).
            readers = list(pubsub.node_pubsub_mapping.values()) if self.cluster else [pubsub]
            await _first_failure(*map(self._read, readers), self._send_loop(client), self._maintain(client))
        finally:
            # Bounded: after a cancel, redis-py's cluster client may keep retrying in here,
            # and an unbounded close would hang the node's shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), CLOSE_S)

    async def _stop_link(self) -> None:
        self.closing = True
        supervisor = self._supervisor
        self._supervisor = None
        if supervisor is not None:
            supervisor.cancel()
            done, _ = await asyncio.wait((supervisor,), timeout=2 * CLOSE_S)
            if not done:
                log.warning("Redis link did not stop within %.0f s; leaving it cancelled", 2 * CLOSE_S)
                supervisor.cancel()

    # -- hooks for the broker -----------------------------------------------------------------

    async def _on_connect(self, client: Any) -> None:
        """Announce this node (the broker's snapshot and JOIN)."""

    def _control(self, pipe: Any) -> None:
        """Queue control commands (filter delta, re-announce) at the head of the next pipeline."""

    async def _heartbeat(self, client: Any) -> None:
        """Refresh this node's liveness key."""

    def _on_frame(self, data: bytes) -> None:
        """A frame on this node's own channel."""

    # -- tasks --------------------------------------------------------------------------------

    async def _read(self, pubsub: Any) -> None:
        control = self.keys.control.encode()
        on_control = self.replicas.on_control
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message["type"] not in ("message", "smessage"):
                continue
            if message["channel"] == control:
                on_control(message["data"])
            else:
                self._on_frame(message["data"])

    def submit(self, keys: Sequence[str], payload: bytes) -> None:
        if not self.connected or self.closing or len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append((keys, payload))
        self._wake.set()

    async def _send_loop(self, client: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            flushed, self._flushed = self._flushed, None
            batch, self._pending = self._pending, []
            pipe = client.pipeline(transaction=False)
            self._control(pipe)
            for node, payloads in self.replicas.route(batch, self._self_id, self.broadcast).items():
                channel = self.keys.node_channel(node)
                for frame in pack_envelopes(payloads):
                    self._publish(pipe, channel, frame)
                    self.frames_sent += 1
                    self.bytes_sent += len(frame)
                self.envelopes_sent += len(payloads)
            if len(pipe):
                try:
                    await pipe.execute()
                except BaseException as exc:
                    if flushed is not None and not flushed.done():
                        flushed.set_exception(ConnectionError(f"Redis pipeline failed: {exc}"))
                    raise
            if flushed is not None and not flushed.done():
                flushed.set_result(None)

    async def _maintain(self, client: Any) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat_s
        while True:
            wait = next_beat - loop.time()
            if wait > 0 and not self.replicas.wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.replicas.wake.wait(), wait)
            if loop.time() >= next_beat:
                next_beat = max(next_beat + self.heartbeat_s, loop.time() + self.heartbeat_s / 2)
                await self._heartbeat(client)
                await self.replicas.sync_members(client)
            elif self.replicas.wake.is_set():
                await self.replicas.load_wanted(client)

    # -- flush barrier (Publisher) ------------------------------------------------------------

    def _flush_future(self) -> asyncio.Future[None]:
        """Resolved when the sender has sent what was submitted so far."""
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        self._wake.set()
        return self._flushed

    def _fail_flush(self, exc: Exception) -> None:
        flushed, self._flushed = self._flushed, None
        if flushed is not None and not flushed.done():
            flushed.set_exception(exc)
        self._pending.clear()


async def _first_failure(*coros: Coroutine[Any, Any, None]) -> None:
    """Run tasks until one ends; cancel the rest and re-raise its error."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
