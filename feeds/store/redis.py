"""RedisStore: the cluster store (redis.asyncio).

Layout, every key under a configurable ``prefix`` (tests use a unique one each, never FLUSHALL):

* ``a:<app>``  hash id -> activity body;  ``f:<app>``  hash "<foreign_id>\\0<time_us>" -> id.
* ``t:<feed>`` sorted set, every score 0, member the id zero-padded to 19 digits, so lexicographic
  order is id order and a cursor read is one ``ZREVRANGEBYLEX``;  ``e:<feed>`` hash member -> the
  entry's denormalised columns (JSON).
* ``fr:<target>`` / ``fo:<source>`` sorted sets of followers / followings scored by follow time.
* ``lr`` hash feed -> last read time (us).
* ``p:<app>:<id>`` set of the feeds an activity was written to directly.
* Push journal: ``pj`` sorted set job id -> lease end (us), ``pjb`` hash id -> :class:`PushJob`
  bytes, ``pja`` hash id -> attempts, ``pjn`` the id counter (INCR: ids are never reused).
  An activity's own entries and its job records go in one MULTI/EXEC (the ``ADD`` and
  ``JOURNAL`` scripts), so the acknowledgement of a write implies its pending pushes are
  recorded; a finished chunk's entries and the removal of its record share one MULTI/EXEC too.
  Leases are not released at start (other nodes may be running their jobs): a restarted node
  resumes its orphaned jobs once their lease ends, and so does any other node.

Posting (:meth:`RedisStore.add_and_push`) is one ``POST`` script: placements, the follower count
and active-follower filter, the own entry and the pushes, in one round trip.  The calls of the hot
write path (``PUT``, ``POST``) made during one event-loop iteration travel in one pipeline
(:mod:`feeds.store.redis_batch`); each script still runs atomically and is acknowledged only once
Redis replied to it.

Timelines are trimmed lazily: by ``feeds.store.trim``'s per-feed counts, as in SqliteStore, for
:meth:`RedisStore.add_entries`; feeds written by ``POST`` (whose follower keys the client only
learns afterwards) are trimmed in the script once they hold more than ``TRIM_EVERY - 1`` entries
beyond their cap, the same hard bound.

Idempotent inserts and timeline trimming are Lua scripts (:mod:`feeds.store.redis_scripts`), so
concurrent nodes cannot interleave a check with its write.  Removal by foreign_id or origin, and tag
filters, scan the (capped) timeline's entry hash: acceptable because timelines are capped, and the
price of not keeping more indexes.
Durability is Redis's own (AOF/RDB settings of the server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from feeds.activity import Activity
from feeds.store import redis_scripts as scripts
from feeds.store.base import Bounds, ClaimedJob, Entry, Follow, Post, Posted, PushJob, ReadPlan, Staged
from feeds.store.redis_batch import ScriptBatch
from feeds.store.trim import TRIM_EVERY, TrimSchedule

_CAS_CHUNK = 500
# Entry writes per ADD call: bounds how long one script holds the (single-threaded) server.
_ADD_OPS = 2000


def _member(activity_id: int) -> bytes:
    return b"%019d" % activity_id


def _meta(e: Entry) -> bytes:
    return orjson.dumps([e.origin, e.foreign_id, e.group_key, list(e.tags), e.seen, e.read])


def _entry(member: bytes, meta: bytes) -> Entry:
    origin, fid, group_key, tags, seen, read = orjson.loads(meta)
    return Entry(int(member), origin, fid, group_key, tuple(tags), seen, read)


class RedisStore:
    def __init__(self, url: str, *, prefix: str = "feeds:", max_connections: int = 64) -> None:
        self._url = url
        self._p = prefix
        self._max_connections = max_connections
        self._redis: aioredis.Redis | None = None
        self._trims = TrimSchedule()

    @property
    def r(self) -> Any:  # redis-py's response types are unions of str/bytes; ours are always bytes
        if self._redis is None:
            raise RuntimeError("RedisStore is not started")
        return self._redis

    @property
    def cache_loading(self) -> bool:
        return False  # Redis holds its data in memory already

    async def start(self) -> None:
        # A blocking pool: a burst of concurrent requests waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(self._url, max_connections=self._max_connections)
        self._redis = aioredis.Redis(connection_pool=pool)
        await self._redis.ping()
        self._put = self._redis.register_script(scripts.PUT)
        self._add = self._redis.register_script(scripts.ADD)
        self._active = self._redis.register_script(scripts.ACTIVE)
        self._post = self._redis.register_script(scripts.POST)
        self._batch = ScriptBatch(self._redis)
        self._read_plan = self._redis.register_script(scripts.READ_PLAN)
        self._cas = self._redis.register_script(scripts.CAS)
        self._journal = self._redis.register_script(scripts.JOURNAL)
        self._claim = self._redis.register_script(scripts.CLAIM)

    async def close(self) -> None:
        if self._redis is not None:
            await self._batch.close()
            await self._redis.aclose(close_connection_pool=True)  # the pool is ours, not shared
            self._redis = None

    def _k(self, kind: str, name: str) -> str:
        return f"{self._p}{kind}:{name}"

    # --- activity store -------------------------------------------------------------------------
    async def put_activities(self, app: str, activities: Sequence[Activity]) -> list[Activity]:
        keys = [self._k("a", app), self._k("f", app)]
        stored: list[Activity] = []
        for act in activities:
            fid_key = "" if act.foreign_id is None else f"{act.foreign_id}\0{act.time_us}"
            while True:
                status, body = await self._batch.call(self._put, keys, [fid_key, act.id, act.dumps()])
                if status == 1:
                    act = Activity.loads(body)
                    break
                if status == 0:
                    break
                act = act.with_id(act.id + 1)  # id taken by another activity: stay in the same ms
            stored.append(act)
        return stored

    async def stage_activities(self, app: str, activities: Sequence[Activity]) -> Staged:
        return Staged.durable(await self.put_activities(app, activities))  # one round trip: durable

    async def get_bodies(self, app: str, ids: Sequence[int]) -> dict[int, bytes]:
        if not ids:
            return {}
        bodies = await self.r.hmget(self._k("a", app), [str(i) for i in ids])
        return {i: b for i, b in zip(ids, bodies, strict=True) if b is not None}

    async def get_activities(self, app: str, ids: Sequence[int]) -> dict[int, Activity]:
        return {i: Activity.loads(body) for i, body in (await self.get_bodies(app, ids)).items()}

    async def get_by_foreign_id_time(
        self, app: str, pairs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], Activity]:
        if not pairs:
            return {}
        ids = await self.r.hmget(self._k("f", app), [f"{fid}\0{t}" for fid, t in pairs])
        found = await self.get_activities(app, [int(i) for i in ids if i is not None])
        return {
            p: found[int(i)] for p, i in zip(pairs, ids, strict=True) if i is not None and int(i) in found
        }

    async def replace_activities(self, app: str, activities: Sequence[Activity]) -> None:
        key = self._k("a", app)
        async with self.r.pipeline(transaction=False) as pipe:
            for act in activities:
                pipe.hexists(key, str(act.id))
            exists = await pipe.execute()
        known = {str(a.id): a.dumps() for a, ok in zip(activities, exists, strict=True) if ok}
        if known:
            await self.r.hset(key, mapping=known)

    async def add_placements(self, app: str, activity_id: int, feeds: Sequence[str]) -> None:
        if feeds:
            await self.r.sadd(self._k("p", f"{app}:{activity_id}"), *feeds)

    async def placements(self, app: str, activity_id: int) -> list[str]:
        members = await self.r.smembers(self._k("p", f"{app}:{activity_id}"))
        return sorted(m.decode() for m in members)

    # --- timeline store -------------------------------------------------------------------------
    async def add_entries(self, feeds: Sequence[str], entries: Sequence[Entry], cap: int) -> None:
        """Per feed, in order: ZADD NX the members, HSETNX each entry's columns, trim if due.

        One ``ADD`` script call per chunk of feeds, all chunks in one pipeline: a round trip and a
        command per chunk instead of per feed and entry (redis-py's per-command cost dominated).
        """
        if not feeds or not entries:
            return
        async with self.r.pipeline(transaction=False) as pipe:
            await self._queue_add(pipe, feeds, entries, cap)
            await pipe.execute()

    async def _queue_add(self, pipe: Any, feeds: Sequence[str], entries: Sequence[Entry], cap: int) -> None:
        members = [_member(e.id) for e in entries]
        entry_args: list[Any] = [cap, len(entries), *members, *(_meta(e) for e in entries)]
        due = set(self._trims.due(feeds, len(entries)))
        step = max(1, _ADD_OPS // (len(entries) + 1))
        t, e = f"{self._p}t:".encode(), f"{self._p}e:".encode()
        for start in range(0, len(feeds), step):
            chunk = feeds[start : start + step]
            # bytes: redis-py's encoder passes them through untouched (this list is per follower)
            keys = [k for b in (f.encode() for f in chunk) for k in (t + b, e + b)]
            flags = b"".join(b"1" if feed in due else b"0" for feed in chunk)
            await self._add(keys=keys, args=[*entry_args, flags], client=pipe)

    async def add_and_push(self, post: Post) -> Posted:
        """One ``POST`` script call: placements, follower filter, own entry and pushes."""
        feed, entry = post.feed, post.entry
        keys = [
            self._k("t", feed),
            self._k("e", feed),
            self._k("fr", feed),
            f"{self._p}lr",
            self._k("p", f"{post.app}:{entry.id}"),
        ]
        args: list[Any] = [
            _member(entry.id),
            _meta(entry),
            post.cap,
            post.since_us,
            post.pull_threshold,
            min(post.max_push, _ADD_OPS),
            self._p,
            TRIM_EVERY - 1,
            len(post.placements),
            *post.placements,
        ]
        for prefix, pushed, cap in post.groups:
            args += [prefix, _meta(pushed), cap]
        done, found = await self._batch.call(self._post, keys, args)
        return Posted(bool(done), [k.decode() for k in found])

    async def remove_entries(self, feeds: Sequence[str], ids: Sequence[int]) -> None:
        if not ids:
            return
        members = [_member(i) for i in ids]
        async with self.r.pipeline(transaction=False) as pipe:
            for feed in feeds:
                pipe.zrem(self._k("t", feed), *members)
                pipe.hdel(self._k("e", feed), *members)
            await pipe.execute()

    # --- push journal ---------------------------------------------------------------------------
    def _journal_keys(self) -> list[str]:
        return [f"{self._p}pj", f"{self._p}pjb", f"{self._p}pja"]

    async def add_entries_and_jobs(
        self,
        feeds: Sequence[str],
        entries: Sequence[Entry],
        cap: int,
        jobs: Sequence[PushJob],
        lease_until_us: int,
    ) -> list[int]:
        zset, bodies, _ = self._journal_keys()
        async with self.r.pipeline(transaction=True) as pipe:
            if feeds and entries:
                await self._queue_add(pipe, feeds, entries, cap)
            if jobs:
                keys = [f"{self._p}pjn", zset, bodies]
                await self._journal(keys=keys, args=[lease_until_us, *(j.dumps() for j in jobs)], client=pipe)
            results: list[Any] = await pipe.execute()
        return [int(i) for i in results[-1]] if jobs else []

    async def claim_push_jobs(self, now_us: int, lease_until_us: int, limit: int) -> list[ClaimedJob]:
        flat = await self._claim(keys=self._journal_keys(), args=[now_us, lease_until_us, limit])
        return [
            ClaimedJob(int(flat[i]), int(flat[i + 1]), PushJob.loads(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def finish_push_job(self, job_id: int, job: PushJob | None) -> None:
        zset, bodies, attempts = self._journal_keys()
        async with self.r.pipeline(transaction=True) as pipe:
            if job is not None:
                await self._queue_add(pipe, job.feeds, [job.entry], job.cap)
            pipe.zrem(zset, job_id)
            pipe.hdel(bodies, job_id)
            pipe.hdel(attempts, job_id)
            await pipe.execute()

    async def push_job_count(self) -> int:
        return int(await self.r.zcard(f"{self._p}pj"))

    async def _scan(self, feed: str) -> list[Entry]:
        raw: dict[bytes, bytes] = await self.r.hgetall(self._k("e", feed))
        return sorted((_entry(m, v) for m, v in raw.items()), key=lambda e: -e.id)

    async def remove_foreign_id(self, feed: str, foreign_id: str) -> list[Entry]:
        gone = [e for e in await self._scan(feed) if e.foreign_id == foreign_id]
        await self.remove_entries([feed], [e.id for e in gone])
        return gone

    async def remove_origin(self, feed: str, origin: str) -> int:
        gone = [e.id for e in await self._scan(feed) if e.origin == origin]
        await self.remove_entries([feed], gone)
        return len(gone)

    async def read_entries(
        self,
        feed: str,
        *,
        limit: int,
        offset: int = 0,
        bounds: Bounds | None = None,
        tag: str | None = None,
        slim: bool = False,  # an entry is one stored value here: nothing to leave out
    ) -> list[Entry]:
        bounds = bounds or Bounds()
        upper, lower = bounds.upper(), bounds.lower()
        hi = b"+" if upper is None else b"[" + _member(upper)
        lo = b"-" if lower is None else b"[" + _member(lower)
        tkey, ekey = self._k("t", feed), self._k("e", feed)
        if tag is None:
            members = await self.r.zrevrangebylex(tkey, hi, lo, start=offset, num=limit)
            return await self._hydrate(ekey, members)
        out: list[Entry] = []
        skip, page, start = offset, max(4 * (limit + offset), 100), 0
        while len(out) < limit:
            members = await self.r.zrevrangebylex(tkey, hi, lo, start=start, num=page)
            for e in await self._hydrate(ekey, members):
                if tag in e.tags:
                    if skip:
                        skip -= 1
                    elif len(out) < limit:
                        out.append(e)
            if len(members) < page:
                break
            start += page
        return out

    async def read_many(
        self, feeds: Sequence[str], *, limit: int, bounds: Bounds | None = None, tag: str | None = None
    ) -> list[list[Entry]]:
        if tag is not None or len(feeds) < 2:
            return [await self.read_entries(f, limit=limit, bounds=bounds, tag=tag) for f in feeds]
        bounds = bounds or Bounds()
        upper, lower = bounds.upper(), bounds.lower()
        hi = b"+" if upper is None else b"[" + _member(upper)
        lo = b"-" if lower is None else b"[" + _member(lower)
        async with self.r.pipeline(transaction=False) as pipe:  # two round trips for any number
            for feed in feeds:
                pipe.zrevrangebylex(self._k("t", feed), hi, lo, start=0, num=limit)
            ranges: list[list[bytes]] = await pipe.execute()
        wanted = [(feed, members) for feed, members in zip(feeds, ranges, strict=True) if members]
        async with self.r.pipeline(transaction=False) as pipe:
            for feed, members in wanted:
                pipe.hmget(self._k("e", feed), members)
            metas: list[list[bytes | None]] = await pipe.execute() if wanted else []
        found = {
            feed: [_entry(m, v) for m, v in zip(members, values, strict=True) if v is not None]
            for (feed, members), values in zip(wanted, metas, strict=True)
        }
        return [found.get(feed, []) for feed in feeds]

    async def _hydrate(self, ekey: str, members: list[bytes]) -> list[Entry]:
        if not members:
            return []
        metas = await self.r.hmget(ekey, members)
        return [_entry(m, v) for m, v in zip(members, metas, strict=True) if v is not None]

    async def read_entries_up(self, feed: str, *, lowest: int, limit: int) -> list[Entry]:
        members = await self.r.zrangebylex(
            self._k("t", feed), b"[" + _member(lowest), b"+", start=0, num=limit
        )
        return await self._hydrate(self._k("e", feed), members)

    async def set_entry_columns(
        self, feeds: Sequence[str], activity_id: int, *, group_key: str, tags: Sequence[str]
    ) -> None:
        member = _member(activity_id)
        pending = list(feeds)
        for _ in range(5):  # each round only retries entries a concurrent mark() rewrote meanwhile
            if not pending:
                return
            async with self.r.pipeline(transaction=False) as pipe:
                for feed in pending:
                    pipe.hget(self._k("e", feed), member)
                metas: list[bytes | None] = await pipe.execute()
            held = [(f, m) for f, m in zip(pending, metas, strict=True) if m is not None]
            retry: list[str] = []
            for start in range(0, len(held), _CAS_CHUNK):
                chunk = held[start : start + _CAS_CHUNK]
                args: list[Any] = [member]
                for _, old in chunk:
                    e = _entry(member, old)
                    new = Entry(e.id, e.origin, e.foreign_id, group_key, tuple(tags), e.seen, e.read)
                    args += [old, _meta(new)]
                changed = await self._cas(keys=[self._k("e", f) for f, _ in chunk], args=args)
                retry += [chunk[int(i) - 1][0] for i in changed]
            pending = retry
        raise RuntimeError(f"entry {activity_id} kept changing while its columns were rewritten")

    async def get_entries(self, feed: str, ids: Sequence[int]) -> list[Entry]:
        members = sorted((_member(i) for i in ids), reverse=True)
        return await self._hydrate(self._k("e", feed), members)

    async def mark(self, feed: str, ids: Sequence[int] | None, *, seen: bool, read: bool) -> None:
        if not (seen or read):
            return
        ekey = self._k("e", feed)
        entries = await self._scan(feed) if ids is None else await self.get_entries(feed, ids)
        if not entries:
            return
        updates = {_member(e.id): _meta(e.marked(seen, read)) for e in entries}
        await self.r.hset(ekey, mapping=updates)

    # --- follows --------------------------------------------------------------------------------
    async def follow(self, follows: Sequence[Follow]) -> list[bool]:
        async with self.r.pipeline(transaction=True) as pipe:
            for f in follows:
                pipe.zadd(self._k("fo", f.source), {f.target: f.created_us}, nx=True)
                pipe.zadd(self._k("fr", f.target), {f.source: f.created_us}, nx=True)
            results: list[Any] = await pipe.execute()
        return [bool(results[2 * i]) for i in range(len(follows))]

    async def unfollow(self, source: str, target: str) -> bool:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zrem(self._k("fo", source), target)
            pipe.zrem(self._k("fr", target), source)
            results: list[Any] = await pipe.execute()
        return bool(results[0])

    async def _follows(self, key: str, offset: int, limit: int | None) -> list[tuple[str, int]]:
        stop = -1 if limit is None else offset + limit - 1
        rows = await self.r.zrevrange(key, offset, stop, withscores=True)
        return [(m.decode(), int(s)) for m, s in rows]

    async def followers(self, target: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = await self._follows(self._k("fr", target), offset, limit)
        return [Follow(source, target, t) for source, t in rows]

    async def following(self, source: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = await self._follows(self._k("fo", source), offset, limit)
        return [Follow(source, target, t) for target, t in rows]

    async def follower_count(self, target: str) -> int:
        return int(await self.r.zcard(self._k("fr", target)))

    async def read_plan(self, feed: str, pull_threshold: int) -> ReadPlan:
        got = await self._read_plan(
            keys=[self._k("fo", feed), f"{self._p}lr"], args=[pull_threshold, feed, self._k("fr", "")]
        )
        following, last, *pulled = got
        return ReadPlan(
            int(following), tuple(t.decode() for t in pulled), None if last is None else int(last)
        )

    async def follower_counts(self, targets: Sequence[str]) -> dict[str, int]:
        async with self.r.pipeline(transaction=False) as pipe:
            for target in targets:
                pipe.zcard(self._k("fr", target))
            counts = await pipe.execute()
        return {t: int(n) for t, n in zip(targets, counts, strict=True)}

    # --- feed activity --------------------------------------------------------------------------
    async def set_last_read(self, feed: str, us: int) -> None:
        await self.r.hset(f"{self._p}lr", feed, us)

    async def last_read(self, feed: str) -> int | None:
        value = await self.r.hget(f"{self._p}lr", feed)
        return None if value is None else int(value)

    async def active_followers(self, target: str, since_us: int) -> list[str]:
        # Filtered server side: one round trip, and only the active followers cross the wire.
        active = await self._active(keys=[self._k("fr", target), f"{self._p}lr"], args=[since_us])
        return [m.decode() for m in active]
