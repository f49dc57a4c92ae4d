"""Bayeux over EventSource: ``GET <mount>/<clientId>`` with ``Accept: text/event-stream``.

The stream carries deliveries as ``data: [message]`` events; the client sends its
requests over HTTP with ``connectionType: "eventsource"``, and those connects return
at once. Unlike Faye, the clientId must name a live session (else 400), so a stream
is never opened for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from realtime.bayeux.session import Session
from realtime.server import BayeuxServer, Context
from realtime.transports.cors import cors_headers
from realtime.transports.http import Scope, bad_request, header_map
from realtime.transports.sinks import QueueSink

EVENTSOURCE = "eventsource"
_KEEPALIVE = b":\r\n\r\n"


def wants_eventsource(scope: Scope, mount: str) -> str | None:
    """The clientId of an EventSource request, or None."""
    if scope["method"] != "GET" or scope["path"] == mount:
        return None
    if "text/event-stream" not in (header_map(scope).get("accept") or ""):
        return None
    return str(scope["path"][len(mount) + 1 :])


async def serve_eventsource(
    scope: Scope, receive: Any, send: Any, server: BayeuxServer, client_id: str
) -> None:
    headers = header_map(scope)
    cors = cors_headers(headers, server.settings.cors_origins)
    session = server.engine.get(client_id)
    if session is None:
        await bad_request(send, server, "unknown client", 400, cors)
        return
    client = scope.get("client")
    remote = client[0] if client else None
    if not server.guard.admit_connection(remote):
        await bad_request(send, server, "Too many connections", 429, cors)
        return
    try:
        await _stream(scope, receive, send, server, session, cors)
    finally:
        server.guard.release_connection(remote)


async def _stream(
    scope: Scope, receive: Any, send: Any, server: BayeuxServer, session: Session, cors: Any
) -> None:
    ended = asyncio.Event()

    async def write(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    sink = QueueSink(
        write, lambda out: out.sse_event, server.settings.max_queue_messages, lambda c, r: ended.set()
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache, no-store"),
                (b"x-content-type-options", b"nosniff"),
                *cors,
            ],
        }
    )
    await write(b"retry: 5000\r\n\r\n")
    ctx = Context(EVENTSOURCE, sink=sink)
    server.bind(session, ctx)
    sink.on_dead = lambda left: session.requeue(left) if not session.closed else None
    writer = asyncio.ensure_future(sink.run())
    gone = asyncio.ensure_future(_until_disconnect(receive))
    server.stats.opened(EVENTSOURCE)
    stop = asyncio.ensure_future(ended.wait())
    try:
        while True:
            done, _ = await asyncio.wait(
                (stop, gone, writer), timeout=server.settings.ping_s, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                break
            await write(_KEEPALIVE)
    except OSError:
        pass
    finally:
        server.stats.closed(EVENTSOURCE)
        server.unbind(ctx)
        sink.closed = True
        for task in (writer, gone, stop):
            task.cancel()
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
