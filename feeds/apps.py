"""Apps: an id, a public api key and the secret that signs its tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class App:
    app_id: str
    api_key: str
    api_secret: str


def parse_app(spec: str) -> App:
    """``APP_ID:API_KEY:API_SECRET`` (the secret may itself contain colons)."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"app must be APP_ID:API_KEY:API_SECRET, got {spec!r}")
    return App(*parts)


def development_app() -> App:
    """A throwaway app for a server started without any declared apps."""
    return App(str(secrets.randbelow(900_000) + 100_000), secrets.token_hex(8), secrets.token_urlsafe(32))
