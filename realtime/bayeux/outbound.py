"""A published message encoded once, with its per-transport forms built lazily once.

The fan-out loop hands the same ``Outbound`` to every recipient's sink; the first
WebSocket sink asks for ``ws_frame`` and every later one reuses those bytes, so a
delivery to N sockets costs one encode, one frame build and N ``transport.write``s.
"""

from __future__ import annotations

import struct


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client WebSocket text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class Outbound:
    __slots__ = ("_batch", "_frame", "_sse", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload  # one encoded message object
        self._batch: bytes | None = None
        self._frame: bytes | None = None
        self._sse: bytes | None = None

    @property
    def batch(self) -> bytes:
        """``[message]``: Faye pushes one message per WebSocket frame, as an array."""
        if self._batch is None:
            self._batch = b"[" + self.payload + b"]"
        return self._batch

    @property
    def ws_frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.batch)
        return self._frame

    @property
    def sse_event(self) -> bytes:
        if self._sse is None:
            self._sse = b"data: " + self.batch + b"\r\n\r\n"
        return self._sse
