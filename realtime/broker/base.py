"""The Broker protocol: what a node may assume about the cluster transport.

A node owns an exact index of the routing keys it can deliver locally (channel names
and wildcard patterns with a local subscriber, ``user:<id>`` for connected users).
It tells its broker when a key *enters* that index (first local holder) and when it
*leaves* (last local holder gone); the broker turns those edges into whatever the
other nodes need to route (a set, a cuckoo filter replica, nothing at all).

Guarantees a broker gives:

* ``publish(keys, payload)`` is fire-and-forget and never blocks the caller: it is
  called from a fan-out on the event loop. Delivery is **at most once**, and
  **ordered per publishing node** (two publishes from one node reach a given node in
  the order they were made). A node never receives its own publishes back.
* A node that may hold a local holder of any of ``keys`` receives the payload (no
  false negatives once ``key_added`` has propagated); it may also receive payloads it
  has no holder for (false positives), which it must drop after checking its index.
* ``deliver`` is called on the event loop of the receiving node with the payload
  bytes exactly as published.
* ``close()`` withdraws this node from routing *before* it returns, so that no other
  node sends it anything afterwards.
* ``forward(node_id, payload)`` is request/response: the payload reaches the named
  node's ``serve`` callback and its answer comes back, or ``NodeUnavailable`` is
  raised (node unknown, dead, or no answer within ``timeout_s``). It carries HTTP
  long-polling batches to the node that owns the session (clientIds name their node),
  so long-polling needs no sticky load balancing.
* ``is_live(node_id)`` says whether a node is currently part of the cluster (its
  heartbeat has not expired).

The payload format is the engine's business (see ``realtime.engine.envelope``); the
broker treats it as opaque bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

DeliverCallback = Callable[[bytes], None]
ServeCallback = Callable[[bytes], Awaitable[bytes]]


class NodeUnavailable(Exception):
    """The node a request was forwarded to is gone or did not answer in time."""


class Broker(Protocol):
    """A node's handle on the cluster; see the module docstring for the guarantees."""

    node_id: str

    async def start(self, deliver: DeliverCallback, serve: ServeCallback | None = None) -> None:
        """Join the cluster; from now on ``deliver`` receives payloads for this node and
        ``serve`` answers requests forwarded to it."""

    def key_added(self, key: str) -> None:
        """``key`` gained its first local holder on this node."""

    def key_removed(self, key: str) -> None:
        """``key`` lost its last local holder on this node."""

    def publish(self, keys: Sequence[str], payload: bytes) -> None:
        """Send ``payload`` to every *other* node that may hold any of ``keys``."""

    def may_route_many(self, key_lists: Sequence[Sequence[str]]) -> list[bool]:
        """For each key list, whether :meth:`publish` of it would send to any other node now
        (False is certain: a publisher may skip building the payload).  One call for many, so an
        implementation can resolve them together."""

    def is_live(self, node_id: str) -> bool:
        """Whether ``node_id`` is a live member of the cluster (this node included)."""

    async def forward(self, node_id: str, payload: bytes, timeout_s: float) -> bytes:
        """Have ``node_id``'s ``serve`` callback answer ``payload``; see the guarantees."""

    async def close(self) -> None:
        """Withdraw from routing, then release resources."""
