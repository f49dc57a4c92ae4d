"""Server-side authentication the way Stream's clients do it.

A request carries ``api_key`` as a query parameter, ``stream-auth-type: jwt`` and an ``Authorization``
header holding an HS256 JWT signed with the app's secret (no ``Bearer`` prefix, though one is
tolerated).  The token's claims scope it: ``resource`` (feed, follower, activities, feed_targets or
``*``), ``action`` (read, write, delete or ``*``) and ``feed_id`` (the feed's group and id run
together, ``user42``, or ``*``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt

from feeds.apps import App
from feeds.errors import ApiKeyError, NotAllowedError, SignatureError

CACHE_TOKENS = 10_000


class Authenticator:
    """Verifies requests; a verified token is remembered (by app and exact token string) so the
    server-side clients that send one token for every call pay the HMAC and JSON decode once.
    Tokens with an ``exp`` claim are re-checked against the clock on every use."""

    def __init__(self, apps: Iterable[App], *, clock: Callable[[], float] = time.time) -> None:
        self._by_key = {app.api_key: app for app in apps}
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}
        self._clock = clock

    def app_for(self, api_key: str | None) -> App:
        if not api_key:
            raise ApiKeyError("api_key is missing from the query string")
        app = self._by_key.get(api_key)
        if app is None:
            raise ApiKeyError(f"api_key {api_key!r} not found")
        return app

    def authenticate(
        self,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        *,
        resource: str,
        action: str,
        feed_id: str | None = None,
    ) -> App:
        """The app a request acts for, or a Stream-shaped error (401 for identity, 403 for scope)."""
        app = self.app_for(query.get("api_key"))
        if headers.get("stream-auth-type", "").lower() != "jwt":
            raise NotAllowedError("only stream-auth-type: jwt is supported")
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token:
            raise SignatureError("Authorization header with a JWT is required")
        claims = self._claims(app, token)
        if claims.get("resource") not in (resource, "*"):
            raise NotAllowedError(f"token does not grant resource {resource!r}")
        if claims.get("action") not in (action, "*"):
            raise NotAllowedError(f"token does not grant action {action!r}")
        if feed_id is not None and claims.get("feed_id") not in (feed_id, "*"):
            raise NotAllowedError(f"token is not valid for feed {feed_id!r}")
        return app

    def _claims(self, app: App, token: str) -> dict[str, Any]:
        cached = self._verified.get((app.api_key, token))
        if cached is not None:
            exp = cached.get("exp")
            if isinstance(exp, int | float) and exp <= self._clock():
                raise SignatureError("invalid JWT: Signature has expired")
            return cached
        try:
            claims: dict[str, Any] = jwt.decode(token, app.api_secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise SignatureError(f"invalid JWT: {exc}") from None
        if len(self._verified) >= CACHE_TOKENS:
            self._verified.clear()
        self._verified[(app.api_key, token)] = claims
        return claims
