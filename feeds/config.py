"""Feed groups and engine options, parsed once into frozen values.

A feed group is declared with a ``type`` (flat, aggregated or notification) and optional
``aggregation_format`` (aggregated/notification), ``max_length`` (timeline cap) and ``ranking``
(name -> expression, see :mod:`feeds.ranking`).  ``parse_groups`` takes the TOML-shaped mapping
``{"user": {"type": "flat"}, ...}`` that a config file holds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from feeds.activity import Activity
from feeds.errors import FeedConfigError
from feeds.ids import us_to_time

FeedType = Literal["flat", "aggregated", "notification"]
DEFAULT_AGGREGATION = "{{ verb.id }}_{{ time.strftime('%Y-%m-%d') }}"
_FIELD = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_STRFTIME = re.compile(r"""time\.strftime\(\s*(['"])(.*?)\1\s*\)""")


@dataclass(frozen=True, slots=True)
class FeedGroup:
    name: str
    type: FeedType = "flat"
    aggregation_format: str = DEFAULT_AGGREGATION
    max_length: int = 3600
    ranking: Mapping[str, str] = field(default_factory=dict)

    def group_key(self, activity: Activity) -> str:
        """The aggregation group of an activity in this feed group (empty for flat feeds)."""
        if self.type == "flat":
            return ""
        return render_aggregation(self.aggregation_format, activity)


def render_aggregation(template: str, activity: Activity) -> str:
    """Stream's aggregation formats are Jinja-like; this renders the subset they use in practice:
    ``{{ field }}``, ``{{ field.id }}`` (same as the field) and ``{{ time.strftime('...') }}``.
    Every post renders one per aggregated or notification group, so a template is parsed once."""
    out: list[str] = []
    for literal, strftime, name in _parsed(template):
        out.append(literal)
        if strftime:
            out.append(us_to_time(activity.time_us).strftime(strftime))
        elif name:
            value = _field(activity, name)
            out.append("" if value is None else str(value))
    return "".join(out)


_FIXED_FIELDS = frozenset({"actor", "verb", "object", "target", "foreign_id"})


def _field(activity: Activity, name: str) -> Any:
    if name == "time":
        return us_to_time(activity.time_us).isoformat()
    return getattr(activity, name) if name in _FIXED_FIELDS else activity.extra.get(name)


@functools.lru_cache(maxsize=64)
def _parsed(template: str) -> tuple[tuple[str, str, str], ...]:
    """(literal text before, strftime format or "", field name or "") per ``{{ }}``, then the tail."""
    parts: list[tuple[str, str, str]] = []
    at = 0
    for match in _FIELD.finditer(template):
        expr = match.group(1)
        strftime = _STRFTIME.fullmatch(expr)
        name = "" if strftime else expr.removesuffix(".id")
        parts.append((template[at : match.start()], strftime.group(2) if strftime else "", name))
        at = match.end()
    parts.append((template[at:], "", ""))
    return tuple(parts)


DEFAULT_GROUPS: tuple[FeedGroup, ...] = (
    FeedGroup("user", "flat"),
    FeedGroup("timeline", "flat"),
    FeedGroup("aggregated", "aggregated"),
    FeedGroup("notification", "notification"),
)


def parse_groups(table: Mapping[str, Mapping[str, Any]]) -> tuple[FeedGroup, ...]:
    groups = []
    for name, spec in table.items():
        kind = spec.get("type", "flat")
        if kind not in ("flat", "aggregated", "notification"):
            raise FeedConfigError(f"feed group {name!r}: unknown type {kind!r}")
        groups.append(
            FeedGroup(
                name=name,
                type=kind,
                aggregation_format=str(spec.get("aggregation_format", DEFAULT_AGGREGATION)),
                max_length=int(spec.get("max_length", 3600)),
                ranking=dict(spec.get("ranking", {})),
            )
        )
    return tuple(groups)


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """Hybrid fan-out knobs.

    ``pull_threshold``: authors with more followers than this are not pushed; their followers pull
    them at read time.  ``inactive_after_s``: followers not read for this long are not pushed either;
    their next read backfills them.  ``inline_fanout``: pushes to more followers than this (of one
    feed) finish after the write is acknowledged, in a background task, from a journal in the store.
    ``max_pending_push_jobs``: journalled chunks one process may have in flight; beyond it, large
    pushes are written before the acknowledgement (back-pressure instead of a growing journal).
    ``push_lease_s``: how long a journalled chunk belongs to the process that wrote or claimed it;
    after that any process's sweep (every half lease) may run it again.  ``push_delay_s``: a pause
    before each background push starts, 0 except in tests that kill a process mid-push.
    ``default_copy_limit`` / ``max_copy_limit``: activities copied on follow.
    ``follower_count_ttl_s``: no longer used (follower counts are read live); kept so existing
    configuration files still load.
    """

    pull_threshold: int = 10_000
    inline_fanout: int = 500
    inactive_after_s: float = 14 * 86_400.0
    default_copy_limit: int = 300
    max_copy_limit: int = 1000
    follower_count_ttl_s: float = 30.0
    max_pending_push_jobs: int = 1000
    push_lease_s: float = 60.0
    push_delay_s: float = 0.0
