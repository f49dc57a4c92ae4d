"""Server extensions and events: the hooks auth, acks and application code build on.

An extension has ``incoming(message, ctx)`` and/or ``outgoing(message, ctx)``, each
returning the (possibly changed) message, ``None`` to drop it, or an awaitable of
either. Incoming runs on every received message *before* validation, in the order
extensions were added; setting ``message["error"]`` makes the reply carry that error
and stops processing. Outgoing runs on every reply.

Deliveries differ from Faye on purpose: outgoing extensions see a published message
once, with ``ctx`` None, before it is encoded, not once per recipient, so that a
fan-out to N clients is still one encode. Messages published by the server's own
code through ``publish_encoded`` (the feed bridge) do not pass through extensions.
Per-recipient filtering belongs in the channel policy, which decides who may subscribe.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.bayeux.messages import Message

log = logging.getLogger("realtime.extensions")

MaybeAwaitable = Message | None | Awaitable[Message | None]


async def run_chain(
    hooks: list[Callable[[Message, Any], MaybeAwaitable]], message: Message, ctx: Any
) -> Message | None:
    current: Message | None = message
    for hook in hooks:
        result = hook(current, ctx)  # type: ignore[arg-type]
        if inspect.isawaitable(result):
            result = await result
        current = result
        if current is None:
            return None
    return current


EVENTS = ("handshake", "subscribe", "unsubscribe", "publish", "disconnect")


class Events:
    """``on(name, callback)``; callbacks run synchronously and must not raise."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., None]]] = {name: [] for name in EVENTS}

    def on(self, name: str, callback: Callable[..., None]) -> None:
        if name not in self._listeners:
            raise ValueError(f"unknown event {name!r}; one of {', '.join(EVENTS)}")
        self._listeners[name].append(callback)

    def emit(self, name: str, *args: Any) -> None:
        for callback in self._listeners[name]:
            try:
                callback(*args)
            except Exception:
                log.exception("listener for %r failed", name)

    def has(self, name: str) -> bool:
        return bool(self._listeners[name])
