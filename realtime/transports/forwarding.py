"""Non-sticky long-polling: a batch for a session owned by another node goes there.

A clientId names its node (``<node>-<random>``). When an HTTP batch names a clientId
that this node does not hold and whose node is live, the whole batch is forwarded to
that node through the broker, processed there exactly as if it had arrived there
(the hold included), and the owner's answer is relayed. If the client went away
while the answer travelled back, its messages are sent back to the owner to be
re-queued, so a dead request never swallows them. A clientId whose node is gone is
processed locally and gets ``401`` with ``advice: handshake``, as any unknown client.

Wire format (orjson): request ``{"t": transport, "b": [messages]}`` -> the reply
body (a JSON array); re-queue ``{"requeue": clientId, "m": [messages]}`` -> ``[]``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from realtime.bayeux.codec import join
from realtime.bayeux.messages import Message
from realtime.broker.base import NodeUnavailable
from realtime.engine.engine import owner_of
from realtime.server import BayeuxServer, Context

log = logging.getLogger("realtime.forwarding")

# Time beyond a whole hold that a forwarded request may take.
_SLACK_S = 5.0


def remote_owner(server: BayeuxServer, batch: list[Message]) -> str | None:
    """The live node that owns a clientId in ``batch`` that this node does not hold."""
    engine = server.engine
    for message in batch:
        cid = message.get("clientId")
        if isinstance(cid, str) and cid not in engine.sessions:
            owner = owner_of(cid)
            if owner and owner != engine.node_id and engine.broker.is_live(owner):
                return owner
    return None


async def forward_batch(
    server: BayeuxServer, owner: str, transport: str, batch: list[Message]
) -> bytes | None:
    """The owner's reply body, or None if it could not be reached (then process locally)."""
    payload = orjson.dumps({"t": transport, "b": batch})
    try:
        return await server.engine.broker.forward(owner, payload, server.settings.timeout_s + _SLACK_S)
    except NodeUnavailable:
        log.info("node %s did not answer a forwarded batch; answering locally", owner)
        return None


async def give_back(server: BayeuxServer, owner: str, body: bytes) -> None:
    """The client left before the owner's answer reached it: re-queue its messages there."""
    replies = orjson.loads(body)
    messages = [r for r in replies if "successful" not in r]
    connect = next((r for r in replies if r.get("channel") == "/meta/connect" and r.get("clientId")), None)
    if not messages or connect is None:
        return
    payload = orjson.dumps({"requeue": connect["clientId"], "m": messages})
    try:
        await server.engine.broker.forward(owner, payload, _SLACK_S)
    except NodeUnavailable:
        log.warning("lost %d messages for %s: owner %s gone", len(messages), connect["clientId"], owner)


async def serve_forwarded(server: BayeuxServer, payload: bytes) -> bytes:
    """The owner's side: process a forwarded batch (or re-queue) and answer."""
    request: dict[str, Any] = orjson.loads(payload)
    if "requeue" in request:
        session = server.engine.sessions.get(str(request["requeue"]))
        if session is not None and not session.closed:
            session.requeue([orjson.dumps(m) for m in request.get("m", [])])
        return b"[]"
    ctx = Context(str(request.get("t", "long-polling")))
    result = await server.process(list(request.get("b", [])), ctx)
    if result.pending is not None:
        await result.pending.future
    return join(await server.collect(result))
