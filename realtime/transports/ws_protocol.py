"""uvicorn's websockets-sansio protocol, with two fast paths for Bayeux.

Outgoing: a delivery is a WebSocket frame built once per published message and
written straight to each socket's transport (``SocketSink``), not an ASGI ``send``
per subscriber. Incoming: an upgrade to the Bayeux mount path is accepted here and
its messages go to a ``DirectSocket`` with no ASGI task, queue or scope per socket
(see ``direct_socket``). Other paths, and apps that are not a Bayeux node, get
uvicorn's ordinary ASGI handling; so does the whole app under another server, where
``realtime.transports.websocket`` serves Bayeux through ASGI.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import unquote

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class SocketHost(Protocol):
    """What the protocol needs from the app (``RealtimeApp``) to serve a socket itself."""

    def serves_socket(self, path: str) -> bool: ...

    def open_socket(self, proto: FastWebSocketProtocol, origin: str | None, remote: str | None) -> Any: ...


def _host(app: Any) -> SocketHost | None:
    """Find the Bayeux node under uvicorn's middleware wrappers (``.app`` chains)."""
    for _ in range(8):
        if app is None:
            return None
        if hasattr(app, "serves_socket") and hasattr(app, "open_socket"):
            host: SocketHost = app
            return host
        app = getattr(app, "app", None)
    return None


class _Discard:
    """Stands in for the parent's per-socket ASGI queue and writable event on a socket
    served directly: nothing reads them there, and they cost ~4 KB per idle socket.
    The parent's lifecycle code only ever calls these three methods on them."""

    __slots__ = ()

    def put_nowait(self, item: object) -> None:
        pass

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass


_DISCARD = _Discard()


class FastWebSocketProtocol(WebSocketsSansIOProtocol):
    direct: Any = None  # a DirectSocket once a Bayeux upgrade is accepted here

    def handle_connect(self, event: Any) -> None:
        host = _host(self.app)
        path = unquote(event.path.partition("?")[0])
        if host is None or not host.serves_socket(path):
            super().handle_connect(event)
            return
        self.handshake_initiated = True
        response = self.conn.accept(event)
        origin = event.headers.get("Origin")
        direct = (
            host.open_socket(self, origin, self.client[0] if self.client else None)
            if response.status_code == 101
            else None
        )
        if direct is None:
            if response.status_code == 101:
                response = self.conn.reject(403, "Forbidden\n")
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(response)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        self.direct = direct
        self.queue = _DISCARD  # type: ignore[assignment]
        self.writable = _DISCARD  # type: ignore[assignment]
        self.handshake_complete = True
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.start_keepalive()

    def send_receive_event_to_app(self) -> None:
        direct = self.direct
        if direct is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if not self.close_sent:
            direct.on_message(bytes(data))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.direct is not None:
            self.direct.on_close()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The upgrade request and response are kept by the parent for nothing once the
            # socket is open; on a node with 50k idle sockets they are ~2 KB each.
            del self.request, self.response

    def writable_now(self) -> bool:
        return not (self.close_sent or self.disconnected or self.transport.is_closing())

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake (as uvicorn's ``websocket.close``), from any path."""
        if self.close_sent or self.transport.is_closing():
            return
        if self.direct is None:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def pause_for_backlog(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_after_backlog(self) -> None:
        if self.read_paused and not self.close_sent:
            self.read_paused = False
            self.transport.resume_reading()
