"""Channel policy: who may subscribe to and publish on which channels. Pure.

A rule names a channel *template* and, for each of subscribe and publish, who may:

* ``anyone``  — no credentials needed (Faye's behaviour; the default for channels no
  rule names);
* ``user``    — any session with an authenticated user;
* ``owner``   — the user named in the channel: the template has a ``{user}``
  placeholder, e.g. ``/users/{user}/**`` lets user 42 use ``/users/42/...`` only;
* ``feed``    — a token scoped to the feed the channel carries (``{feed}``, e.g.
  ``/site-{app}-feed-{feed}``), as Stream's clients send on subscribe;
* ``server``  — only the server's own code or a server-scoped token.

Templates are Bayeux channels whose segments may hold placeholders and whose last
segment may be ``*`` or ``**``. The first rule that matches a channel decides.

Wildcards and protected channels. A channel is *protected* when its rule's subscribe
access is not ``anyone``. A publish to a protected channel reaches wildcard
subscribers only through *privileged* keys (``!`` + pattern, never a valid channel);
a wildcard subscription is indexed under its privileged key only when its session
may read every protected channel the pattern can match. So ``/**`` keeps working for
public channels, never leaks a protected one, and delivery does no per-recipient check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from realtime.bayeux.channels import PRIVILEGED, expand


class Access(StrEnum):
    ANYONE = "anyone"
    USER = "user"
    OWNER = "owner"
    FEED = "feed"
    SERVER = "server"


@dataclass(frozen=True)
class Identity:
    """What a session (or one request's token) has proven."""

    user_id: str | None = None
    server: bool = False
    app_id: str | None = None
    feeds: frozenset[str] = frozenset()  # feed ids (``user42``) a token grants reading
    channels: frozenset[str] = frozenset()  # channels/patterns a token grants outright

    def merged(self, other: Identity | None) -> Identity:
        if other is None:
            return self
        return Identity(
            user_id=self.user_id or other.user_id,
            server=self.server or other.server,
            app_id=self.app_id or other.app_id,
            feeds=self.feeds | other.feeds,
            channels=self.channels | other.channels,
        )


ANONYMOUS = Identity()
_PLACEHOLDER = re.compile(r"\{(user|feed|app)\}")
_SEG_CHARS = r"[A-Za-z0-9\-_!~()$@]+"


@dataclass
class Rule:
    template: str
    subscribe: Access = Access.ANYONE
    publish: Access = Access.ANYONE
    segments: list[str] = field(init=False)
    tail: str = field(init=False)  # "", "*" or "**"
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        segs = self.template.split("/")[1:]
        self.tail = segs[-1] if segs and segs[-1] in ("*", "**") else ""
        self.segments = segs[:-1] if self.tail else segs
        body = "".join("/" + _segment_regex(s) for s in self.segments)
        tail = {"": "", "*": "/" + _SEG_CHARS, "**": "(?:/" + _SEG_CHARS + ")+"}[self.tail]
        self.regex = re.compile(body + tail)

    def match(self, channel: str) -> re.Match[str] | None:
        return self.regex.fullmatch(channel)


def _segment_regex(segment: str) -> str:
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(segment):
        out.append(re.escape(segment[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{_SEG_CHARS})")
        pos = m.end()
    out.append(re.escape(segment[pos:]))
    return "".join(out)


class ChannelPolicy:
    """``feed_groups``: with a user token, user 42 may read ``<group>42`` for these groups
    (Stream's JS client subscribes to a user's own feeds with the user token)."""

    def __init__(self, rules: Iterable[Rule], feed_groups: Iterable[str] = ()) -> None:
        self.rules = list(rules)
        self.feed_groups = frozenset(feed_groups)
        self._protected: dict[str, bool] = {}

    @classmethod
    def from_config(
        cls, tables: Iterable[Mapping[str, Any]], feed_groups: Iterable[str] = ()
    ) -> ChannelPolicy:
        return cls(
            (
                Rule(
                    str(t["pattern"]),
                    Access(t.get("subscribe", "anyone")),
                    Access(t.get("publish", "anyone")),
                )
                for t in tables
            ),
            feed_groups,
        )

    def _rule(self, channel: str) -> tuple[Rule, re.Match[str]] | None:
        for rule in self.rules:
            m = rule.match(channel)
            if m is not None:
                return rule, m
        return None

    def is_protected(self, channel: str) -> bool:
        hit = self._protected.get(channel)
        if hit is None:
            found = self._rule(channel)
            hit = found is not None and found[0].subscribe is not Access.ANYONE
            if len(self._protected) > 100_000:
                self._protected.clear()  # a bounded memo, not a leak
            self._protected[channel] = hit
        return hit

    def may_subscribe(self, who: Identity, channel: str) -> bool:
        if who.server or channel in who.channels:
            return True
        found = self._rule(channel)
        return found is None or _allowed(found[0].subscribe, who, found[1], self.feed_groups)

    def may_publish(self, who: Identity, channel: str) -> bool:
        if who.server:
            return True
        found = self._rule(channel)
        return found is None or _allowed(found[0].publish, who, found[1], self.feed_groups)

    def routing_keys(self, channel: str) -> list[str]:
        """What a publish to ``channel`` must reach (see the module docstring)."""
        keys = expand(channel)
        if not self.is_protected(channel):
            return keys
        return [k if k == channel else PRIVILEGED + k for k in keys]

    def wildcard_privileged(self, who: Identity, pattern: str) -> bool:
        """May ``who`` read every protected channel that ``pattern`` can match?"""
        if who.server or pattern in who.channels:
            return True
        literal = pattern.split("/")[1:-1]
        for rule in self.rules:
            if rule.subscribe is Access.ANYONE or not _may_overlap(literal, rule):
                continue
            if not _covers(rule, who, literal):
                return False
        return True


def _allowed(
    access: Access, who: Identity, m: re.Match[str], feed_groups: frozenset[str] = frozenset()
) -> bool:
    groups = m.groupdict()
    if access is Access.ANYONE:
        return True
    if access is Access.USER:
        return who.user_id is not None
    if access is Access.OWNER:
        return who.user_id is not None and groups.get("user") == who.user_id
    if access is Access.FEED:
        feed = groups.get("feed")
        if feed is None:
            return False
        if feed in who.feeds:
            return True
        owner = who.user_id
        return owner is not None and feed.endswith(owner) and feed[: -len(owner)] in feed_groups
    return False  # SERVER: who.server was checked by the caller


def _may_overlap(literal: list[str], rule: Rule) -> bool:
    """Could a wildcard with these literal leading segments match a channel of ``rule``?

    Conservative: it answers True unless a literal segment rules the overlap out.
    """
    for i, seg in enumerate(literal):
        if i >= len(rule.segments):
            return rule.tail != ""
        if re.fullmatch(_segment_regex(rule.segments[i]), seg) is None:
            return False
    return True


def _covers(rule: Rule, who: Identity, literal: list[str]) -> bool:
    """Whether every channel of ``rule`` under the wildcard's literal prefix is readable."""
    if rule.subscribe is Access.USER:
        return who.user_id is not None
    if rule.subscribe is Access.OWNER and who.user_id is not None:
        for i, seg in enumerate(rule.segments):
            if "{user}" in seg:
                if i >= len(literal):
                    return False
                m = re.fullmatch(_segment_regex(seg), literal[i])
                return m is not None and m.group("user") == who.user_id
    return False
