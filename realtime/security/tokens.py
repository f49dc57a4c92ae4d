"""HS256 JWTs signed by an app's secret, turned into an ``Identity``.

Which app signed a token: ``ext.api_key`` when the client sends one (Stream's
clients do), else the token's own ``api_key`` or ``app_id`` claim, else the only app
there is. Claims understood (all optional; ``exp`` is enforced when present):

* ``resource: "*"`` with ``action: "*"`` — a server token (Stream's server token);
* ``user_id`` — the authenticated user;
* ``feed_id`` with ``resource`` ``feed``/``*`` and ``action`` ``read``/``*`` — may read
  that feed's channel (Stream's read-only feed token); ``channel`` (a channel or
  pattern) — may use that channel outright.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jwt

from feeds.apps import App
from realtime.security.policy import Identity


class TokenError(Exception):
    """A token that does not prove anything: forged, expired, unknown app, malformed."""


class AppRegistry:
    def __init__(self, apps: Iterable[App]) -> None:
        self.apps = list(apps)
        self._by_key = {a.api_key: a for a in self.apps}
        self._by_id = {a.app_id: a for a in self.apps}

    def _app_for(self, token: str, api_key: object) -> App:
        if isinstance(api_key, str) and api_key:
            app = self._by_key.get(api_key)
            if app is None:
                raise TokenError("unknown api_key")
            return app
        try:
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        named = unverified.get("api_key") or unverified.get("app_id")
        app = self._by_key.get(str(named)) or self._by_id.get(str(named)) if named else None
        if app is None and len(self.apps) == 1:
            app = self.apps[0]
        if app is None:
            raise TokenError("token names no known app")
        return app

    def verify(self, token: object, api_key: object = None) -> Identity:
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise TokenError("no token")
        if not self.apps:
            raise TokenError("no apps are configured")
        app = self._app_for(token, api_key)
        try:
            claims: dict[str, Any] = jwt.decode(token, app.api_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("invalid token") from exc
        return identity_of(claims, app.app_id)


def identity_of(claims: dict[str, Any], app_id: str) -> Identity:
    resource, action = claims.get("resource"), claims.get("action")
    server = resource == "*" and action == "*" and claims.get("feed_id", "*") == "*"
    user = claims.get("user_id")
    feeds: frozenset[str] = frozenset()
    feed_id = claims.get("feed_id")
    if isinstance(feed_id, str) and feed_id != "*" and resource in ("feed", "*") and action in ("read", "*"):
        feeds = frozenset({feed_id})
    channel = claims.get("channel")
    return Identity(
        user_id=str(user) if isinstance(user, str | int) and not isinstance(user, bool) else None,
        server=server,
        app_id=app_id,
        feeds=feeds,
        channels=frozenset({channel}) if isinstance(channel, str) else frozenset(),
    )
