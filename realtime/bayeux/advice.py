"""Connection-type negotiation and the advice attached to handshake/connect replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from realtime.bayeux.messages import Advice

RETRY = "retry"
HANDSHAKE = "handshake"
NONE = "none"
EVENTSOURCE = "eventsource"


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def retry_advice(timeout_s: float, interval_s: float) -> Advice:
    return {"reconnect": RETRY, "interval": ms(interval_s), "timeout": ms(timeout_s)}


def connect_advice(connection_type: str, timeout_s: float, interval_s: float) -> Advice:
    # An EventSource client receives messages on its stream: its connects return at
    # once, and it should come back after a whole timeout (Faye does the same).
    if connection_type == EVENTSOURCE:
        return {"reconnect": RETRY, "interval": ms(timeout_s), "timeout": 0}
    return retry_advice(timeout_s, interval_s)


def handshake_advice() -> Advice:
    return {"reconnect": HANDSHAKE}


def common_types(client_types: Sequence[Any], server_types: Sequence[str]) -> list[str]:
    return [t for t in client_types if isinstance(t, str) and t in server_types]


def hold_seconds(request_advice: Any, server_timeout_s: float) -> float:
    """How long to hold a connect: the client's ``advice.timeout`` (ms), clamped.

    Faye honours the client's value unclamped, so a large one outlives the session;
    clamping to the server timeout keeps every hold shorter than session expiry.
    """
    if isinstance(request_advice, dict):
        raw = request_advice.get("timeout")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return min(max(raw / 1000.0, 0.0), server_timeout_s)
    return server_timeout_s
