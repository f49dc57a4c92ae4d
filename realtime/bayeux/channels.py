"""Channel grammar, classification and wildcard expansion.

Grammar (Bayeux 1.0, as Faye's ``grammar.js``): a segment is one or more of
``[A-Za-z0-9-_!~()$@]``; a *name* is ``/seg(/seg)*``; a *pattern* is a name prefix
followed by a final ``/*`` (exactly one more segment) or ``/**`` (one or more).

``expand("/a/b/c")`` lists every subscription key that matches a publish to that
name: the name itself, ``/a/b/*``, and ``/**``, ``/a/**``, ``/a/b/**``. The engine
looks each one up in its exact index, and the cluster router tests each one against
the remote nodes' filters, so wildcard routing costs O(depth) lookups, not a scan.
"""

from __future__ import annotations

import re

_SEGMENT = r"[A-Za-z0-9\-_!~()$@]+"
_NAME_RE = re.compile(rf"(?:/{_SEGMENT})+")
_PATTERN_RE = re.compile(rf"(?:/{_SEGMENT})*/\*\*?")

META_CHANNELS = frozenset(
    {"/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"}
)
MAX_CHANNEL_LENGTH = 1024
# Prefix of index keys that only sessions allowed to read protected channels hold
# (see realtime.security.policy); "!" cannot start a channel, so keys never clash.
PRIVILEGED = "!"


def is_valid_name(channel: object) -> bool:
    return (
        isinstance(channel, str) and len(channel) <= MAX_CHANNEL_LENGTH and bool(_NAME_RE.fullmatch(channel))
    )


def is_valid_pattern(channel: object) -> bool:
    return (
        isinstance(channel, str)
        and len(channel) <= MAX_CHANNEL_LENGTH
        and bool(_PATTERN_RE.fullmatch(channel))
    )


def is_valid(channel: object) -> bool:
    return is_valid_name(channel) or is_valid_pattern(channel)


def is_meta(channel: str) -> bool:
    return channel == "/meta" or channel.startswith("/meta/")


def is_service(channel: str) -> bool:
    return channel == "/service" or channel.startswith("/service/")


def is_subscribable(channel: str) -> bool:
    """Remote clients may not subscribe under ``/meta`` or ``/service``."""
    return not (is_meta(channel) or is_service(channel))


def expand(name: str) -> list[str]:
    """Every subscription key that a publish to ``name`` must reach (``name`` is valid)."""
    segments = name.split("/")[1:]
    keys = ["/**", name]
    prefix = ""
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if i == last:
            keys.append(prefix + "/*")
        prefix += "/" + seg
        if i < last:
            keys.append(prefix + "/**")
    return keys


def matches(pattern: str, name: str) -> bool:
    """Whether a subscription key ``pattern`` (name or wildcard) matches ``name``."""
    if pattern.endswith("/**"):
        base = pattern[:-2]
        return name.startswith(base) and len(name) > len(base)
    if pattern.endswith("/*"):
        base = pattern[:-1]
        return name.startswith(base) and "/" not in name[len(base) :] and len(name) > len(base)
    return pattern == name
