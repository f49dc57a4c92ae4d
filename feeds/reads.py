"""Reading a feed: query parameters, the merged timeline, hydration and the per-type result shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from feeds.activity import Activity
from feeds.apps import App
from feeds.config import FeedGroup
from feeds.errors import InputError, RankingError
from feeds.feed import AGGREGATION_WINDOW, Group, flat_results, group_entries, group_json
from feeds.ids import parse_id
from feeds.keys import FeedRef
from feeds.ranking import Ranking
from feeds.store.base import Bounds, Entry

if TYPE_CHECKING:
    from feeds.service import FeedService

MAX_LIMIT = 100
MAX_OFFSET = 1000
RANKING_WINDOW = 1000
Marks = Literal[True] | list[str] | None


@dataclass(frozen=True, slots=True)
class ReadParams:
    limit: int = 25
    offset: int = 0
    bounds: Bounds = field(default_factory=Bounds)
    ranking: str | None = None
    tag: str | None = None
    mark_seen: Marks = None
    mark_read: Marks = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ReadParams:
        def opt_id(name: str) -> int | None:
            value = query.get(name)
            return None if value is None or value == "" else _cursor_id(value)

        return cls(
            limit=_int(query, "limit", 25, 1, MAX_LIMIT),
            offset=_int(query, "offset", 0, 0, MAX_OFFSET),
            bounds=Bounds(lt=opt_id("id_lt"), lte=opt_id("id_lte"), gt=opt_id("id_gt"), gte=opt_id("id_gte")),
            ranking=query.get("ranking") or None,
            tag=query.get("tag") or None,
            mark_seen=_marks(query.get("mark_seen")),
            mark_read=_marks(query.get("mark_read")),
        )


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}")
    return value


def _cursor_id(value: str, *, strict: bool = True) -> int | None:
    """An activity id, or a notification group id ``<id>.<group>`` (its newest activity's id)."""
    head = value.split(".", 1)[0]
    if strict:
        return parse_id(head)
    try:
        return parse_id(head)
    except InputError:
        return None


def _marks(raw: str | None) -> Marks:
    if raw in (None, "", "false", "False", "0"):
        return None
    if raw in ("true", "True", "1"):
        return True
    return [part for part in raw.split(",") if part]


class Reader:
    def __init__(self, service: FeedService) -> None:
        self._svc = service
        self._rankings: dict[tuple[str, str], Ranking] = {}

    def _ranking(self, group_name: str, name: str) -> Ranking:
        cached = self._rankings.get((group_name, name))
        if cached is None:
            expression = self._svc.group(group_name).ranking.get(name)
            if expression is None:
                raise RankingError(f"ranking {name!r} is not configured for feed group {group_name!r}")
            cached = self._rankings[(group_name, name)] = Ranking(expression)
        return cached

    async def read(
        self, app: App, feed: FeedRef, p: ReadParams, *, encoded: bool = False
    ) -> tuple[dict[str, Any], tuple[Marks, Marks] | None]:
        group = self._svc.group(feed.group)
        store = self._svc.store
        if group.type == "flat":
            ranking = self._ranking(group.name, p.ranking) if p.ranking else None
            need = RANKING_WINDOW if ranking else p.offset + p.limit
            entries = await self._svc.fanout.read(
                feed, need=need, bounds=p.bounds, tag=p.tag, cap=group.max_length, slim=True
            )
            if ranking is not None:
                acts = await store.get_activities(app.app_id, [e.id for e in entries])
                now = self._svc.now_us()
                scored = [(ranking.score(acts[e.id], now), e.id, e) for e in entries if e.id in acts]
                entries = [e for _, _, e in sorted(scored, key=lambda t: (-t[0], -t[1]))]
            page = entries[p.offset : p.offset + p.limit]
            bodies = await store.get_bodies(app.app_id, [e.id for e in page])
            nxt = ""
            if len(page) == p.limit and ranking is None:
                nxt = f"/api/v1.0/feed/{feed.group}/{feed.user_id}/?id_lt={page[-1].id}&limit={p.limit}"
            elif len(page) == p.limit:
                nxt = (
                    f"/api/v1.0/feed/{feed.group}/{feed.user_id}/?offset={p.offset + p.limit}&limit={p.limit}"
                )
            return {"results": flat_results(page, bodies, encoded=encoded), "next": nxt}, None

        return await self._read_groups(app, feed, group, p)

    async def _groups(
        self,
        app: App,
        feed: FeedRef,
        group: FeedGroup,
        bounds: Bounds,
        tag: str | None,
        *,
        look_above: bool = True,
    ) -> tuple[list[Group], list[Entry], dict[int, Activity]]:
        """Groups with their newest entry inside ``bounds`` (see :mod:`feeds.feed`), the window of
        entries read below the cursor, and the bodies fetched so far.  Without ``look_above`` the
        groups are cut at the upper bound (what a group held when that entry was its newest)."""
        fanout, store = self._svc.fanout, self._svc.store
        window = min(group.max_length, AGGREGATION_WINDOW)
        below = await fanout.read(feed, need=window, bounds=bounds, tag=tag, cap=group.max_length)
        above: list[Entry] = []
        upper = bounds.upper()
        if upper is not None and look_above:
            # A tag filter thins what is read above; read 4x so the horizon is usually covered.
            up = await fanout.read_up(feed, lowest=upper + 1, need=window if tag is None else 4 * window)
            above = [e for e in up if tag is None or tag in e.tags][:window][::-1]
        # Keys were computed at write time; only entries pulled at read time need their body now.
        acts = await store.get_activities(app.app_id, [e.id for e in (*above, *below) if not e.group_key])
        return group_entries(group, below, acts, horizon=window, above=above), below, acts

    async def _read_groups(
        self, app: App, feed: FeedRef, group: FeedGroup, p: ReadParams
    ) -> tuple[dict[str, Any], tuple[Marks, Marks] | None]:
        store = self._svc.store
        groups, below, acts = await self._groups(app, feed, group, p.bounds, p.tag)
        shown = groups[p.offset : p.offset + p.limit]
        missing = [e.id for g in shown for e in g.entries if e.id not in acts]
        acts.update(await store.get_activities(app.app_id, missing))
        complete = [g for g in shown if all(e.id in acts for e in g.entries)]
        notification = group.type == "notification"
        window_full = len(below) == min(group.max_length, AGGREGATION_WINDOW)
        cursor = ""
        if len(shown) == p.limit and (window_full or len(groups) > p.offset + p.limit):
            cursor = shown[-1].group_id(notification=notification)
        elif len(shown) < p.limit and window_full:
            cursor = str(below[-1].id)  # this window held no more groups: go on below it
        nxt = ""
        if cursor:
            query = urlencode({"id_lt": cursor, "limit": p.limit} | ({"tag": p.tag} if p.tag else {}))
            nxt = f"/api/v1.0/feed/{feed.group}/{feed.user_id}/?{query}"
        result: dict[str, Any] = {
            "results": [group_json(g, acts, notification=notification) for g in complete],
            "next": nxt,
        }
        if not notification:
            return result, None
        # unseen / unread are feed-level: over the newest window, whatever page was asked for.
        plain = p.bounds == Bounds() and p.offset == 0
        top = groups if plain else (await self._groups(app, feed, group, Bounds(), p.tag))[0]
        result["unseen"] = sum(not g.is_seen for g in top)
        result["unread"] = sum(not g.is_read for g in top)
        if p.mark_seen is None and p.mark_read is None:
            return result, None
        for marks, seen in ((p.mark_seen, True), (p.mark_read, False)):
            if marks is None:
                continue
            ids = None if marks is True else await self._group_members(app, feed, group, marks)
            await store.mark(feed.key, ids, seen=seen, read=not seen)
        return result, (p.mark_seen, p.mark_read)

    async def _group_members(
        self, app: App, feed: FeedRef, group: FeedGroup, group_ids: list[str]
    ) -> list[int]:
        """Entry ids of the groups with these ids, each read from the window that starts at the group's
        newest entry: a superset of what any page showed of it (a page's window starts higher up).
        Ids that name no group are ignored, as are ids past the first ``MAX_LIMIT``."""
        notification = group.type == "notification"
        out: list[int] = []
        for gid in dict.fromkeys(group_ids[:MAX_LIMIT]):
            head = _cursor_id(gid, strict=False)
            if head is None:
                continue
            bounds = Bounds(lte=head)
            candidates = (await self._groups(app, feed, group, bounds, None, look_above=False))[0]
            if candidates and candidates[0].group_id(notification=notification) == gid:
                out += [e.id for e in candidates[0].entries]
        return out
