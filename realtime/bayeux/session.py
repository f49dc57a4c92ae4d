"""Per-client session state, free of I/O: time is an argument, never read here.

A session moves through three states::

    live, unbound  --bind(sink)-->  live, bound  --unbind()-->  live, unbound
         |                              |
         +--------- close() ------------+------------------->  closed

While *unbound* (long-polling between polls, a WebSocket that dropped), deliveries
go to a bounded FIFO ``queue`` of encoded messages that the next connect drains.
While *bound* (an open WebSocket or EventSource stream), deliveries go straight to
the sink; a sink that cannot take more (its socket buffer is over the limit) reports
overflow, and so does a full queue: the engine then ends the session, and the
client learns it from ``401 Unknown client`` + ``advice: handshake`` and starts over.

Expiry: a session dies when ``now >= expires_at``; each handshake/connect calls
``ping(now, ttl)``. Only the engine closes a session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Protocol

from realtime.bayeux.outbound import Outbound


class Outcome(IntEnum):
    DELIVERED = 0
    QUEUE = 1  # the sink is going away: keep the message for the next connect
    OVERFLOW = 2


class Sink(Protocol):
    def deliver(self, out: Outbound) -> Outcome: ...

    def close(self, reason: str) -> None: ...


class Session:
    __slots__ = (
        "auth",
        "client_id",
        "closed",
        "connected_once",
        "expires_at",
        "max_queue",
        "on_queue",
        "pinned",
        "queue",
        "remote",
        "sink",
        "subscriptions",
        "user_id",
    )

    def __init__(self, client_id: str, max_queue: int, now: float, ttl: float) -> None:
        self.client_id = client_id
        self.subscriptions: set[str] = set()
        # Created on first use: most sessions sit on a socket and never queue anything.
        self.queue: deque[bytes] | None = None
        self.max_queue = max_queue
        self.sink: Sink | None = None
        # Set while a long-poll is held: called after a message is queued.
        self.on_queue: Callable[[], None] | None = None
        self.expires_at = now + ttl
        self.connected_once = False
        self.closed = False
        self.pinned = False  # in-process clients never expire
        self.user_id: str | None = None
        self.auth: object = None  # what the session proved at handshake (security.Identity)
        self.remote: str | None = None  # peer address at handshake, for per-address limits

    def ping(self, now: float, ttl: float) -> None:
        self.expires_at = now + ttl

    def is_expired(self, now: float) -> bool:
        return not self.pinned and now >= self.expires_at

    def deliver(self, out: Outbound) -> bool:
        """Hand one message to the sink or the queue; False means overflow."""
        sink = self.sink
        if sink is not None:
            outcome = sink.deliver(out)
            if outcome is Outcome.DELIVERED:
                return True
            if outcome is Outcome.OVERFLOW:
                return False
        return self.enqueue(out.payload)

    @property
    def queued(self) -> int:
        return len(self.queue) if self.queue is not None else 0

    def enqueue(self, payload: bytes) -> bool:
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        elif len(queue) >= self.max_queue:
            return False
        queue.append(payload)
        if self.on_queue is not None:
            self.on_queue()
        return True

    def drain(self) -> list[bytes]:
        if not self.queue:
            return []
        items = list(self.queue)
        self.queue = None
        return items

    def requeue(self, payloads: Iterable[bytes]) -> None:
        """Put undelivered messages back at the front, oldest first, within the bound."""
        room = self.max_queue - self.queued
        items = list(payloads)[:room]
        if items:
            if self.queue is None:
                self.queue = deque()
            self.queue.extendleft(reversed(items))
