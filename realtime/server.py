"""BayeuxServer: a batch of messages in, encoded replies out; transport-agnostic.

``process(batch, ctx)`` runs each message through incoming extensions and its handler
and returns the encoded replies. A ``/meta/connect`` is never answered inside
``process``: it comes back as ``result.pending`` with a future that the engine
resolves when the hold ends, so each transport decides how to wait (HTTP waits while
watching for the client going away; a WebSocket answers the rest of the batch first
and the connect later). ``finish(pending)`` builds that connect's final reply.

Faye's MUST/MAY notes per channel live in ``realtime.bayeux.validation``; this module
is the sequencing around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from realtime.bayeux import messages as m
from realtime.bayeux import validation as v
from realtime.bayeux.advice import connect_advice, handshake_advice, hold_seconds, retry_advice
from realtime.bayeux.channels import PRIVILEGED
from realtime.bayeux.codec import encode
from realtime.bayeux.errors import BAD_REQUEST, TOO_MANY, error_string
from realtime.bayeux.messages import Message
from realtime.bayeux.outbound import Outbound
from realtime.bayeux.session import Outcome, Session, Sink
from realtime.engine import engine as eng
from realtime.engine.engine import Engine
from realtime.extensions import Events, MaybeAwaitable, run_chain
from realtime.security.guard import Guard
from realtime.settings import Settings

log = logging.getLogger("realtime.server")

IN_PROCESS = "in-process"
WEBSOCKET = "websocket"
_ENDED = (eng.EXPIRED, eng.OVERFLOW)


@dataclass(slots=True)
class Context:
    """What a transport knows about the request a batch came in."""

    transport: str
    remote: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    sink: Sink | None = None  # a socket/stream that a connect binds to its session
    bound: Session | None = None


@dataclass(slots=True)
class PendingConnect:
    session: Session
    reply: Message
    future: asyncio.Future[str]
    ctx: Context


@dataclass(slots=True)
class BatchResult:
    replies: list[bytes] = field(default_factory=list)
    pending: PendingConnect | None = None


Hook = Callable[[Message, Any], MaybeAwaitable]


class BayeuxServer:
    def __init__(self, settings: Settings, engine: Engine, guard: Guard) -> None:
        self.settings = settings
        self.engine = engine
        self.guard = guard
        self.stats = engine.stats
        self.events = Events()
        self.types = tuple(settings.connection_types)
        self._incoming: list[Hook] = []
        self._outgoing: list[Hook] = []
        self.closing = False
        engine.on_destroy.append(self._on_destroy)

    # --- extensions ----------------------------------------------------------------

    def add_extension(self, extension: object) -> None:
        incoming = getattr(extension, "incoming", None)
        outgoing = getattr(extension, "outgoing", None)
        if incoming is None and outgoing is None:
            raise TypeError("an extension needs an incoming() or outgoing() method")
        if incoming is not None:
            self._incoming.append(incoming)
        if outgoing is not None:
            self._outgoing.append(outgoing)

    # --- batches -------------------------------------------------------------------

    async def process(self, batch: list[Message], ctx: Context) -> BatchResult:
        result = BatchResult()
        self.stats.messages_in += len(batch)
        for message in batch:
            if self._incoming:
                processed = await run_chain(self._incoming, message, ctx)
                if processed is None:
                    continue
                message = processed
            reply = await self._handle(message, ctx, result)
            if reply is not None:
                encoded = await self._encode(reply, ctx)
                if encoded is not None:
                    result.replies.append(encoded)
        return result

    @property
    def finish_is_sync(self) -> bool:
        """Whether ``finish_sync`` may be used (no outgoing extension could await)."""
        return not self._outgoing

    def finish_sync(self, pending: PendingConnect) -> bytes:
        return encode(self._final_reply(pending))

    async def finish(self, pending: PendingConnect) -> bytes | None:
        """The connect reply once its hold has ended."""
        return await self._encode(self._final_reply(pending), pending.ctx)

    async def collect(self, result: BatchResult) -> list[bytes]:
        """A batch's whole answer once any hold has ended: the connect reply, the other
        replies, then the messages queued for an unbound session (HTTP and forwarding)."""
        pending = result.pending
        if pending is None:
            return result.replies
        encoded = await self.finish(pending)
        parts = ([encoded] if encoded is not None else []) + result.replies
        session = pending.session
        if not session.closed and session.sink is None:
            parts.extend(session.drain())
        return parts

    def _final_reply(self, pending: PendingConnect) -> Message:
        reason = pending.future.result() if pending.future.done() else eng.SHUTDOWN
        reply = pending.reply
        session = pending.session
        if reason in _ENDED or (session.closed and reason != eng.DISCONNECTED and reason != eng.SHUTDOWN):
            reply = m.make_reply(reply, error_string(401, session.client_id))
            reply.pop("clientId", None)
            reply["advice"] = handshake_advice()
        elif reason == eng.SHUTDOWN:
            reply["advice"] = {"reconnect": "handshake", "interval": 1000}
        elif not session.closed:
            self.engine.ping(session)
        return reply

    async def _encode(self, reply: Message, ctx: Context) -> bytes | None:
        if self._outgoing:
            processed = await run_chain(self._outgoing, reply, ctx)
            if processed is None:
                return None
            reply = processed
        return encode(reply)

    async def _handle(self, message: Message, ctx: Context, result: BatchResult) -> Message | None:
        error = v.check_channel_field(message)
        if error is not None:
            return m.make_reply(message, error)
        channel = message["channel"]
        if "error" in message:  # set by an incoming extension: refuse, keep the shape
            reply = m.make_reply(message)
            if channel in (m.HANDSHAKE, m.CONNECT):
                reply["advice"] = handshake_advice()
            return reply
        if channel == m.CONNECT:
            return self._connect(message, ctx, result)
        if channel == m.SUBSCRIBE:
            return self._subscribe(message, ctx, True)
        if channel == m.UNSUBSCRIBE:
            return self._subscribe(message, ctx, False)
        if channel == m.HANDSHAKE:
            return self._handshake(message, ctx)
        if channel == m.DISCONNECT:
            return self._disconnect(message)
        return await self._publish(message, ctx)

    # --- meta channels -------------------------------------------------------------

    def _handshake(self, message: Message, ctx: Context) -> Message:
        error = v.check_handshake(message, self.types)
        session = None
        if error is None:
            who, error = self.guard.handshake(message, ctx.remote, ctx.transport == IN_PROCESS)
            if error is None and self.closing:
                error = error_string(500, "", "Server shutting down")
            if error is None:
                session = self.engine.create_session()
                if session is None:
                    self.stats.limited("sessions")
                    error = error_string(TOO_MANY, "sessions", "Too many sessions")
                else:
                    error = self.guard.admit_session(session, ctx.remote)
                    if error is not None:
                        self.engine.destroy(session, eng.DISCONNECTED)
                        session = None
        reply = m.make_reply(message, error)
        reply["version"] = m.BAYEUX_VERSION
        reply["supportedConnectionTypes"] = list(self.types)
        if session is None:
            reply["advice"] = handshake_advice()
            return reply
        session.pinned = ctx.transport == IN_PROCESS
        session.auth = who
        if who.user_id is not None:
            self.engine.bind_user(session, who.user_id)
        reply["clientId"] = session.client_id
        reply["advice"] = retry_advice(self.settings.timeout_s, self.settings.interval_s)
        self.stats.handshakes += 1
        self.events.emit("handshake", session.client_id)
        return reply

    def _connect(self, message: Message, ctx: Context, result: BatchResult) -> Message | None:
        session = self.engine.get(message.get("clientId"))
        error = v.check_connect(message, session is not None, self.types)
        if error is not None or session is None:
            reply = m.make_reply(message, error)
            reply.pop("clientId", None)
            reply["advice"] = handshake_advice()
            return reply
        self.engine.ping(session)
        ctype: str = message["connectionType"]
        s = self.settings
        reply = m.make_reply(message)
        reply["advice"] = connect_advice(ctype, s.timeout_s, s.interval_s)
        hold_s = hold_seconds(message.get("advice"), s.timeout_s)
        if not session.connected_once or ctype == "eventsource":
            # Answer the first connect at once: CometD clients wait for it before
            # they report the connection up (Faye holds it for a whole timeout).
            session.connected_once = True
            hold_s = 0.0
        if ctx.sink is not None:
            self.bind(session, ctx)
        elif hold_s > 0 and len(self.engine.holds) >= s.max_long_polls:
            self.stats.limited("long_polls")
            hold_s = 0.0
            reply["advice"]["interval"] = max(reply["advice"].get("interval", 0), 1000)
        if self.closing:
            hold_s = 0.0
        if result.pending is not None:  # two connects in one batch: the first is done
            self.engine.holds.release(result.pending.session.client_id, "superseded")
        future = self.engine.holds.open(session, hold_s)
        result.pending = PendingConnect(session, reply, future, ctx)
        return None

    def bind(self, session: Session, ctx: Context) -> None:
        """Send ``session``'s deliveries to ``ctx.sink`` from now on; flush its queue there."""
        sink = ctx.sink
        assert sink is not None
        old = ctx.bound
        if old is not None and old is not session and old.sink is sink:
            old.sink = None
        ctx.bound = session
        session.sink = sink
        if session.queued:
            backlog = session.drain()
            for i, payload in enumerate(backlog):
                outcome = sink.deliver(Outbound(payload))
                if outcome is Outcome.OVERFLOW:
                    self.engine.destroy(session, eng.OVERFLOW)
                    return
                if outcome is Outcome.QUEUE:  # the socket is already closing: keep the rest
                    session.requeue(backlog[i:])
                    return

    def unbind(self, ctx: Context) -> None:
        """The transport's socket/stream closed; the session survives until expiry."""
        session = ctx.bound
        ctx.bound = None
        if session is not None and session.sink is ctx.sink:
            session.sink = None
            self.engine.holds.release(session.client_id, "timeout")

    def _subscribe(self, message: Message, ctx: Context, subscribing: bool) -> Message:
        session = self.engine.get(message.get("clientId"))
        error = v.check_client(message, session is not None)
        requested = v.subscriptions(message)
        if requested is None:
            error = error_string(402, "subscription")
        elif error is None:
            error = v.check_subscription_channels(requested, allow_service=ctx.transport == IN_PROCESS)
        keys: list[list[str]] = []
        if error is None and session is not None and requested is not None and subscribing:
            error = self._subscription_keys(session, requested, message, keys)
        reply = m.make_reply(message, error)
        reply["subscription"] = message.get("subscription", [])
        if error is None and session is not None and requested is not None:
            if subscribing:
                for channel, channel_keys in zip(requested, keys, strict=True):
                    if self.engine.subscribe(session, channel, channel_keys):
                        self.events.emit("subscribe", session.client_id, channel)
            else:
                for channel in requested:
                    if self.engine.unsubscribe(session, channel):
                        self.events.emit("unsubscribe", session.client_id, channel)
        return reply

    def _subscription_keys(
        self, session: Session, requested: list[Any], message: Message, out: list[list[str]]
    ) -> str | None:
        """Policy and limits for a subscribe; fills ``out`` with each channel's index keys."""
        room = self.settings.max_subscriptions_per_client - len(session.subscriptions)
        if sum(1 for c in set(requested) if c not in session.subscriptions) > room:
            self.stats.limited("subscriptions_per_client")
            return error_string(TOO_MANY, "subscription", "Too many subscriptions")
        for channel in requested:
            keys = self.guard.subscription_keys(session, channel, message)
            if isinstance(keys, str):
                return keys
            out.append(keys)
        return None

    def _disconnect(self, message: Message) -> Message:
        session = self.engine.get(message.get("clientId"))
        error = v.check_client(message, session is not None)
        reply = m.make_reply(message, error)
        if error is not None or session is None:
            reply.pop("clientId", None)
            return reply
        self.engine.destroy(session, eng.DISCONNECTED)
        return reply

    def _on_destroy(self, session: Session, reason: str) -> None:
        self.guard.session_ended(session)
        if self.events.has("unsubscribe"):
            for channel in session.subscriptions:
                if not channel.startswith(PRIVILEGED):
                    self.events.emit("unsubscribe", session.client_id, channel)
        self.events.emit("disconnect", session.client_id)

    # --- publishing ----------------------------------------------------------------

    async def _publish(self, message: Message, ctx: Context) -> Message:
        error = v.check_publish(message)
        if error is None:
            session = self.engine.get(message.get("clientId"))
            error = self.guard.publish(message, session, ctx.remote, ctx.transport == IN_PROCESS)
        reply = m.make_reply(message, error)
        if error is not None:
            return reply
        channel: str = message["channel"]
        out: Message | None = m.delivery(message, self.guard.strip)
        if self._outgoing:
            out = await run_chain(self._outgoing, m.delivery(message, self.guard.strip), None)
        if out is not None:
            try:
                payload = encode(out)
            except orjson.JSONEncodeError:
                return m.make_reply(message, error_string(BAD_REQUEST, channel, "Message cannot be encoded"))
            self.publish_encoded(channel, payload)
        self.events.emit("publish", message.get("clientId"), channel, message["data"])
        return reply

    def may_deliver_many(self, channels: Sequence[str]) -> list[bool]:
        """For each channel, whether a publish to it may reach anyone, here or on another node."""
        return self.engine.may_deliver_many(channels)

    def publish_encoded(self, channel: str, payload: bytes) -> int:
        """Fan out an already-encoded delivery (used by the feed bridge and publishers)."""
        self.stats.publishes += 1
        return self.engine.publish(channel, payload)

    # --- shutdown ------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Refuse new sessions and answer every held connect with advice to re-handshake."""
        self.closing = True
        self.engine.holds.release_all(eng.SHUTDOWN)


def reply_error(message: Message, error: str) -> bytes:
    return encode(m.make_reply(message, error))
