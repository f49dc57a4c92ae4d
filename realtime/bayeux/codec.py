"""Bytes <-> message batches, and the HTTP body shapes Faye clients send.

A request body or WebSocket frame holds a JSON array of message objects or a single
object (a one-message batch). Messages go out pre-encoded: a reply or a delivery is
encoded once into ``bytes`` and batches are joined without re-encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import orjson

from realtime.bayeux.errors import BadRequest, BatchTooLarge

_CALLBACK_RE = re.compile(r"[a-z_$][a-z0-9_$]*(?:\.[a-z_$][a-z0-9_$]*)*", re.IGNORECASE)
MAX_CALLBACK_LENGTH = 128
_LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))

encode = orjson.dumps


def decode_batch(data: bytes | str, max_messages: int) -> list[dict[str, Any]]:
    """Parse one request's JSON into a list of message dicts, or raise BadRequest."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("malformed JSON") from exc
    if doc is None:
        return []
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise BadRequest("a batch must be a JSON array or object")
    for item in doc:
        if not isinstance(item, dict):
            raise BadRequest("every message must be a JSON object")
    if len(doc) > max_messages:
        raise BatchTooLarge(doc, max_messages)
    return doc


def join(parts: Iterable[bytes]) -> bytes:
    """Encoded messages -> one encoded JSON array."""
    return b"[" + b",".join(parts) + b"]"


def form_message(body: bytes) -> str:
    """The ``message`` field of an urlencoded body (Faye's CORS transport sends one)."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("malformed form body") from exc
    values = fields.get("message")
    if not values:
        raise BadRequest("missing 'message' parameter")
    return values[0]


def is_valid_callback(name: str) -> bool:
    return len(name) <= MAX_CALLBACK_LENGTH and _CALLBACK_RE.fullmatch(name) is not None


def jsonp_body(callback: str, payload: bytes) -> bytes:
    """``/**/cb(<json>);`` with U+2028/U+2029 escaped, since they end a JS line."""
    for raw, escaped in _LINE_SEPARATORS:
        payload = payload.replace(raw, escaped)
    return b"/**/" + callback.encode("ascii") + b"(" + payload + b");"
