"""Held ``/meta/connect`` requests: at most one per session.

A hold ends, with a reason, at the first of: its timeout; a message queued for an
unbound session (released on the *next* loop tick, so messages published in the same
tick go out in one reply, as Faye's MAX_DELAY 0); a newer connect from the same
client (the older one is answered at once, as CometD does: Faye orphans it); the
session ending (disconnect, expiry, overflow, shutdown).
"""

from __future__ import annotations

import asyncio

from realtime.bayeux.session import Session

TIMEOUT = "timeout"
MESSAGES = "messages"
SUPERSEDED = "superseded"
IMMEDIATE = "immediate"
GONE = "gone"  # the request holding the connect went away


class _Hold:
    __slots__ = ("future", "session", "timer", "waking")

    def __init__(self, session: Session, future: asyncio.Future[str]) -> None:
        self.session = session
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        self.waking = False


class Holds:
    def __init__(self) -> None:
        self._held: dict[str, _Hold] = {}

    def __len__(self) -> int:
        return len(self._held)

    def is_held(self, client_id: str) -> bool:
        return client_id in self._held

    def open(self, session: Session, hold_s: float) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        self.release(session.client_id, SUPERSEDED)
        future: asyncio.Future[str] = loop.create_future()
        if hold_s <= 0 or session.queued:
            future.set_result(MESSAGES if session.queued else IMMEDIATE)
            return future
        hold = _Hold(session, future)
        cid = session.client_id
        hold.timer = loop.call_later(hold_s, self.release, cid, TIMEOUT)

        def on_queue() -> None:
            if not hold.waking:
                hold.waking = True
                loop.call_soon(self.release, cid, MESSAGES)

        session.on_queue = on_queue
        self._held[cid] = hold
        return future

    def release(self, client_id: str, reason: str) -> None:
        hold = self._held.pop(client_id, None)
        if hold is None:
            return
        if hold.timer is not None:
            hold.timer.cancel()
        hold.session.on_queue = None
        if not hold.future.done():
            hold.future.set_result(reason)

    def abandon(self, client_id: str, future: asyncio.Future[str]) -> None:
        """The request behind ``future`` went away: drop its hold if still current."""
        hold = self._held.get(client_id)
        if hold is not None and hold.future is future:
            self.release(client_id, GONE)
        elif not future.done():
            future.set_result(GONE)

    def release_all(self, reason: str) -> None:
        for cid in list(self._held):
            self.release(cid, reason)
