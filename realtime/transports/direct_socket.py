"""Bayeux WebSockets served by the protocol object itself, without ASGI.

An idle Bayeux socket is the common case (50k per node); through ASGI each one keeps
a task, an asyncio.Queue, a scope and several closures alive for nothing. Here a
``DirectSocket`` is fed complete text messages by ``FastWebSocketProtocol`` and runs
``server.process`` in a worker task that exists only while frames are waiting, so
frames stay in arrival order and an idle socket holds no task at all.

Backpressure: more than ``MAX_BACKLOG`` unprocessed frames pauses reading from the
socket until the worker catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from realtime.bayeux.codec import decode_batch, join
from realtime.bayeux.errors import BadRequest, BatchTooLarge
from realtime.server import WEBSOCKET, BayeuxServer, Context, PendingConnect, reply_error
from realtime.transports.sinks import SocketSink

if TYPE_CHECKING:
    from realtime.transports.ws_protocol import FastWebSocketProtocol

log = logging.getLogger("realtime.transports.websocket")

MAX_BACKLOG = 64


class DirectSocket:
    __slots__ = ("_closed", "_frames", "_release", "_worker", "ctx", "proto", "server", "sink")

    def __init__(
        self,
        proto: FastWebSocketProtocol,
        server: BayeuxServer,
        remote: str | None,
        release: Callable[[], None],
    ) -> None:
        self.proto = proto
        self.server = server
        self.sink = SocketSink(proto, server.settings.max_socket_buffer_bytes, proto.close_with)
        self.ctx = Context(WEBSOCKET, remote=remote, sink=self.sink)
        self._frames: deque[bytes] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._release = release
        self._closed = False
        server.stats.opened(WEBSOCKET)

    def on_message(self, data: bytes) -> None:
        if self._closed:
            return
        if self._frames is None:
            self._frames = deque()
        self._frames.append(data)
        if len(self._frames) > MAX_BACKLOG:
            self.proto.pause_for_backlog()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        frames = self._frames
        try:
            while frames and not self._closed:
                await self._handle(frames.popleft())
                if len(frames) <= MAX_BACKLOG // 2:
                    self.proto.resume_after_backlog()
        except Exception:
            log.exception("WebSocket frame handling failed")
            self.proto.close_with(1011, "internal error")
        finally:
            self._worker = None
            self._frames = frames or None

    async def _handle(self, data: bytes) -> None:
        server = self.server
        try:
            batch = decode_batch(data, server.settings.max_batch_messages)
        except BatchTooLarge as exc:
            server.stats.limited("batch_size")
            self.sink.send_batch(join([reply_error(message, exc.error) for message in exc.batch]))
            return
        except BadRequest as exc:
            server.stats.bad_requests += 1
            log.debug("ignoring a bad frame: %s", exc)
            return
        result = await server.process(batch, self.ctx)
        if result.replies:
            self.sink.send_batch(join(result.replies))
        pending = result.pending
        if pending is not None:
            if server.finish_is_sync:
                pending.future.add_done_callback(partial(self._answer_now, pending))
            else:
                asyncio.get_running_loop().create_task(self._answer_later(pending))

    def _answer_now(self, pending: PendingConnect, _: object) -> None:
        if not self._closed:
            self.sink.send_batch(join([self.server.finish_sync(pending)]))

    async def _answer_later(self, pending: PendingConnect) -> None:
        await pending.future
        encoded = await self.server.finish(pending)
        if encoded is not None and not self._closed:
            self.sink.send_batch(join([encoded]))

    def on_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.stats.closed(WEBSOCKET)
        self.server.unbind(self.ctx)
        if self._worker is not None:
            self._worker.cancel()
        self._release()
