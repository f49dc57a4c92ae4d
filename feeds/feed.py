"""Feed types: how a page of timeline entries becomes Stream's ``results``.

* flat: activities newest first, each with the ``origin`` feed it arrived from.
* aggregated: entries carry the group key computed at write time from the feed group's
  ``aggregation_format``; a read scans a window of the newest entries and returns groups in order of
  their newest activity, each with ``activities`` (newest first, at most ``MAX_GROUP_ACTIVITIES``),
  ``activity_count``, ``actor_count``, ``created_at`` (oldest) and ``updated_at`` (newest).
* notification: aggregated plus ``is_seen`` / ``is_read`` per group (a group is seen when all of its
  entries are) and the feed-level ``unseen`` / ``unread`` group counts over the scanned window.

The scan window is ``AGGREGATION_WINDOW`` entries (capped by the feed's ``max_length``): groups older
than that are not shown, a documented bound that keeps aggregated reads O(window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from feeds.activity import Activity, format_time
from feeds.config import FeedGroup
from feeds.store.base import Entry

MAX_GROUP_ACTIVITIES = 15
AGGREGATION_WINDOW = 1000


def flat_results(entries: Sequence[Entry], bodies: dict[int, bytes]) -> list[dict[str, Any]]:
    """Stored bodies are already in Stream's shape: decode and add the per-feed ``origin``."""
    out = []
    for e in entries:
        body = bodies.get(e.id)
        if body is not None:
            activity = orjson.loads(body)
            activity["origin"] = e.origin
            out.append(activity)
    return out


@dataclass(slots=True)
class Group:
    key: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def is_seen(self) -> bool:
        return all(e.seen for e in self.entries)

    @property
    def is_read(self) -> bool:
        return all(e.read for e in self.entries)


def group_entries(
    feed_group: FeedGroup, entries: Sequence[Entry], bodies: dict[int, Activity]
) -> list[Group]:
    """Groups in order of their newest entry; entries pulled at read time get their key computed now."""
    groups: dict[str, Group] = {}
    for e in entries:
        key = e.group_key
        if not key:
            body = bodies.get(e.id)
            if body is None:
                continue
            key = feed_group.group_key(body)
        groups.setdefault(key, Group(key)).entries.append(e)
    return list(groups.values())


def group_json(group: Group, bodies: dict[int, Activity], *, notification: bool) -> dict[str, Any]:
    acts = [bodies[e.id] for e in group.entries]
    out: dict[str, Any] = {
        "id": group.key,
        "group": group.key,
        "verb": acts[0].verb,
        "activities": [a.to_json(origin=e.origin) for a, e in zip(acts, group.entries, strict=True)][
            :MAX_GROUP_ACTIVITIES
        ],
        "activity_count": len(acts),
        "actor_count": len({a.actor for a in acts}),
        "created_at": format_time(min(a.time_us for a in acts)),
        "updated_at": format_time(max(a.time_us for a in acts)),
    }
    if notification:
        out["is_seen"] = group.is_seen
        out["is_read"] = group.is_read
    return out
