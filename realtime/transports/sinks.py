"""Sinks: where a bound session's deliveries go.

``SocketSink`` writes pre-built frames straight to a uvicorn transport, with the
kernel-side write buffer as the bound. ``QueueSink`` is for streams written through
ASGI ``send`` (EventSource, or WebSockets under a server without the fast path): a
bounded deque drained by one writer task. Both report overflow instead of growing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from realtime.bayeux.outbound import Outbound, text_frame
from realtime.bayeux.session import Outcome
from realtime.transports.ws_protocol import FastWebSocketProtocol

log = logging.getLogger("realtime.transports")

CLOSE_CODES = {"disconnected": 1000, "expired": 1000, "overflow": 1008, "shutdown": 1001}


class SocketSink:
    __slots__ = ("_closer", "limit", "proto", "transport")

    def __init__(self, proto: FastWebSocketProtocol, limit: int, closer: Callable[[int, str], None]) -> None:
        self.proto = proto
        self.transport = proto.transport
        self.limit = limit
        self._closer = closer

    def deliver(self, out: Outbound) -> Outcome:
        if not self.proto.writable_now():
            return Outcome.QUEUE
        if self.transport.get_write_buffer_size() > self.limit:
            return Outcome.OVERFLOW
        self.transport.write(out.ws_frame)
        return Outcome.DELIVERED

    def send_batch(self, data: bytes) -> bool:
        if not self.proto.writable_now():
            return False
        self.transport.write(text_frame(data))
        return True

    def close(self, reason: str) -> None:
        # Next tick: the reply to the request that ended the session (a disconnect)
        # is written after this call and must go out before the close frame.
        asyncio.get_running_loop().call_soon(self._closer, CLOSE_CODES.get(reason, 1000), reason)


class QueueSink:
    __slots__ = ("_buffer", "_closer", "_pick", "_wake", "_write", "closed", "limit", "on_dead")

    def __init__(
        self,
        write: Callable[[bytes], Awaitable[None]],
        pick: Callable[[Outbound], bytes],
        limit: int,
        closer: Callable[[int, str], None],
    ) -> None:
        self._write = write
        self._pick = pick
        self.limit = limit
        self._closer = closer
        self._buffer: deque[Outbound] = deque()
        self._wake = asyncio.Event()
        self.closed = False
        # Called with what could not be written when the stream died, to requeue it.
        self.on_dead: Callable[[list[bytes]], None] | None = None

    def deliver(self, out: Outbound) -> Outcome:
        if self.closed:
            return Outcome.QUEUE
        if len(self._buffer) >= self.limit:
            return Outcome.OVERFLOW
        self._buffer.append(out)
        self._wake.set()
        return Outcome.DELIVERED

    async def run(self) -> None:
        """Write buffered messages in order until the stream fails or is closed."""
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while self._buffer and not self.closed:
                    await self._write(self._pick(self._buffer[0]))
                    self._buffer.popleft()
        except OSError:
            pass
        except Exception:
            log.exception("stream writer failed")
        finally:
            self.closed = True
            left = [o.payload for o in self._buffer]
            self._buffer.clear()
            if left and self.on_dead is not None:
                self.on_dead(left)

    def close(self, reason: str) -> None:
        self.closed = True
        self._wake.set()
        self._closer(CLOSE_CODES.get(reason, 1000), reason)
