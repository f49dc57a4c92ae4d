"""The Bayeux server's security hook: authentication, channel policy, rate limits.

Denials are Bayeux ``403`` errors (``429`` for rates and counts, which Faye's table
lacks). A session's ``auth`` is the Identity proven at handshake; a subscribe or
publish may add a token of its own in ``ext`` for that one request (Stream's clients
send ``{user_id, api_key, signature}`` on subscribe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from feeds.apps import App
from feeds.config import DEFAULT_GROUPS
from realtime.bayeux import channels
from realtime.bayeux.channels import PRIVILEGED
from realtime.bayeux.errors import CHANNEL_FORBIDDEN, TOO_MANY, error_string
from realtime.bayeux.messages import Message
from realtime.bayeux.session import Session
from realtime.metrics import Stats
from realtime.security.limits import Counts, KeyedBuckets
from realtime.security.policy import ANONYMOUS, ChannelPolicy, Identity
from realtime.security.tokens import AppRegistry, TokenError
from realtime.settings import Settings
from realtime.transports.cors import allowed

log = logging.getLogger("realtime.security")

SERVER = Identity(server=True)
DEFAULT_RULES = [{"pattern": "/site-{app}-feed-{feed}", "subscribe": "feed", "publish": "server"}]


class Guard:
    def __init__(
        self,
        settings: Settings,
        registry: AppRegistry,
        policy: ChannelPolicy,
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.policy = policy
        self.stats = stats
        self.clock = clock
        self.credential_fields = frozenset(settings.credential_fields)
        # With apps declared, a token that fails verification is refused outright.
        self.strict_tokens = bool(settings.apps)
        self.handshakes = KeyedBuckets(settings.handshakes_per_ip_per_s)
        self.client_publishes = KeyedBuckets(settings.publishes_per_client_per_s)
        self.ip_publishes = KeyedBuckets(settings.publishes_per_ip_per_s)
        self.sessions = Counts(settings.max_sessions_per_ip)
        self.connections = Counts(settings.max_connections_per_ip)

    # --- identity ------------------------------------------------------------------

    def _token_identity(self, message: Message) -> Identity | None:
        """The identity a message's own ``ext`` proves; raises TokenError if it tries and fails."""
        ext = message.get("ext")
        if not isinstance(ext, dict):
            return None
        token = ext.get("token") or ext.get("signature")
        if token is None:
            return None
        # ext.user_id is not evidence of anything (Stream's client even puts the channel
        # name there): only the verified token says who this is.
        try:
            return self.registry.verify(token, ext.get("api_key"))
        except TokenError:
            if not self.strict_tokens:
                # No apps configured: a Faye app may use ext.token for its own scheme
                # (an extension of its own checks it). Unverified, it proves nothing.
                return None
            raise

    def _refuse(self, reason: str) -> str:
        self.stats.limited("auth")
        return error_string(CHANNEL_FORBIDDEN, "", reason)

    def _limited(self, name: str, what: str) -> str:
        self.stats.limited(name)
        return error_string(TOO_MANY, what, "Rate limit exceeded" if "rate" in name else "Limit exceeded")

    # --- hooks ---------------------------------------------------------------------

    def handshake(
        self, message: Message, remote: str | None, in_process: bool
    ) -> tuple[Identity, str | None]:
        if in_process:
            return SERVER, None
        if not self.handshakes.allow(remote, self.clock()):
            return ANONYMOUS, self._limited("handshake_rate", "handshake")
        try:
            who = self._token_identity(message)
        except TokenError as exc:
            return ANONYMOUS, self._refuse(f"Invalid token: {exc}")
        if who is None:
            if self.settings.require_auth:
                return ANONYMOUS, self._refuse("Authentication required")
            who = ANONYMOUS
        return who, None

    def admit_session(self, session: Session, remote: str | None) -> str | None:
        if not self.sessions.acquire(remote):
            return self._limited("sessions_per_ip", "sessions")
        session.remote = remote
        return None

    def admit_connection(self, remote: str | None, origin: str | None = None) -> bool:
        """A long-lived connection (WebSocket, EventSource) may open: its Origin, if it sends
        one, is allowed, and its address is under its connection count. Refusals are counted;
        an admitted connection must call ``release_connection`` when it ends."""
        if origin is not None and not allowed(origin, self.settings.ws_origins):
            self.stats.limited("origin")
            return False
        if not self.connections.acquire(remote):
            self.stats.limited("connections_per_ip")
            return False
        return True

    def release_connection(self, remote: str | None) -> None:
        self.connections.release(remote)

    def session_ended(self, session: Session) -> None:
        self.sessions.release(session.remote)
        self.client_publishes.forget(session.client_id)

    def subscription_keys(self, session: Session, channel: str, message: Message) -> list[str] | str:
        """Index keys for ``channel``, or the error string refusing it."""
        try:
            who = _identity(session).merged(self._token_identity(message))
        except TokenError as exc:
            return self._refuse(f"Invalid token: {exc}")
        if channels.is_valid_pattern(channel):
            if self.policy.wildcard_privileged(who, channel):
                return [channel, PRIVILEGED + channel]
            return [channel]
        if not self.policy.may_subscribe(who, channel):
            self.stats.limited("auth")
            return error_string(CHANNEL_FORBIDDEN, channel)
        return [channel]

    def publish(
        self, message: Message, session: Session | None, remote: str | None, in_process: bool
    ) -> str | None:
        if in_process:
            return None
        now = self.clock()
        if session is not None and not self.client_publishes.allow(session.client_id, now):
            return self._limited("publish_rate_client", "publish")
        if not self.ip_publishes.allow(remote, now):
            return self._limited("publish_rate_ip", "publish")
        channel: str = message["channel"]
        try:
            who = _identity(session).merged(self._token_identity(message))
        except TokenError as exc:
            return self._refuse(f"Invalid token: {exc}")
        if not self.policy.may_publish(who, channel):
            self.stats.limited("auth")
            return error_string(CHANNEL_FORBIDDEN, channel)
        return None

    def strip(self, ext: Any) -> Any:
        """``ext`` without credentials, for forwarding to other clients (None if emptied)."""
        if not isinstance(ext, dict) or not self.credential_fields.intersection(ext):
            return ext
        kept = {k: v for k, v in ext.items() if k not in self.credential_fields}
        return kept or None


def _identity(session: Session | None) -> Identity:
    auth = session.auth if session is not None else None
    return auth if isinstance(auth, Identity) else ANONYMOUS


def build_guard(settings: Settings, stats: Stats, apps: list[App]) -> Guard:
    """The guard for ``settings``: its ``[[channels]]`` rules (default: feed channels
    need a feed token; everything else is open, as Faye)."""
    rules = settings.extra.get("channels") or DEFAULT_RULES
    feeds = settings.extra.get("feeds") or {}
    groups = feeds.get("groups") or [group.name for group in DEFAULT_GROUPS]
    return Guard(settings, AppRegistry(apps), ChannelPolicy.from_config(rules, groups), stats)
