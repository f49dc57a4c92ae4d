"""CORS: reflect an allowed Origin with credentials (never ``*``), answer preflights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Headers = list[tuple[bytes, bytes]]

ALLOW_HEADERS = b"Accept, Authorization, Content-Type, Pragma, X-Requested-With"


def allowed(origin: str, allow_list: Sequence[str]) -> bool:
    return "*" in allow_list or origin in allow_list


def cors_headers(headers: Mapping[str, str], allow_list: Sequence[str]) -> Headers:
    origin = headers.get("origin")
    if not origin or not allowed(origin, allow_list):
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
    ]


def preflight_headers(headers: Mapping[str, str], allow_list: Sequence[str]) -> Headers:
    origin = headers.get("origin") or headers.get("referer") or "*"
    if origin != "*" and not allowed(origin, allow_list):
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-headers", ALLOW_HEADERS),
        (b"access-control-allow-methods", b"POST, GET"),
        (b"access-control-max-age", b"86400"),
    ]
