"""FeedService: the engine's one entry point, used by the HTTP API and by the server's lifespan.

Every write follows the same order: store the activity bodies (idempotent on foreign_id + time),
write timeline entries into the target feed and its ``to`` targets, push to followers (see
:mod:`feeds.fanout`; pushes too large to finish before the acknowledgement are journalled and
finished in the background, see :mod:`feeds.pushes`), and only then hand one
:class:`~feeds.notify.FeedUpdate` per affected feed to the notifier.  Methods take an authenticated
:class:`~feeds.apps.App` and return JSON-ready values in Stream's shapes; invalid input raises
:class:`~feeds.errors.FeedError` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from feeds.activity import Activity, format_time, parse_time
from feeds.apps import App
from feeds.auth import Authenticator
from feeds.config import DEFAULT_GROUPS, FanoutConfig, FeedGroup
from feeds.errors import DoesNotExistError, FeedConfigError, FeedError, InputError
from feeds.fanout import Fanout
from feeds.ids import IdGenerator, parse_id, time_to_us
from feeds.keys import FeedRef, check_name
from feeds.notify import FeedUpdate, Notifier
from feeds.pushes import Pushes, chunked
from feeds.reads import Reader, ReadParams
from feeds.store.base import ClaimedJob, Entry, Follow, Post, PushJob, Store

log = logging.getLogger(__name__)
MAX_TAGS = 10


@dataclass(slots=True)
class _Journal:
    """Push chunks one fan-out reserved (released if it fails) and journalled (run after it)."""

    reserved: int = 0
    claimed: list[ClaimedJob] = field(default_factory=list)


@dataclass(slots=True)
class _Changes:
    """Per-feed updates collected during one request, flushed to the notifier at its end."""

    published_at: str
    by_feed: dict[str, FeedUpdate] = field(default_factory=dict)

    def of(self, feed: FeedRef) -> FeedUpdate:
        update = self.by_feed.get(feed.key)
        if update is None:
            update = self.by_feed[feed.key] = FeedUpdate(
                feed.app_id, feed.group, feed.user_id, self.published_at
            )
        return update


class FeedService:
    def __init__(
        self,
        store: Store,
        apps: Sequence[App],
        groups: Sequence[FeedGroup] | None = None,
        notifier: Notifier | None = None,
        *,
        fanout: FanoutConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.apps = list(apps)
        self.auth = Authenticator(self.apps)
        self.groups = {g.name: g for g in (DEFAULT_GROUPS if groups is None else groups)}
        self.notifier = notifier
        self.fanout_config = fanout or FanoutConfig()
        self.fanout = Fanout(store, self.fanout_config, now_us=self.now_us)
        self.reader = Reader(self)
        self._clock = clock
        self._ids = IdGenerator()
        self.pushes = Pushes(store, self.fanout_config, now_us=self.now_us, notify=self._notify_pushed)

    async def start(self) -> None:
        """Start the store, then resume the pushes a crash left in its journal (in the background)."""
        await self.store.start()
        self.pushes.start()

    async def close(self) -> None:
        """Finish running background pushes (what is not started stays journalled), then the store."""
        await self.pushes.close()
        await self.store.close()

    # --- helpers --------------------------------------------------------------------------------
    def now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def group(self, name: str) -> FeedGroup:
        group = self.groups.get(name)
        if group is None:
            raise FeedConfigError(f"feed group {name!r} does not exist")
        return group

    def feed(self, app: App, group: str, user_id: str) -> FeedRef:
        self.group(group)
        return FeedRef(app.app_id, group, check_name(user_id, "user id"))

    def parse_feed(self, app: App, feed_id: str) -> FeedRef:
        ref = FeedRef.parse(app.app_id, feed_id)
        self.group(ref.group)
        return ref

    async def _notify(self, changes: _Changes) -> None:
        if self.notifier is None or not changes.by_feed:
            return
        try:
            await self.notifier.feeds_changed(list(changes.by_feed.values()))
        except Exception:  # the write is durable already; a failed live update must not fail it
            log.exception("feed notifier failed")

    def _changes(self) -> _Changes:
        return _Changes(format_time(self.now_us()))

    # --- activities -----------------------------------------------------------------------------
    def _new_activity(self, data: Any) -> Activity:
        act = _checked_tags(Activity.from_json(data, now_us=self.now_us()))
        return act.with_id(self._ids.new_id(act.time_us))

    async def add_activities(self, app: App, feed: FeedRef, items: Sequence[Any]) -> list[dict[str, Any]]:
        acts = [self._new_activity(item) for item in items]
        targets = [[feed, *(self.parse_feed(app, t) for t in act.to)] for act in acts]
        staged = await self.store.stage_activities(app.app_id, acts)
        changes = self._changes()
        try:
            for act, direct in zip(staged.activities, targets, strict=True):
                await self._fan_out(act, list(dict.fromkeys(direct)), changes)
        finally:  # a post's own write commits no earlier than its activity: this rarely waits
            await staged.stored
        await self._notify(changes)
        return [act.to_json(origin=None) for act in staged.activities]

    async def _fan_out(self, act: Activity, direct: list[FeedRef], changes: _Changes) -> None:
        """Write ``act`` into ``direct`` feeds and push it to their active followers.

        A feed's own entry, its pushes to at most ``inline_fanout`` active followers and the
        placements go in one store operation (:meth:`Store.add_and_push`, one round trip with Redis).
        Larger pushes are journalled in the store in the same atomic write as the feed's own entry,
        acknowledged, and finished by a background task in chunks, which then notifies
        (:mod:`feeds.pushes`).  A crash after the acknowledgement loses nothing: a resume pass (at
        the next start, or any node's sweep) finishes the journalled chunks.  When this process
        already has ``max_pending_push_jobs`` chunks in flight, large pushes are written before
        returning too."""
        tags = tuple(act.extra.get("tags", ()))
        since_us = self.fanout.push_since_us()
        group_keys = {name: g.group_key(act) for name, g in self.groups.items()}
        placed = tuple(f.key for f in direct)  # recorded so an update can find its timelines
        journal = _Journal()
        posts = [
            self._post(act, feed, tags, group_keys, since_us, placed if i == 0 else (), changes, journal)
            for i, feed in enumerate(direct)
        ]
        try:
            if len(posts) == 1:  # most posts: gather's tasks would cost two more loop iterations
                await posts[0]
            else:  # each post runs to its end before a failure is raised: none reserves after the release
                for outcome in await asyncio.gather(*posts, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome
        except BaseException:  # records journalled before the failure are left to a sweep
            self.pushes.release(journal.reserved)
            raise
        if journal.claimed:
            self.pushes.run_later(act, journal.claimed)

    async def _post(
        self,
        act: Activity,
        feed: FeedRef,
        tags: tuple[str, ...],
        group_keys: dict[str, str],
        since_us: int,
        placed: tuple[str, ...],
        changes: _Changes,
        journal: _Journal,
    ) -> None:
        """One direct feed of :meth:`_fan_out`; the journalled path when the push is too large."""
        group = self.group(feed.group)
        own = Entry(act.id, None, act.foreign_id, group_keys[group.name], tags)
        notify = self.notifier is not None
        if notify:
            changes.of(feed).new.append(act.to_json(origin=None))
        cfg = self.fanout_config
        pushed = tuple(
            (
                FeedRef(feed.app_id, g.name, "").key,
                Entry(act.id, feed.feed_id, act.foreign_id, group_keys[g.name], tags),
                g.max_length,
            )
            for g in self.groups.values()
        )
        post = Post(
            feed.app_id,
            feed.key,
            own,
            group.max_length,
            since_us,
            cfg.pull_threshold,
            cfg.inline_fanout,
            pushed,
            placed,
        )
        posted = await self.store.add_and_push(post)
        if posted.done:
            if notify:
                self._note_new(changes, posted.keys, act, feed.feed_id)
            return
        # Too many active followers to push before acknowledging: journal what can be reserved.
        writes: list[Awaitable[None]] = []
        jobs: list[PushJob] = []
        for keys, entry, cap in post.route(posted.keys):
            if len(keys) > cfg.inline_fanout:
                chunks = chunked(feed.app_id, keys, entry, cap)
                if self.pushes.reserve(len(chunks)):
                    journal.reserved += len(chunks)
                    jobs += chunks
                    continue
            writes.append(self.store.add_entries(keys, [entry], cap))
            if notify:
                self._note_new(changes, keys, act, feed.feed_id)
        if jobs:
            writes.append(self._journal(feed.key, own, group.max_length, jobs, journal.claimed))
        else:
            writes.append(self.store.add_entries([feed.key], [own], group.max_length))
        await asyncio.gather(*writes)

    async def _journal(
        self, key: str, own: Entry, cap: int, jobs: list[PushJob], out: list[ClaimedJob]
    ) -> None:
        ids = await self.store.add_entries_and_jobs([key], [own], cap, jobs, self.pushes.lease_until_us())
        out += (ClaimedJob(i, 0, job) for i, job in zip(ids, jobs, strict=True))

    def _note_new(self, changes: _Changes, keys: Sequence[str], act: Activity, origin: str) -> None:
        if self.notifier is not None:
            keys = self.notifier.watched(keys)
        if not keys:
            return
        body = act.to_json(origin=origin)
        for key in keys:
            changes.of(FeedRef.from_key(key)).new.append(body)

    async def _notify_pushed(self, act: Activity, keys: Sequence[str], origin: str) -> None:
        if self.notifier is not None:
            changes = self._changes()
            self._note_new(changes, keys, act, origin)
            await self._notify(changes)

    async def drain(self) -> None:
        """Wait for background fan-outs and resume passes (tests, shutdown)."""
        await self.pushes.drain()

    async def add_to_many(self, app: App, activity: Any, feed_ids: Sequence[str]) -> None:
        feeds = [self.parse_feed(app, f) for f in feed_ids]
        act = self._new_activity(activity)
        extra = [self.parse_feed(app, t) for t in act.to]
        staged = await self.store.stage_activities(app.app_id, [act])
        changes = self._changes()
        try:
            await self._fan_out(staged.activities[0], list(dict.fromkeys([*feeds, *extra])), changes)
        finally:
            await staged.stored
        await self._notify(changes)

    async def remove_activity(self, app: App, feed: FeedRef, ident: str, *, by_foreign_id: bool) -> None:
        if by_foreign_id:
            ids = [e.id for e in await self.store.remove_foreign_id(feed.key, ident)]
        else:
            ids = [parse_id(ident)]
            await self.store.remove_entries([feed.key], ids)
        followers = await self.fanout.all_followers(feed.key)
        await self.store.remove_entries([f.key for f in followers], ids)
        bodies = await self.store.get_activities(app.app_id, ids)
        changes = self._changes()
        for ref in (feed, *followers):
            update = changes.of(ref)
            update.deleted.extend(str(i) for i in ids)
            if by_foreign_id:
                update.deleted_foreign_ids.extend(
                    [ident, format_time(bodies[i].time_us)] for i in ids if i in bodies
                )
        await self._notify(changes)

    async def update_to_targets(
        self,
        app: App,
        feed: FeedRef,
        change: dict[str, Any],
    ) -> dict[str, Any]:
        """Stream's activity_to_targets: replace (``new_targets``) or edit (``added_targets`` /
        ``removed_targets``) the ``to`` list of the activity (foreign_id, time) posted to ``feed``."""
        act = await self._find(app, {"foreign_id": change.get("foreign_id"), "time": change.get("time")})
        new, added, removed = (change.get(k) for k in ("new_targets", "added_targets", "removed_targets"))
        for value in (new, added, removed):
            if value is not None and not (isinstance(value, list) and all(isinstance(t, str) for t in value)):
                raise InputError("targets must be lists of feed ids")
        if new is not None and (added or removed):
            raise InputError("new_targets cannot be combined with added_targets or removed_targets")
        current = list(act.to)
        if new is not None:
            added = [t for t in new if t not in current]
            removed = [t for t in current if t not in new]
        add_refs = [self.parse_feed(app, t) for t in added or []]
        rm_refs = [self.parse_feed(app, t) for t in removed or []]
        kept = [t for t in current if t not in {r.feed_id for r in rm_refs}]
        updated = replace(act, to=tuple(dict.fromkeys([*kept, *(r.feed_id for r in add_refs)])))
        await self.store.replace_activities(app.app_id, [updated])
        changes = self._changes()
        await self._fan_out(updated, [r for r in add_refs if r != feed], changes)
        for ref in rm_refs:
            followers = await self.fanout.all_followers(ref.key)
            await self.store.remove_entries([ref.key, *(f.key for f in followers)], [act.id])
            for gone in (ref, *followers):
                changes.of(gone).deleted.append(str(act.id))
        await self._notify(changes)
        return {
            "activity": updated.to_json(),
            "added": [r.feed_id for r in add_refs],
            "removed": [r.feed_id for r in rm_refs],
        }

    async def get_activities(
        self, app: App, *, ids: Sequence[str] = (), foreign_id_times: Sequence[tuple[str, str]] = ()
    ) -> list[dict[str, Any]]:
        if ids:
            wanted = [parse_id(i) for i in ids]
            found = await self.store.get_activities(app.app_id, wanted)
            return [found[i].to_json() for i in wanted if i in found]
        pairs = [(fid, time_to_us(parse_time(t))) for fid, t in foreign_id_times]
        by_pair = await self.store.get_by_foreign_id_time(app.app_id, pairs)
        return [by_pair[p].to_json() for p in pairs if p in by_pair]

    async def _find(self, app: App, change: dict[str, Any]) -> Activity:
        if change.get("id"):
            found = await self.store.get_activities(app.app_id, [parse_id(str(change["id"]))])
        elif change.get("foreign_id") and change.get("time"):
            pair = (str(change["foreign_id"]), time_to_us(parse_time(change["time"])))
            found = dict(enumerate((await self.store.get_by_foreign_id_time(app.app_id, [pair])).values()))
        else:
            raise InputError("an activity is identified by id or by foreign_id and time")
        if not found:
            raise DoesNotExistError(f"activity {change.get('id') or change.get('foreign_id')!r} not found")
        return next(iter(found.values()))

    async def update_activities(self, app: App, items: Sequence[Any]) -> None:
        """Full replacement, matched by foreign_id + time as Stream requires."""
        updated = []
        for item in items:
            if not isinstance(item, dict) or not item.get("foreign_id") or not item.get("time"):
                raise InputError("an updated activity needs foreign_id and time")
            current = await self._find(app, {"foreign_id": item["foreign_id"], "time": item["time"]})
            updated.append(
                _checked_tags(Activity.from_json(item, now_us=current.time_us).with_id(current.id))
            )
        await self.store.replace_activities(app.app_id, updated)
        await self._refresh_entries(app, updated)

    async def partial_update(self, app: App, changes: Sequence[Any]) -> list[dict[str, Any]]:
        updated = []
        for change in changes:
            if not isinstance(change, dict):
                raise InputError("each change must be an object")
            current = await self._find(app, change)
            set_fields, unset = change.get("set") or {}, change.get("unset") or []
            if not isinstance(set_fields, dict) or not isinstance(unset, list):
                raise InputError("'set' must be an object and 'unset' a list")
            updated.append(_checked_tags(current.patched(set_fields, [str(u) for u in unset])))
        await self.store.replace_activities(app.app_id, updated)
        await self._refresh_entries(app, updated)
        return [a.to_json() for a in updated]

    async def _refresh_entries(self, app: App, acts: Sequence[Activity]) -> None:
        """After a body update: rewrite the tags and group key of every entry of each activity (in the
        feeds it was written to directly, its ``to`` targets, and all their followers), then notify
        those feeds.  Stream's v1 realtime message has no field for updates, so the updated activity
        goes in ``new``; clients match it by id.  A change of ``to`` is not applied to timelines here
        (that is :meth:`update_to_targets`)."""
        changes = self._changes()
        for act in acts:
            tags = tuple(act.extra.get("tags", ()))
            direct: dict[str, FeedRef] = {}
            for key in await self.store.placements(app.app_id, act.id):
                direct[key] = FeedRef.from_key(key)
            for target in act.to:
                with contextlib.suppress(FeedError):  # a stale target must not block the update
                    ref = self.parse_feed(app, target)
                    direct[ref.key] = ref
            reached: dict[str, tuple[FeedRef, str | None]] = {k: (r, None) for k, r in direct.items()}
            for ref in direct.values():
                for follower in await self.fanout.all_followers(ref.key):
                    reached.setdefault(follower.key, (follower, ref.feed_id))
            by_group: dict[str, list[str]] = {}
            for key, (ref, _) in reached.items():
                by_group.setdefault(ref.group, []).append(key)
            for name, keys in by_group.items():
                fgroup = self.groups.get(name)
                if fgroup is not None:  # a group removed from config: its timelines are frozen
                    await self.store.set_entry_columns(
                        keys, act.id, group_key=fgroup.group_key(act), tags=tags
                    )
            if self.notifier is not None:
                for ref, origin in reached.values():
                    changes.of(ref).new.append(act.to_json(origin=origin))
        await self._notify(changes)

    # --- follows --------------------------------------------------------------------------------
    async def follow(self, app: App, source: FeedRef, target: FeedRef, copy_limit: int | None = None) -> None:
        cfg = self.fanout_config
        limit = cfg.default_copy_limit if copy_limit is None else copy_limit
        if not 0 <= limit <= cfg.max_copy_limit:
            raise InputError(f"activity_copy_limit must be between 0 and {cfg.max_copy_limit}")
        await self.store.follow([Follow(source.key, target.key, self.now_us())])
        await self.fanout.mark_active(source.key)  # a follow is activity: push to it from now on
        if limit == 0:
            return
        entries = [e for e in await self.store.read_entries(target.key, limit=limit) if e.origin is None]
        group = self.group(source.group)
        bodies = (
            await self.store.get_activities(app.app_id, [e.id for e in entries])
            if group.type != "flat"
            else {}
        )
        copies = [
            Entry(e.id, target.feed_id, e.foreign_id, group.group_key(bodies[e.id]) if bodies else "", e.tags)
            for e in entries
            if group.type == "flat" or e.id in bodies
        ]
        await self.store.add_entries([source.key], copies, group.max_length)

    async def unfollow(self, app: App, source: FeedRef, target: FeedRef, *, keep_history: bool) -> None:
        await self.store.unfollow(source.key, target.key)
        if not keep_history:
            await self.store.remove_origin(source.key, target.feed_id)

    async def follows(
        self, feed: FeedRef, *, followers: bool, offset: int, limit: int, only: Sequence[str]
    ) -> list[dict[str, Any]]:
        if only:
            rows = await (self.store.followers if followers else self.store.following)(feed.key)
            other = [FeedRef.from_key(f.source if followers else f.target).feed_id for f in rows]
            rows = [f for f, o in zip(rows, other, strict=True) if o in set(only)][offset : offset + limit]
        else:
            fn = self.store.followers if followers else self.store.following
            rows = await fn(feed.key, offset=offset, limit=limit)
        return [
            {
                "feed_id": FeedRef.from_key(f.source).feed_id,
                "target_id": FeedRef.from_key(f.target).feed_id,
                "created_at": format_time(f.created_us),
                "updated_at": format_time(f.created_us),
            }
            for f in rows
        ]

    async def read(
        self, app: App, feed: FeedRef, params: ReadParams, *, encoded: bool = False
    ) -> dict[str, Any]:
        """A page of ``feed``; with ``encoded``, flat results are pre-encoded ``orjson.Fragment``s
        for a response body rather than dicts."""
        result, update = await self.reader.read(app, feed, params, encoded=encoded)
        if update is not None:
            changes = self._changes()
            marks = changes.of(feed)
            marks.mark_seen, marks.mark_read = update
            await self._notify(changes)
        return result


def _checked_tags(act: Activity) -> Activity:
    tags = act.extra.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS or not all(isinstance(t, str) for t in tags):
        raise InputError(f"'tags' must be a list of at most {MAX_TAGS} strings")
    return act
