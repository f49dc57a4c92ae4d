"""Server-side authentication the way Stream's clients do it.

A request carries ``api_key`` as a query parameter, ``stream-auth-type: jwt`` and an ``Authorization``
header holding an HS256 JWT signed with the app's secret (no ``Bearer`` prefix, though one is
tolerated).  The token's claims scope it: ``resource`` (feed, follower, activities, feed_targets or
``*``), ``action`` (read, write, delete or ``*``) and ``feed_id`` (the feed's group and id run
together, ``user42``, or ``*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from feeds.apps import App
from feeds.errors import ApiKeyError, NotAllowedError, SignatureError


class Authenticator:
    def __init__(self, apps: Iterable[App]) -> None:
        self._by_key = {app.api_key: app for app in apps}

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
        try:
            claims: dict[str, Any] = jwt.decode(token, app.api_secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise SignatureError(f"invalid JWT: {exc}") from None
        if claims.get("resource") not in (resource, "*"):
            raise NotAllowedError(f"token does not grant resource {resource!r}")
        if claims.get("action") not in (action, "*"):
            raise NotAllowedError(f"token does not grant action {action!r}")
        if feed_id is not None and claims.get("feed_id") not in (feed_id, "*"):
            raise NotAllowedError(f"token is not valid for feed {feed_id!r}")
        return app
