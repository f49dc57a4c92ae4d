"""The node-local engine: sessions, subscriptions, fan-out, long-poll holds, expiry.

Everything here runs on one event loop and nothing awaits inside a fan-out: a
publish encodes once (``Outbound``), walks the exact index for ``expand(channel)``
and hands the same bytes to every recipient's sink or queue synchronously. Sessions
that overflow are collected during the walk and ended after it.

Cluster payloads (``envelope``): ``<channel>\\n<encoded message>``; the channel
grammar has no newline, so the split is unambiguous.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from realtime.bayeux.channels import PRIVILEGED, expand
from realtime.bayeux.outbound import Outbound
from realtime.bayeux.session import Session
from realtime.broker.base import Broker
from realtime.engine.holds import Holds
from realtime.engine.index import SubscriptionIndex
from realtime.metrics import Stats

# What a single-segment channel's routing keys may hold besides its name (see may_deliver_many).
_SINGLE_SEGMENT_WILDCARDS = ("/**", "/*", PRIVILEGED + "/**", PRIVILEGED + "/*")
log = logging.getLogger("realtime.engine")

# Why a session ended; the reason decides what a held connect is told.
DISCONNECTED = "disconnected"
EXPIRED = "expired"
OVERFLOW = "overflow"
SHUTDOWN = "shutdown"

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


# Each random byte picks one of 36 characters (b % 36); 31 of them carry ~160 bits,
# like Faye's ids. 256 is not a multiple of 36, so 4 characters are 8/256 likely
# instead of 7/256: 5.16 bits per character instead of 5.17.
_BASE36 = bytes(_ALPHABET.encode()[b % 36] for b in range(256))


def new_client_id(node_id: str) -> str:
    """``<node>-<31 random [0-9a-z]>``: URL-safe, and names the owning node.

    Node ids are ``[a-z0-9]`` (settings check it), so the last ``-`` splits the two.
    """
    return node_id + "-" + secrets.token_bytes(31).translate(_BASE36).decode("ascii")


def owner_of(client_id: str) -> str:
    return client_id.rpartition("-")[0]


class Engine:
    def __init__(
        self,
        broker: Broker,
        stats: Stats,
        *,
        session_ttl_s: float,
        max_queue: int,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
        routing_keys: Callable[[str], list[str]] = expand,
    ) -> None:
        self.broker = broker
        self.node_id = broker.node_id
        self.stats = stats
        self.ttl = session_ttl_s
        self.max_queue = max_queue
        self.max_sessions = max_sessions
        self.clock = clock
        # Which index keys a publish reaches: expand(), or the channel policy's variant.
        self.routing_keys = routing_keys
        self.sessions: dict[str, Session] = {}
        self.index = SubscriptionIndex(broker.key_added, broker.key_removed)
        self.holds = Holds()
        self.on_destroy: list[Callable[[Session, str], None]] = []
        self._expiry: list[tuple[float, str]] = []

    # --- sessions -------------------------------------------------------------------

    def create_session(self) -> Session | None:
        if len(self.sessions) >= self.max_sessions:
            return None
        now = self.clock()
        session = Session(new_client_id(self.node_id), self.max_queue, now, self.ttl)
        self.sessions[session.client_id] = session
        heapq.heappush(self._expiry, (session.expires_at, session.client_id))
        return session

    def get(self, client_id: object) -> Session | None:
        if not isinstance(client_id, str):
            return None
        session = self.sessions.get(client_id)
        if session is not None and session.is_expired(self.clock()) and not self.holds.is_held(client_id):
            self.destroy(session, EXPIRED)
            return None
        return session

    def ping(self, session: Session) -> None:
        session.ping(self.clock(), self.ttl)
        heapq.heappush(self._expiry, (session.expires_at, session.client_id))

    def destroy(self, session: Session, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.client_id, None)
        for channel in list(session.subscriptions):
            self.index.remove(channel, session)
        if session.user_id is not None:
            self.index.remove("user:" + session.user_id, session)
        session.queue = None
        self.holds.release(session.client_id, reason)
        sink = session.sink
        session.sink = None
        if sink is not None:
            sink.close(reason)
        if reason == OVERFLOW:
            self.stats.queue_overflows += 1
        elif reason == EXPIRED:
            self.stats.sessions_expired += 1
        for callback in self.on_destroy:
            callback(session, reason)

    def sweep(self) -> int:
        """End every session past its expiry; cheap when nothing is due (heap top)."""
        now = self.clock()
        heap = self._expiry
        ended = 0
        while heap and heap[0][0] <= now:
            _, cid = heapq.heappop(heap)
            session = self.sessions.get(cid)
            if session is None or not session.is_expired(now):
                continue
            if self.holds.is_held(cid):
                # A held poll is a live client (holds are shorter than the ttl anyway).
                # An open socket is not: like Faye, only connects keep a session alive.
                self.ping(session)
                continue
            self.destroy(session, EXPIRED)
            ended += 1
        # Lazy deletion leaves stale entries; rebuild when they dominate.
        if len(heap) > 4 * len(self.sessions) + 1024:
            self._expiry = [(s.expires_at, c) for c, s in self.sessions.items()]
            heapq.heapify(self._expiry)
        return ended

    # --- subscriptions --------------------------------------------------------------

    def subscribe(self, session: Session, channel: str, keys: list[str] | None = None) -> bool:
        """Index ``session`` under ``keys`` (default: the channel itself); False if known."""
        if channel in session.subscriptions:
            return False
        for key in keys or (channel,):
            session.subscriptions.add(key)
            self.index.add(key, session)
        return True

    def unsubscribe(self, session: Session, channel: str) -> bool:
        if channel not in session.subscriptions:
            return False
        for key in (channel, PRIVILEGED + channel):
            if key in session.subscriptions:
                session.subscriptions.discard(key)
                self.index.remove(key, session)
        return True

    def bind_user(self, session: Session, user_id: str) -> None:
        if session.user_id is not None:
            self.index.remove("user:" + session.user_id, session)
        session.user_id = user_id
        self.index.add("user:" + user_id, session)

    # --- delivery -------------------------------------------------------------------

    def may_deliver_many(self, channels: Sequence[str]) -> list[bool]:
        """For each channel, whether :meth:`publish` to it may deliver anywhere (False is
        certain): the local index first, then the broker once for all the others.

        Single-segment channels (feed channels are) take a shortcut: their routing keys are the
        name and ``/*``, ``/**`` (either possibly privileged), so while none of those four wildcard
        keys may be held anywhere, a channel may deliver exactly when its name may be held.  A post
        to thousands of followers asks about each of them: building every one's routing keys cost
        ~2 us per channel on the loop."""
        if all(c.count("/") == 1 for c in channels) and not self._may_reach([_SINGLE_SEGMENT_WILDCARDS])[0]:
            return self._or_remote(self.index.holds_each(channels), lambda i: (channels[i],))
        return self._may_reach([self.routing_keys(c) for c in channels])

    def _may_reach(self, key_lists: Sequence[Sequence[str]]) -> list[bool]:
        return self._or_remote([self.index.has_any(k) for k in key_lists], key_lists.__getitem__)

    def _or_remote(self, here: list[bool], keys_of: Callable[[int], Sequence[str]]) -> list[bool]:
        """``here``, with each False replaced by whether the broker may route ``keys_of(i)``."""
        remote = [i for i, held in enumerate(here) if not held]
        if remote:
            there = self.broker.may_route_many([keys_of(i) for i in remote])
            for i, routed in zip(remote, there, strict=True):
                here[i] = routed
        return here

    def publish(self, channel: str, payload: bytes) -> int:
        """Deliver locally and hand to the broker for other nodes; returns local count."""
        keys = self.routing_keys(channel)
        delivered = self.deliver_local(keys, payload)
        self.broker.publish(keys, channel.encode() + b"\n" + payload)
        return delivered

    def deliver_remote(self, envelope: bytes) -> None:
        channel, sep, payload = envelope.partition(b"\n")
        if not sep:
            log.warning("dropping a malformed cluster payload (%d bytes)", len(envelope))
            return
        keys = self.routing_keys(channel.decode())
        if not self.index.has_any(keys):
            self.stats.false_positives += 1
            return
        self.deliver_local(keys, payload)

    def deliver_local(self, keys: list[str], payload: bytes) -> int:
        recipients = self.index.recipients(keys)
        if not recipients:
            return 0
        out = Outbound(payload)
        overflowed: list[Session] | None = None
        for session in recipients:
            if not session.deliver(out):
                if overflowed is None:
                    overflowed = []
                overflowed.append(session)
        n = len(recipients)
        if overflowed:
            for session in overflowed:
                log.info("client %s overflowed its queue; ending the session", session.client_id)
                self.destroy(session, OVERFLOW)
            n -= len(overflowed)
        self.stats.messages_out += n
        return n

    # --- lifecycle ------------------------------------------------------------------

    async def run_sweeper(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("session sweep failed")

    def shutdown(self) -> None:
        """Answer every held connect (advice: handshake) and end every session."""
        for session in list(self.sessions.values()):
            self.destroy(session, SHUTDOWN)
