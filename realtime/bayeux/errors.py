"""The Bayeux error table and the package's exceptions.

Exception tree (one root)::

    RealtimeError
     +-- ConfigError          bad settings; raised at start-up
     +-- BadRequest           a request that is not Bayeux at all (HTTP 400 / ignored frame)
     |    +-- BatchTooLarge   valid, but more messages than allowed
     +-- BayeuxError          a message-level failure carried back as ``code:args:message``

Error strings follow Faye: ``<code>:<comma-joined args>:<message>``.
"""

from __future__ import annotations

from collections.abc import Iterable

VERSION_MISMATCH = 300
CONNECTION_TYPE_MISMATCH = 301
EXTENSION_MISMATCH = 302
BAD_REQUEST = 400
CLIENT_UNKNOWN = 401
PARAMETER_MISSING = 402
CHANNEL_FORBIDDEN = 403
CHANNEL_UNKNOWN = 404
CHANNEL_INVALID = 405
EXTENSION_UNKNOWN = 406
PUBLISH_FAILED = 407
SERVER_ERROR = 500
TOO_MANY = 429  # not in Faye's table: a limit was reached (Faye has none)

MESSAGES = {
    VERSION_MISMATCH: "Version mismatch",
    CONNECTION_TYPE_MISMATCH: "Connection types not supported",
    EXTENSION_MISMATCH: "Extension mismatch",
    BAD_REQUEST: "Bad request",
    CLIENT_UNKNOWN: "Unknown client",
    PARAMETER_MISSING: "Missing required parameter",
    CHANNEL_FORBIDDEN: "Forbidden channel",
    CHANNEL_UNKNOWN: "Unknown channel",
    CHANNEL_INVALID: "Invalid channel",
    EXTENSION_UNKNOWN: "Unknown extension",
    PUBLISH_FAILED: "Failed to publish",
    SERVER_ERROR: "Internal server error",
    TOO_MANY: "Limit exceeded",
}


def error_string(code: int, args: str | Iterable[str] = (), message: str | None = None) -> str:
    """``error_string(401, "abc")`` -> ``"401:abc:Unknown client"``."""
    joined = args if isinstance(args, str) else ",".join(args)
    return f"{code}:{joined}:{message if message is not None else MESSAGES[code]}"


class RealtimeError(Exception):
    """Root of every exception this package raises on purpose."""


class ConfigError(RealtimeError):
    """Settings that cannot work; raised before the server starts."""


class BadRequest(RealtimeError):
    """Input that is not a Bayeux batch at all; transports answer HTTP 400."""


class BatchTooLarge(BadRequest):
    """A well-formed batch over the size limit; carries it so each message can be refused."""

    def __init__(self, batch: list[dict[str, object]], limit: int) -> None:
        self.batch = batch
        self.error = error_string(BAD_REQUEST, str(len(batch)), f"Batch over the limit of {limit} messages")
        super().__init__(f"batch of {len(batch)} messages exceeds the limit of {limit}")


class BayeuxError(RealtimeError):
    """A message-level failure, rendered into a reply's ``error`` field."""

    def __init__(self, code: int, args: str | Iterable[str] = (), message: str | None = None) -> None:
        self.code = code
        self.error = error_string(code, args, message)
        super().__init__(self.error)
