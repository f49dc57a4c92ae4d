"""Bayeux over HTTP: long-polling (POST), cross-origin long-polling (POST with a form
or text/plain body), callback-polling (JSON-P GET) and CORS preflight.

A held connect waits while watching for the client going away: if the request dies
during the hold, the hold is abandoned and queued messages stay queued for the next
connect, instead of being flushed into a dead request (faye/faye#251).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from realtime.bayeux.codec import decode_batch, form_message, is_valid_callback, join, jsonp_body
from realtime.bayeux.errors import BadRequest
from realtime.server import BayeuxServer, Context, PendingConnect
from realtime.transports.cors import cors_headers, preflight_headers
from realtime.transports.forwarding import forward_batch, give_back, remote_owner
from realtime.transports.headers import RawHeaders

Scope = dict[str, Any]
Header = tuple[bytes, bytes]
Headers = list[Header]

_COMMON: Headers = [(b"cache-control", b"no-cache, no-store"), (b"x-content-type-options", b"nosniff")]
JSON_TYPE = b"application/json; charset=utf-8"
JS_TYPE = b"text/javascript; charset=utf-8"
TEXT_TYPE = b"text/plain; charset=utf-8"


def header_map(scope: Scope) -> RawHeaders:
    return RawHeaders(scope.get("headers", ()))


async def respond(
    send: Any, status: int, body: bytes, content_type: bytes, extra: Sequence[Header] = ()
) -> None:
    headers: Headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(_COMMON)
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def bad_request(
    send: Any, server: BayeuxServer, reason: str, status: int = 400, extra: Sequence[Header] = ()
) -> None:
    server.stats.bad_requests += 1
    text = "Bad request" if status == 400 else reason
    body = (text + ("" if status != 400 else f": {reason}") + "\n").encode()
    await respond(send, status, body, TEXT_TYPE, extra)


async def read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise OverflowError(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)


async def serve_http(scope: Scope, receive: Any, send: Any, server: BayeuxServer) -> None:
    settings = server.settings
    headers = header_map(scope)
    cors = cors_headers(headers, settings.cors_origins)
    method = scope["method"]
    if method == "OPTIONS" or "access-control-request-method" in headers:
        await respond(send, 200, b"", TEXT_TYPE, preflight_headers(headers, settings.cors_origins))
        return
    callback: str | None = None
    try:
        if method == "POST":
            body = await read_body(receive, settings.max_message_bytes)
            if (headers.get("content-type") or "").split(";")[0].strip().lower() == "application/json":
                raw: bytes | str = body
            else:
                raw = form_message(body)
            transport = "long-polling"
        elif method == "GET":
            query = scope.get("query_string", b"")
            if len(query) > settings.max_message_bytes:
                raise OverflowError("query string too long")
            params = parse_qs(query.decode("latin-1"), max_num_fields=16)
            callback = params.get("jsonp", ["jsonpcallback"])[0]
            if not is_valid_callback(callback):
                raise BadRequest("invalid JSON-P callback name")
            if "message" not in params:
                raise BadRequest("missing 'message' parameter")
            raw = params["message"][0]
            transport = "callback-polling"
        else:
            raise BadRequest(f"method {method} not allowed")
        batch = decode_batch(raw, settings.max_batch_messages)
    except OverflowError as exc:
        await bad_request(send, server, str(exc), 413, cors)
        return
    except ConnectionError:
        return
    except BadRequest as exc:
        await bad_request(send, server, str(exc), 400, cors)
        return

    client = scope.get("client")
    ctx = Context(transport, remote=client[0] if client else None, headers=headers)
    server.stats.opened(transport)
    try:
        owner = remote_owner(server, batch)
        if owner is not None:
            relayed = await _forwarded(server, owner, transport, batch, receive)
            if relayed is _CLIENT_GONE:
                return
            if relayed is not None:
                await _answer(send, callback, relayed, cors)
                return
        result = await server.process(batch, ctx)
        if result.pending is not None and not await _wait(result.pending, receive, server):
            return
        await _answer(send, callback, join(await server.collect(result)), cors)
    finally:
        server.stats.closed(transport)


async def _answer(send: Any, callback: str | None, payload: bytes, cors: Headers) -> None:
    if callback is not None:
        extra = [(b"content-disposition", b"attachment; filename=f.txt"), *cors]
        await respond(send, 200, jsonp_body(callback, payload), JS_TYPE, extra)
    else:
        await respond(send, 200, payload, JSON_TYPE, cors)


_CLIENT_GONE = b""


async def _forwarded(
    server: BayeuxServer, owner: str, transport: str, batch: list[Any], receive: Any
) -> bytes | None:
    """The owner's answer; None if the owner could not be reached (answer locally);
    ``_CLIENT_GONE`` if the client left meanwhile (its messages went back to the owner)."""
    task = asyncio.ensure_future(forward_batch(server, owner, transport, batch))
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone = watcher.done()
        watcher.cancel()
    body = await task
    if body is not None and gone:
        await give_back(server, owner, body)
        return _CLIENT_GONE
    return body


async def _wait(pending: PendingConnect, receive: Any, server: BayeuxServer) -> bool:
    """Wait for the hold to end; False if the client went away first.

    A watcher task reads the request's ``http.disconnect``; if it comes while the hold is
    open, its callback abandons the hold (the session's messages stay queued). Callbacks
    instead of ``asyncio.wait``: this runs once per long-poll, on the hot path.
    """
    future = pending.future
    if future.done():
        return True
    watcher = asyncio.ensure_future(_disconnected(receive))
    cid = pending.session.client_id
    holds = server.engine.holds

    def on_gone(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and not future.done():
            holds.abandon(cid, future)  # resolves the future: the wait below ends

    watcher.add_done_callback(on_gone)
    try:
        await future
    finally:
        gone = watcher.done() and not watcher.cancelled()
        if not gone:
            watcher.cancel()
    return not gone


async def _disconnected(receive: Any) -> None:
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return
