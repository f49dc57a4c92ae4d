"""Request validation for each meta channel and for publishes, as Faye orders it.

Each function returns the error string for the reply, or None. Where Faye checks
several conditions, *the last failing check wins*; the order of the ``if``s below is
that order and is part of the wire contract (clients and tests compare strings).
``exists`` is the engine's answer to "is this clientId a live session?".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from realtime.bayeux import channels
from realtime.bayeux.advice import common_types
from realtime.bayeux.errors import (
    CHANNEL_FORBIDDEN,
    CHANNEL_INVALID,
    CLIENT_UNKNOWN,
    CONNECTION_TYPE_MISMATCH,
    PARAMETER_MISSING,
    error_string,
)
from realtime.bayeux.messages import Message


def _client_id(message: Message) -> str | None:
    cid = message.get("clientId")
    return cid if isinstance(cid, str) and cid else None


def check_channel_field(message: Message) -> str | None:
    """Before dispatch: the channel must be a string; meta channels match exactly."""
    channel = message.get("channel")
    if not isinstance(channel, str) or not channel:
        return error_string(CHANNEL_INVALID, "" if channel is None else str(channel)[:64])
    if channels.is_meta(channel) and channel not in channels.META_CHANNELS:
        return error_string(CHANNEL_FORBIDDEN, channel)
    return None


def check_handshake(message: Message, server_types: Sequence[str]) -> str | None:
    error = None
    if not message.get("version"):
        error = error_string(PARAMETER_MISSING, "version")
    client_types = message.get("supportedConnectionTypes")
    if isinstance(client_types, list) and client_types:
        if not common_types(client_types, server_types):
            shown = [t for t in client_types if isinstance(t, str)]
            error = error_string(CONNECTION_TYPE_MISMATCH, shown)
    else:
        error = error_string(PARAMETER_MISSING, "supportedConnectionTypes")
    return error


def check_connect(message: Message, exists: bool, server_types: Sequence[str]) -> str | None:
    error = check_client(message, exists)
    ctype = message.get("connectionType")
    if ctype and (not isinstance(ctype, str) or ctype not in server_types):
        error = error_string(CONNECTION_TYPE_MISMATCH, str(ctype)[:64])
    if not ctype:
        error = error_string(PARAMETER_MISSING, "connectionType")
    return error


def check_client(message: Message, exists: bool) -> str | None:
    """For unsubscribe/disconnect and the first half of subscribe."""
    error = None
    cid = _client_id(message)
    if not exists:
        error = error_string(CLIENT_UNKNOWN, cid or "")
    if cid is None:
        error = error_string(PARAMETER_MISSING, "clientId")
    return error


def subscriptions(message: Message) -> list[Any] | None:
    """``subscription`` as a list, or None when it is missing."""
    raw = message.get("subscription")
    if raw is None or raw == [] or raw == "":
        return None
    return raw if isinstance(raw, list) else [raw]


def check_subscription_channels(requested: list[Any], allow_service: bool) -> str | None:
    """Every channel must be a valid name or pattern and (for remote clients) not reserved.

    Faye subscribes channels one by one and leaves earlier ones subscribed when a later
    one fails; validating the whole list first makes a failed subscribe change nothing.
    """
    for channel in requested:
        if not channels.is_valid(channel):
            return error_string(CHANNEL_INVALID, str(channel)[:256])
        if channels.is_meta(channel) or (not allow_service and channels.is_service(channel)):
            return error_string(CHANNEL_FORBIDDEN, channel)
    return None


def check_publish(message: Message) -> str | None:
    channel = message["channel"]
    error = None
    if not channels.is_valid_name(channel):
        error = error_string(CHANNEL_INVALID, channel[:256])
    if "data" not in message:
        error = error_string(PARAMETER_MISSING, "data")
    return error
