"""An in-process Bayeux client for the server's own code, as Faye's ``getClient()``.

It speaks the protocol through ``BayeuxServer.process`` with transport ``in-process``
(so extensions see its messages and it may subscribe to ``/service/**``), and its
session never expires. Callbacks run on the event loop, one tick after delivery, and
receive the delivered message's ``data``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from realtime.bayeux import channels
from realtime.bayeux.errors import BayeuxError
from realtime.bayeux.messages import Message
from realtime.bayeux.outbound import Outbound
from realtime.bayeux.session import Outcome
from realtime.server import IN_PROCESS, BayeuxServer, Context

log = logging.getLogger("realtime.inprocess")

Callback = Callable[[Any], None]


class _CallbackSink:
    def __init__(self, client: InProcessClient) -> None:
        self.client = client

    def deliver(self, out: Outbound) -> Outcome:
        asyncio.get_running_loop().call_soon(self.client._dispatch, out.payload)
        return Outcome.DELIVERED

    def close(self, reason: str) -> None:
        self.client.client_id = None


class InProcessClient:
    def __init__(self, server: BayeuxServer) -> None:
        self.server = server
        self.client_id: str | None = None
        self._callbacks: dict[str, list[Callback]] = {}
        self._ctx = Context(IN_PROCESS, sink=_CallbackSink(self))

    async def _send(self, message: Message) -> Message:
        result = await self.server.process([message], self._ctx)
        if result.pending is not None:
            await result.pending.future
        parts = await self.server.collect(result)
        reply: Message = orjson.loads(parts[0]) if parts else {}
        if not reply.get("successful"):
            error = str(reply.get("error", "500::no reply"))
            code, _, rest = error.partition(":")
            raise BayeuxError(
                int(code) if code.isdigit() else 500, rest.partition(":")[0], rest.partition(":")[2]
            )
        return reply

    async def connect(self) -> str:
        if self.client_id is None:
            reply = await self._send(
                {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [IN_PROCESS]}
            )
            self.client_id = str(reply["clientId"])
            await self._send(
                {"channel": "/meta/connect", "clientId": self.client_id, "connectionType": IN_PROCESS}
            )
        return self.client_id

    async def subscribe(self, channel: str, callback: Callback) -> None:
        client_id = await self.connect()
        if channel not in self._callbacks:
            await self._send({"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel})
        self._callbacks.setdefault(channel, []).append(callback)

    async def unsubscribe(self, channel: str) -> None:
        if self.client_id is not None and self._callbacks.pop(channel, None) is not None:
            await self._send(
                {"channel": "/meta/unsubscribe", "clientId": self.client_id, "subscription": channel}
            )

    async def publish(self, channel: str, data: Any, ext: Any = None) -> None:
        message: Message = {"channel": channel, "data": data}
        if self.client_id is not None:
            message["clientId"] = self.client_id
        if ext is not None:
            message["ext"] = ext
        await self._send(message)

    async def disconnect(self) -> None:
        if self.client_id is not None:
            await self._send({"channel": "/meta/disconnect", "clientId": self.client_id})
            self.client_id = None
            self._callbacks.clear()

    def _dispatch(self, payload: bytes) -> None:
        message = orjson.loads(payload)
        name = message.get("channel", "")
        for pattern, callbacks in list(self._callbacks.items()):
            if channels.matches(pattern, name):
                for callback in callbacks:
                    try:
                        callback(message.get("data"))
                    except Exception:
                        log.exception("in-process subscriber of %s failed", pattern)
