"""Replicas of every other node's filter, kept in sync from Redis; and the routing of a batch.

State of one remote node, as seen here::

    unknown --(JOIN / delta from an unknown node / member key found)--> wanted
    wanted  --(snapshot loaded, buffered deltas applied)-------------> in table
    in table --(delta applied)---------------------------------------> in table
    in table --(gap / generation mismatch / JOIN)--> stale + wanted --> in table
    any      --(LEAVE / snapshot key gone / not a member any more)-----> unknown

While a snapshot is *wanted* the deltas that arrive for that node are buffered and replayed on
the loaded snapshot (deltas it already covers are no-ops; the owner updates its snapshot before
it publishes a delta, so a snapshot read after a delta arrived normally covers it). Should a
replay still find a gap, the snapshot is installed as *stale*, the remaining deltas are kept and
the snapshot is read again after ``RELOAD_RETRY_S``. A *stale* node receives **every** routed
message until a reload lands, so a missed delta costs extra messages, never a false negative.

Used by ``RedisBroker`` (with its own node id excluded) and by the backend ``Publisher``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from realtime.broker.redis_wire import DELTA, JOIN, LEAVE, KeySpace, MalformedFrame, parse_control
from realtime.routing import (
    CuckooFilter,
    GenerationMismatch,
    MalformedFilterData,
    ReplicaOutOfSync,
    RoutingTable,
    SequenceGap,
    UnknownNode,
    hash_keys,
)

log = logging.getLogger("realtime.broker.redis")

MAX_BUFFERED_DELTAS = 1000  # per node while its snapshot loads; beyond that the reload restarts
RELOAD_RETRY_S = 0.1
MAX_CACHED_ROUTES = 100_000  # key lists whose target nodes are remembered (cleared on any change)

Publish = tuple[Sequence[str], bytes]  # (routing keys, envelope)


class Replicas:
    def __init__(self, keys: KeySpace, self_id: str | None) -> None:
        self.keys = keys
        self.self_id = self_id
        self.table = RoutingTable()
        self.wake = asyncio.Event()  # set when a snapshot load is wanted
        self._stale: set[str] = set()
        self._wanted: set[str] = set()
        self._buffered: dict[str, list[bytes]] = {}
        self._routes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._routes_exclude: str | None = None
        # Counters (plain ints, read by /metrics).
        self.snapshot_loads = 0
        self.deltas_applied = 0
        self.resyncs = 0  # gaps, generation changes and re-joins that forced a reload

    # -- control channel ----------------------------------------------------------------------

    def on_control(self, data: bytes) -> None:
        try:
            kind, node, body = parse_control(data)
        except (MalformedFrame, UnicodeDecodeError):
            log.warning("dropping a malformed control message (%d bytes)", len(data))
            return
        if node == self.self_id:
            return
        if kind == LEAVE:
            self.drop(node)
        elif kind == JOIN:
            if node in self.table:
                self._stale.add(node)
                self.resyncs += 1
            self._want(node)
        elif kind == DELTA:
            self._on_delta(node, bytes(body))

    def _on_delta(self, node: str, delta: bytes) -> None:
        if node in self._wanted:
            self._buffer(node, delta)
            return
        try:
            if self.table.apply_delta(node, delta):
                self.deltas_applied += 1
                self._routes.clear()
        except UnknownNode:
            self._want(node)
            self._buffer(node, delta)
        except ReplicaOutOfSync as exc:
            log.info("replica of %s out of sync (%s); reloading its snapshot", node, exc)
            self._stale.add(node)
            self.resyncs += 1
            self._want(node)
            self._buffer(node, delta)
        except MalformedFilterData:
            log.warning("dropping a malformed delta from %s", node)

    def _buffer(self, node: str, delta: bytes) -> None:
        buf = self._buffered.setdefault(node, [])
        if len(buf) >= MAX_BUFFERED_DELTAS:
            buf.clear()  # the reload will bring a newer snapshot; a gap after it reloads again
        buf.append(delta)

    def _want(self, node: str) -> None:
        self._wanted.add(node)
        self.wake.set()

    def drop(self, node: str) -> None:
        if self.table.drop_node(node):
            log.info("node %s left routing", node)
            self._routes.clear()
        self._stale.discard(node)
        self._wanted.discard(node)
        self._buffered.pop(node, None)

    def clear(self) -> None:
        """Forget everything (after a reconnect: Redis may have restarted and lost every key)."""
        for node in self.table.node_ids:
            self.drop(node)
        self._wanted.clear()
        self._buffered.clear()

    # -- snapshot keys ------------------------------------------------------------------------

    async def load_wanted(self, client: Any) -> None:
        """GET the snapshot of every wanted node in one round trip and install it."""
        self.wake.clear()
        nodes = sorted(self._wanted)
        if not nodes:
            return
        pipe = client.pipeline(transaction=False)
        for node in nodes:
            pipe.get(self.keys.snapshot(node))
        snapshots = await pipe.execute()
        for node, data in zip(nodes, snapshots, strict=True):
            if node not in self._wanted:
                continue  # left while the snapshot was in flight
            deltas = self._buffered.pop(node, [])
            self._wanted.discard(node)
            if data is None:
                self.drop(node)  # no heartbeat key: not (or no longer) a live node
                continue
            try:
                replica = CuckooFilter.from_bytes(data)
            except MalformedFilterData:
                log.warning("node %s has a malformed snapshot; not routing to it", node)
                self.drop(node)
                continue
            rest = self._replay(replica, deltas)
            self.table.set_node(node, replica)
            self._routes.clear()
            self.snapshot_loads += 1
            if rest is None:
                self._stale.discard(node)
            else:
                # The snapshot predates a delta already seen: route everything to the node
                # meanwhile, read again shortly.
                self._stale.add(node)
                self._wanted.add(node)
                self._buffered[node] = rest
                asyncio.get_running_loop().call_later(RELOAD_RETRY_S, self.wake.set)

    @staticmethod
    def _replay(replica: CuckooFilter, deltas: list[bytes]) -> list[bytes] | None:
        """Apply buffered deltas to a fresh snapshot; the deltas not applicable yet, or None.

        Deltas of another generation are skipped: an older one is covered by the snapshot; a
        newer one comes after a JOIN (owners announce a rebuild before its first delta), which
        has already asked for another reload.
        """
        for i, delta in enumerate(deltas):
            try:
                replica.apply_delta(delta)
            except GenerationMismatch:
                continue
            except SequenceGap:
                return deltas[i:]
            except MalformedFilterData:
                continue
        return None

    async def sync_members(self, client: Any) -> None:
        """Drop nodes whose heartbeat key expired (and prune them from the member set); want
        the snapshot of live members not loaded yet; then load them."""
        members = {
            m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(self.keys.members)
        }
        members.discard(self.self_id or "")
        ordered = sorted(members)
        pipe = client.pipeline(transaction=False)
        for node in ordered:
            pipe.pttl(self.keys.snapshot(node))
        ttls = await pipe.execute() if ordered else []
        dead = [node for node, ttl in zip(ordered, ttls, strict=True) if ttl == -2]
        for node in dead:
            self.drop(node)
        if dead:
            await client.srem(self.keys.members, *dead)
        for node in self.table.node_ids:
            if node not in members:
                self.drop(node)
        for node in set(ordered) - set(dead):
            if node not in self.table and node not in self._wanted:
                self._want(node)
        await self.load_wanted(client)

    # -- routing ------------------------------------------------------------------------------

    def live(self, exclude: str | None) -> list[str]:
        return [n for n in self.table.node_ids if n != exclude]

    def route(self, batch: Sequence[Publish], exclude: str | None, broadcast: bool) -> dict[str, list[bytes]]:
        """``node -> envelopes`` (publish order kept) for a tick's publishes.

        A publish goes to a node if any of its keys may be in that node's replica. Answers are
        cached per key list until any replica changes (a chat room or user channel published
        to again costs a dict lookup); the key lists not cached are resolved together: every
        distinct key hashed once and tested against every replica in one vectorised pass.
        """
        nodes = self.live(exclude)
        if not nodes or not batch:
            return {}
        if broadcast:
            payloads = [payload for _, payload in batch]
            return {n: payloads for n in nodes}
        wanted = [tuple(keys) for keys, _ in batch]
        routes = self._cached_routes(wanted, exclude)
        out: dict[str, list[bytes]] = {}
        for t, (_, payload) in zip(wanted, batch, strict=True):
            for node in routes[t]:
                if node in out:
                    out[node].append(payload)
                else:
                    out[node] = [payload]
        for node in self._stale:
            if node != exclude and node in self.table:
                out[node] = [payload for _, payload in batch]
        return out

    def may_route_many(
        self, key_lists: Sequence[Sequence[str]], exclude: str | None, broadcast: bool
    ) -> list[bool]:
        """For each key list, whether :meth:`route` would send a publish of it to any node; the
        lists the route cache lacks are resolved together, as :meth:`route` does."""
        if any(node != exclude and node in self.table for node in self._stale):
            return [True] * len(key_lists)
        if not self.live(exclude):
            return [False] * len(key_lists)
        if broadcast:
            return [True] * len(key_lists)
        wanted = [tuple(keys) for keys in key_lists]
        routes = self._cached_routes(wanted, exclude)
        return [bool(routes[t]) for t in wanted]

    def may_route(self, keys: Sequence[str], exclude: str | None, broadcast: bool) -> bool:
        return self.may_route_many([keys], exclude, broadcast)[0]

    def _cached_routes(
        self, wanted: Sequence[tuple[str, ...]], exclude: str | None
    ) -> dict[tuple[str, ...], tuple[str, ...]]:
        """The route cache, holding every key list of ``wanted``."""
        if exclude != self._routes_exclude:
            self._routes.clear()
            self._routes_exclude = exclude
        routes = self._routes
        missing = [t for t in dict.fromkeys(wanted) if t not in routes]
        if missing:
            if len(routes) + len(missing) > MAX_CACHED_ROUTES:
                routes.clear()
            self._resolve(missing, exclude)
        return routes

    def _resolve(self, key_lists: list[tuple[str, ...]], exclude: str | None) -> None:
        key_id: dict[str, int] = {}
        flat = [key_id.setdefault(k, len(key_id)) for keys in key_lists for k in keys]
        targets: list[list[str]] = [[] for _ in key_lists]
        if flat:
            lengths = np.fromiter(map(len, key_lists), dtype=np.intp, count=len(key_lists))
            nonempty = lengths > 0
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[nonempty]
            which = np.flatnonzero(nonempty)
            flat_idx = np.asarray(flat, dtype=np.intp)
            for node, hit in self.table.hits(hash_keys(list(key_id)), exclude).items():
                for i in which[np.logical_or.reduceat(hit[flat_idx], starts)].tolist():
                    targets[i].append(node)
        self._routes.update(zip(key_lists, map(tuple, targets), strict=True))
