"""Wire shapes (exact Bayeux keys) and reply builders.

Replies copy ``id``, ``clientId``, ``channel`` and ``error`` from the request and set
``successful``; nothing else is echoed (no ``ext``, as Faye). Deliveries carry only
``channel``, ``data``, ``id`` and ``ext``: a forwarded ``successful`` could be taken
by a client for the reply to one of its own requests, and ``clientId`` would leak
the publisher's session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

Message = dict[str, Any]

HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
UNSUBSCRIBE = "/meta/unsubscribe"
DISCONNECT = "/meta/disconnect"
BAYEUX_VERSION = "1.0"


class Advice(TypedDict, total=False):
    reconnect: str
    interval: int
    timeout: int


_ECHOED = ("id", "clientId", "channel")


def make_reply(request: Message, error: str | None = None) -> Message:
    reply: Message = {}
    for key in _ECHOED:
        if key in request:
            reply[key] = request[key]
    err = error if error is not None else request.get("error")
    if err is not None:
        reply["error"] = err
        reply["successful"] = False
    else:
        reply["successful"] = True
    return reply


def delivery(message: Message, clean_ext: Callable[[Any], Any] | None = None) -> Message:
    """The copy of a published message that subscribers receive.

    ``clean_ext`` removes credentials from ``ext`` (None when nothing is left).
    """
    out: Message = {"channel": message["channel"], "data": message["data"]}
    if "id" in message:
        out["id"] = message["id"]
    if "ext" in message:
        ext = message["ext"] if clean_ext is None else clean_ext(message["ext"])
        if ext is not None:
            out["ext"] = ext
    return out
