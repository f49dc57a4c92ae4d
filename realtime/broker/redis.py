"""``RedisBroker``: the cluster broker of a node, over Redis pub/sub (see ``broker.base``).

Per node, in Redis (names in ``redis_wire.KeySpace``):

* its filter snapshot under ``<prefix>node:<id>`` with a TTL of ``ttl_s``, refreshed every
  ``heartbeat_s``: the key *is* the heartbeat, a node whose key expired is dead;
* its id in the member set ``<prefix>nodes`` (survivors prune members whose key is gone);
* its channel ``<prefix>n:<id>``, on which it receives envelope batches, forwarded requests and
  the answers to its own requests.

Filter changes: ``key_added`` / ``key_removed`` edit the owner's ``CuckooFilter`` at once and
wake the sender; on its next turn the sender takes one delta for everything changed since the
last (all changes of a tick travel together), and pipelines the snapshot update *then*
``PUBLISH delta`` (a replica that sees the delta and reloads reads a snapshot at least as new).
A small change patches the stored snapshot in place with an atomic script, so the snapshot
traffic follows the size of the change, not of the filter.
A full filter is rebuilt larger with a new generation and re-announced as a snapshot + JOIN.
The generation starts random, so a restarted node with the same id never looks like a
continuation of its previous incarnation to a replica.

Leaving (``close``): delete the snapshot, leave the member set and publish LEAVE in one
pipeline, *then* stop the tasks and close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from realtime.broker.base import DeliverCallback, NodeUnavailable, ServeCallback
from realtime.broker.redis_link import RedisLink, split_url_options
from realtime.broker.redis_wire import (
    DELIVER,
    DELTA,
    JOIN,
    LEAVE,
    PATCH_SCRIPT,
    REPLY,
    REPLY_FAILED,
    REPLY_OK,
    REQUEST,
    MalformedFrame,
    control,
    parse_reply,
    parse_request,
    patch_snapshot,
    reply,
    request,
    unpack_envelopes,
)
from realtime.routing import CuckooFilter, FilterFull

log = logging.getLogger("realtime.broker.redis")

INITIAL_CAPACITY = 1024


class RedisBroker(RedisLink):
    def __init__(
        self,
        url: str,
        node_id: str,
        routing: str = "filter",
        key_prefix: str = "rt:",
        *,
        heartbeat_s: float = 1.0,
        ttl_s: float = 3.0,
        connect_wait_s: float = 3.0,
    ) -> None:
        super().__init__(
            url, node_id, key_prefix=key_prefix, routing=routing, heartbeat_s=heartbeat_s, ttl_s=ttl_s
        )
        self.node_id = node_id
        self.connect_wait_s = connect_wait_s
        self._filter = CuckooFilter.for_capacity(INITIAL_CAPACITY, generation=secrets.randbits(32))
        self._keys: set[str] = set()
        self._announce = True  # the next control step publishes a full snapshot + JOIN
        self._deliver: DeliverCallback | None = None
        self._serve: ServeCallback | None = None
        self._corr = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        # Counters (plain ints, read by /metrics), besides RedisLink's.
        self.frames_received = 0
        self.envelopes_received = 0
        self.bytes_received = 0
        self.filter_rebuilds = 0
        self.snapshots_written = 0
        self.snapshots_patched = 0

    @classmethod
    def from_url(cls, url: str, node_id: str, routing: str = "filter") -> RedisBroker:
        """A broker for a Redis URL whose query may carry broker options besides redis-py's:
        ``key_prefix`` (default ``rt:``; deployments sharing a Redis use distinct ones),
        ``heartbeat_s`` and ``ttl_s``. Example: ``redis://10.0.0.5:6379/0?key_prefix=chat:&ttl_s=5``."""
        rest, mine = split_url_options(url)
        try:
            return cls(
                rest,
                node_id,
                routing,
                mine.get("key_prefix", "rt:"),
                heartbeat_s=float(mine.get("heartbeat_s", 1.0)),
                ttl_s=float(mine.get("ttl_s", 3.0)),
            )
        except ValueError as exc:
            raise ValueError(f"bad broker option in {url!r}: {exc}") from exc

    @property
    def snapshot_loads(self) -> int:
        return self.replicas.snapshot_loads

    # -- Broker protocol ----------------------------------------------------------------------

    async def start(self, deliver: DeliverCallback, serve: ServeCallback | None = None) -> None:
        """Join the cluster. Returns once joined, or after ``connect_wait_s`` if Redis does not
        answer (the node serves local clients meanwhile and joins when Redis comes back)."""
        self._deliver = deliver
        self._serve = serve
        await self._start_link(self.connect_wait_s)
        if not self.connected:
            log.warning(
                "Redis at %s not reachable yet; node %s runs alone until it is", self.url, self.node_id
            )

    def key_added(self, key: str) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        try:
            self._filter.add(key)
        except FilterFull:
            self._filter = CuckooFilter.rebuild(self._keys, self._filter)
            self._announce = True
            self.filter_rebuilds += 1
        self._wake.set()

    def key_removed(self, key: str) -> None:
        if key not in self._keys:
            return
        self._keys.discard(key)
        self._filter.remove(key)
        self._wake.set()

    def publish(self, keys: Sequence[str], payload: bytes) -> None:
        self.submit(keys, payload)

    def may_route_many(self, key_lists: Sequence[Sequence[str]]) -> list[bool]:
        if not self.connected or self.closing:
            return [False] * len(key_lists)  # publish would drop them too
        return self.replicas.may_route_many(key_lists, self._self_id, self.broadcast)

    def may_route(self, keys: Sequence[str]) -> bool:
        return self.may_route_many([keys])[0]

    def is_live(self, node_id: str) -> bool:
        return node_id == self.node_id or node_id in self.replicas.table

    async def forward(self, node_id: str, payload: bytes, timeout_s: float) -> bytes:
        if node_id == self.node_id:
            if self._serve is None:
                raise NodeUnavailable(node_id)
            try:
                return await asyncio.wait_for(self._serve(payload), timeout_s)
            except TimeoutError as exc:
                raise NodeUnavailable(node_id) from exc
        client = self._client
        if client is None or not self.connected or node_id not in self.replicas.table:
            raise NodeUnavailable(node_id)
        corr = next(self._corr)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[corr] = future
        try:
            receivers = await self._publish(
                client, self.keys.node_channel(node_id), request(corr, self.node_id, payload)
            )
            if not receivers:
                raise NodeUnavailable(node_id)
            return await asyncio.wait_for(future, timeout_s)
        except NodeUnavailable:
            raise
        except Exception as exc:  # timeout, Redis or socket error: all mean "no answer"
            raise NodeUnavailable(node_id) from exc
        finally:
            self._waiting.pop(corr, None)

    async def close(self) -> None:
        # From here on the sender and the heartbeat send nothing: a delta or a re-announce
        # racing the LEAVE could bring this node back into routing until its TTL.
        self.closing = True
        client = self._client
        if client is not None and self.connected:
            try:
                pipe = client.pipeline(transaction=False)
                pipe.delete(self.keys.snapshot(self.node_id))
                pipe.srem(self.keys.members, self.node_id)
                self._publish(pipe, self.keys.control, control(LEAVE, self.node_id))
                await asyncio.wait_for(pipe.execute(), 2.0)
                self.control_sent += 1
            except Exception as exc:
                log.warning("could not announce leaving (%s); the heartbeat key will expire", exc)
        self._deliver = None
        await self._stop_link()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NodeUnavailable("broker closed"))
        for task in list(self._serving):
            task.cancel()

    # -- RedisLink hooks ----------------------------------------------------------------------

    def _announce_into(self, pipe: Any) -> None:
        self._filter.take_delta()  # the snapshot carries every change made so far
        self._write_snapshot(pipe)
        pipe.sadd(self.keys.members, self.node_id)
        self._publish(pipe, self.keys.control, control(JOIN, self.node_id))
        self._announce = False
        self.control_sent += 1

    def _write_snapshot(self, pipe: Any) -> None:
        pipe.set(self.keys.snapshot(self.node_id), self._filter.to_bytes(), px=self.ttl_ms)
        self.snapshots_written += 1

    async def _on_connect(self, client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        self._announce_into(pipe)
        await pipe.execute()

    def _control(self, pipe: Any) -> None:
        """Update the stored snapshot, *then* publish the delta: a replica that saw the delta
        and reloads reads a snapshot at least as new. A small delta patches the snapshot in
        place (``patch_snapshot``: Redis traffic proportional to the change, not to the filter)."""
        if self.closing:
            return
        if self._announce:
            self._announce_into(pipe)
            return
        delta = self._filter.take_delta()
        if delta is None:
            return
        patch = patch_snapshot(self._filter.to_bytes(), delta)
        if patch is None:
            self._write_snapshot(pipe)
        else:
            pipe.eval(PATCH_SCRIPT, 1, self.keys.snapshot(self.node_id), *patch)
            self.snapshots_patched += 1
        self._publish(pipe, self.keys.control, control(DELTA, self.node_id, delta))
        self.control_sent += 1

    async def _heartbeat(self, client: Any) -> None:
        if self.closing:
            return
        pipe = client.pipeline(transaction=False)
        pipe.pexpire(self.keys.snapshot(self.node_id), self.ttl_ms)
        pipe.sadd(self.keys.members, self.node_id)
        refreshed, _ = await pipe.execute()
        if not refreshed:
            # The key is gone (Redis restarted, or this node stalled past its TTL and was
            # pruned): announce a full snapshot again.
            log.warning("node %s heartbeat key was gone; re-announcing", self.node_id)
            self._announce = True
            self._wake.set()

    def _on_frame(self, data: bytes) -> None:
        if not data:
            return
        kind = data[0]
        try:
            if kind == DELIVER:
                self._on_deliver(data)
            elif kind == REQUEST:
                task = asyncio.create_task(self._answer(*parse_request(data)))
                self._serving.add(task)
                task.add_done_callback(self._serving.discard)
            elif kind == REPLY:
                corr, status, body = parse_reply(data)
                future = self._waiting.get(corr)
                if future is not None and not future.done():
                    if status == REPLY_OK:
                        future.set_result(body)
                    else:
                        future.set_exception(NodeUnavailable(body.decode(errors="replace")))
            else:
                raise MalformedFrame(f"unknown frame kind {kind:#x}")
        except (MalformedFrame, UnicodeDecodeError) as exc:
            log.warning("dropping a malformed frame (%d bytes): %s", len(data), exc)

    def _on_deliver(self, frame: bytes) -> None:
        envelopes = unpack_envelopes(frame)
        self.frames_received += 1
        self.envelopes_received += len(envelopes)
        self.bytes_received += len(frame)
        for envelope in envelopes:
            deliver = self._deliver
            if deliver is None:
                return
            try:
                deliver(envelope)
            except Exception:
                log.exception("delivering a cluster envelope failed")

    async def _answer(self, corr: int, requester: str, payload: bytes) -> None:
        status, body = REPLY_FAILED, b"no serve callback"
        if self._serve is not None:
            try:
                status, body = REPLY_OK, await self._serve(payload)
            except Exception as exc:
                log.exception("serving a forwarded request failed")
                status, body = REPLY_FAILED, repr(exc).encode()
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            await self._publish(client, self.keys.node_channel(requester), reply(corr, status, body))
