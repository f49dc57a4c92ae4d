"""Feed types: how a page of timeline entries becomes Stream's ``results``.

* flat: activities newest first, each with the ``origin`` feed it arrived from.
* aggregated: entries carry the group key computed at write time from the feed group's
  ``aggregation_format``; groups come newest first (by their newest activity), each with ``id``,
  ``group`` (the key), ``verb``, ``activities`` (newest first, at most ``MAX_GROUP_ACTIVITIES``),
  ``activity_count``, ``actor_count``, ``created_at`` (oldest) and ``updated_at`` (newest).
* notification: aggregated plus ``is_seen`` / ``is_read`` per group (a group is seen when all of its
  entries are) and the feed-level ``unseen`` / ``unread`` group counts over the newest window.

Groups.  Walking the merged timeline newest first, an entry joins the group of the nearest newer
entry with the same key if that entry is fewer than ``horizon`` positions above it (the horizon is
the scan window, ``AGGREGATION_WINDOW`` capped by the feed's ``max_length``); otherwise it starts a
new group.  So within one window every key forms one group (as before), and a key whose entries lie
further apart forms several groups, as Stream only merges into recent groups.  Membership depends
only on entries within ``horizon`` positions, which is what keeps cursor reads bounded.

Ids and cursors.  A group's ``id`` is the id of its newest activity (Stream's shape: aggregated
``"<id>"``, notification ``"<id>.<group>"``).  ``id_lt=<group id>`` returns the groups whose newest
activity is older than that id: the read takes the ``horizon`` entries just above the cursor (to
tell which groups began above it, i.e. were on earlier pages) and the window below it; groups whose
newest entry is above the cursor are skipped.  Paging with ``id_lt`` of the last group (``next``
does this) therefore walks every group exactly once, newest first, however long the feed.  When a
window holds fewer than ``limit`` new groups (one huge group filling it), the page is short and
``next`` continues below the window.  ``id_lte``/``id_gt``/``id_gte`` bound the entries read, so a
group at a lower bound shows only its members inside the bounds.
With ``tag``, positions are those of the tagged entries and the look above the cursor reads at most
four windows of the unfiltered timeline, so with a very sparse tag a group could show on two pages.
The look above a cursor covers the retained timeline and pulled feeds, not the past-the-cap
fallback of :meth:`feeds.fanout.Fanout.read`.

Counts.  A group's ``activities``, ``activity_count`` and ``actor_count`` cover its members inside
the scanned window (the window below the cursor), not members further down.

Changes while paging.  A new activity joining a group moves that group to the top with a new id
(its newest activity); a client paging down from an older cursor does not see it again, a client
re-reading the first page does.  Marking a group by an older id marks the members it had then (the
new activity stays unseen), like Stream.  Removals shift positions, so a removal between two page
reads can split or join groups near the cursor.
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


def flat_results(entries: Sequence[Entry], bodies: dict[int, bytes], *, encoded: bool = False) -> list[Any]:
    """Stored bodies are already in Stream's shape, less the per-feed ``origin``.  ``encoded``
    (the HTTP path) splices ``origin`` into the stored bytes and hands them to the response encoder
    as they are, instead of decoding and encoding every activity again."""
    if encoded:
        # A stored body is an object with at least id/actor/verb/object and never an "origin" key,
        # so ``origin`` goes in before its closing brace (inline: a call per activity cost more).
        dumps, fragment = orjson.dumps, orjson.Fragment
        return [
            fragment(b'%s,"origin":%s}' % (body[:-1], b"null" if e.origin is None else dumps(e.origin)))
            for e in entries
            if (body := bodies.get(e.id)) is not None
        ]
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
    above: bool = False  # the newest entry is above the read's cursor: shown on an earlier page

    def group_id(self, *, notification: bool) -> str:
        head = str(self.entries[0].id)
        return f"{head}.{self.key}" if notification else head

    @property
    def is_seen(self) -> bool:
        return all(e.seen for e in self.entries)

    @property
    def is_read(self) -> bool:
        return all(e.read for e in self.entries)


def group_entries(
    feed_group: FeedGroup,
    entries: Sequence[Entry],
    bodies: dict[int, Activity],
    *,
    horizon: int,
    above: Sequence[Entry] = (),
) -> list[Group]:
    """Groups whose newest entry is in ``entries`` (newest first, below the cursor), in order of that
    entry; ``above`` are the entries just above the cursor, newest first.  Entries pulled at read time
    have no stored key and get it from their body now (they are skipped without one)."""
    last: dict[str, tuple[int, Group]] = {}
    groups: list[Group] = []
    n_above = len(above)
    for pos, e in enumerate([*above, *entries]):
        key = e.group_key
        if not key:
            body = bodies.get(e.id)
            if body is None:
                continue
            key = feed_group.group_key(body)
        prev = last.get(key)
        if prev is not None and pos - prev[0] < horizon:
            group = prev[1]
        else:
            group = Group(key, above=pos < n_above)
            groups.append(group)
        group.entries.append(e)
        last[key] = (pos, group)
    return [g for g in groups if not g.above]


def group_json(group: Group, bodies: dict[int, Activity], *, notification: bool) -> dict[str, Any]:
    entries = group.entries
    acts = [bodies[e.id] for e in entries]
    out: dict[str, Any] = {
        "id": group.group_id(notification=notification),
        "group": group.key,
        "verb": acts[0].verb,
        "activities": [a.to_json(origin=e.origin) for a, e in zip(acts, entries, strict=True)][
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
