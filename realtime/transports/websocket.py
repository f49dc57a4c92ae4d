"""Bayeux over WebSocket through plain ASGI, for when the app runs under a server
without ``FastWebSocketProtocol`` (which serves Bayeux sockets itself: see
``direct_socket``). Same behaviour, more memory and CPU per socket.

One JSON batch per text frame; pushes go one message per frame. Frames are processed
in arrival order (so one client's publishes stay ordered); a held ``/meta/connect`` is
answered from its own task so that it never blocks later frames. An unparseable frame
is counted and ignored, as Faye does: the socket stays usable. When the socket closes
the session survives, unbound, until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from realtime.bayeux.codec import decode_batch, join
from realtime.bayeux.errors import BadRequest, BatchTooLarge
from realtime.server import WEBSOCKET, BayeuxServer, Context, PendingConnect, reply_error
from realtime.transports.headers import RawHeaders
from realtime.transports.sinks import QueueSink

log = logging.getLogger("realtime.transports.websocket")

Scope = dict[str, Any]


async def serve_websocket(scope: Scope, receive: Any, send: Any, server: BayeuxServer) -> None:
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    client = scope.get("client")
    remote = client[0] if client else None
    origin = RawHeaders(scope.get("headers", ())).get("origin")
    scope["headers"] = ()  # nothing reads them again; the scope lives as long as the socket
    if not server.guard.admit_connection(remote, origin):
        await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        return
    try:
        await _serve_socket(scope, receive, send, server, remote)
    finally:
        server.guard.release_connection(remote)


async def _serve_socket(
    scope: Scope, receive: Any, send: Any, server: BayeuxServer, remote: str | None
) -> None:
    await send({"type": "websocket.accept"})
    settings = server.settings
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def write(data: bytes) -> None:
        await send({"type": "websocket.send", "text": data.decode()})

    sink = QueueSink(
        write,
        lambda out: out.batch,
        settings.max_queue_messages,
        lambda code, reason: spawn(_close(send, code, reason)),
    )
    spawn(sink.run())
    ctx = Context(WEBSOCKET, remote=remote, sink=sink)

    async def answer_later(pending: PendingConnect) -> None:
        await pending.future
        encoded = await server.finish(pending)
        if encoded is not None:
            await write(join([encoded]))

    server.stats.opened(WEBSOCKET)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            data = event.get("text")
            if data is None:
                data = event.get("bytes") or b""
            try:
                batch = decode_batch(data, settings.max_batch_messages)
            except BatchTooLarge as exc:
                server.stats.limited("batch_size")
                await write(join([reply_error(message, exc.error) for message in exc.batch]))
                continue
            except BadRequest as exc:
                server.stats.bad_requests += 1
                log.debug("ignoring a bad frame: %s", exc)
                continue
            result = await server.process(batch, ctx)
            if result.replies:
                await write(join(result.replies))
            if result.pending is not None:
                spawn(answer_later(result.pending))
    except OSError:
        pass  # the peer went away mid-send
    finally:
        server.stats.closed(WEBSOCKET)
        server.unbind(ctx)
        sink.closed = True
        for task in list(tasks):
            task.cancel()


async def _close(send: Any, code: int, reason: str) -> None:
    with contextlib.suppress(OSError, RuntimeError):  # already closed
        await send({"type": "websocket.close", "code": code, "reason": reason})
