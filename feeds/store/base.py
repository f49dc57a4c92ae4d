"""The store seam: activity bodies, per-feed timelines and follows.

Every method is a coroutine; implementations differ in where the data lives, not in behaviour, and
``tests/feeds/test_store_contract.py`` runs one suite against each of them.

Keys.  Feeds are opaque strings that the service builds as ``<app_id>/<group>:<user_id>``; the store
never parses them.  Activities are scoped by ``app`` so two apps never see each other's bodies.

Guarantees every implementation gives:

* **Activity store.**  :meth:`put_activities` is idempotent on (foreign_id, time): an activity whose
  pair already exists is not stored again and the stored one (with its id) is returned in its place.
  An id already taken by a different activity is bumped by one until free, so ids stay unique and
  keep their millisecond.  Bodies are never deleted by timeline removals (Stream keeps them too).
  :meth:`stage_activities` is the same, except that it may return before the activities are
  durable: what it returns is final, and ``Staged.stored`` resolves once they are durable (or fails
  if they could not be stored).  An :meth:`add_and_push` of a staged activity's entry, called after
  staging, commits no earlier than the activity and fails, writing nothing, if the activity was not
  stored: so a post waits for one commit, not two.
* **Timeline store.**  Entries (id plus denormalised columns: origin feed, foreign_id, aggregation
  group key, tags, seen/read flags) are read newest first, i.e. by descending id, with exclusive and
  inclusive id bounds, an offset and a limit.  :meth:`add_entries` writes the same entries into many
  feeds at once (the fan-out primitive), ignores entries already present, and trims each feed to
  its ``cap`` newest entries, possibly lazily: a feed may carry a few dozen extra old entries
  between trims, but a call adding 32 or more entries always trims.  :meth:`read_entries_up` reads
  the other way (oldest first from an id), so aggregated reads can see just above a cursor.
  :meth:`set_entry_columns` rewrites the denormalised group key and tags of an activity's entries
  (after an activity update) without touching anything else, and never creates an entry.
* **Placements.**  The feeds an activity was written to directly (its feed and ``to`` targets) are
  recorded per activity, so an update can find its timelines; a superset is fine (rewriting the
  columns of a feed that no longer holds the entry is a no-op).
* **Posting.**  :meth:`add_and_push` writes an activity's entry into a feed it was posted to and, in
  the same step, pushes it to that feed's active followers (:class:`Post`): the common small
  fan-out in one store operation.  A feed with more than ``pull_threshold`` followers (live count)
  is not pushed to.  When more than ``max_push`` followers are active, a store may write nothing
  but the placements and return their keys, so the caller takes the journalled path for them; a
  store that can make the whole push durable in that one step (SQLite's push log) does so instead.
* **Follows.**  A (source, target) pair exists at most once; listings are newest follow first.
* **Activity of feeds.**  A feed's last-read time is kept so fan-out can skip inactive followers;
  :meth:`active_followers` lists the followers read at or after a time.
* **Push journal.**  A fan-out too large to finish before a write is acknowledged is recorded as
  :class:`PushJob` records (one per chunk of follower feeds) by :meth:`add_entries_and_jobs`, in
  the same atomic write as the activity's own entries: either both are stored or neither.  Each
  record carries a lease (a time in microseconds): while it runs, the process that wrote it owns
  it; once it has passed, :meth:`claim_push_jobs` hands the record to whoever asks, at most once
  per lease, and counts the attempt.  :meth:`finish_push_job` writes a record's entries and drops
  the record atomically, so a chunk is never both done and pending; running a job twice (a lease
  that expired under a slow owner) only repeats an idempotent :meth:`add_entries`.  Record ids are
  never reused.  A store owned by one process (SQLite) releases every lease at :meth:`start`: what
  it finds then was orphaned by a crash.
* **Durability.**  A write coroutine returns only once the write is durable to the level the store's
  documented setting promises; a read issued after that sees it.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import orjson

from feeds.activity import Activity


class Entry(NamedTuple):
    """One timeline row: an activity id and the columns needed to rank, group and filter it unhydrated.

    A named tuple, not a frozen dataclass: reads build thousands a second, and a frozen dataclass
    took ~0.85 us each here (a setattr per field) against ~0.3 us."""

    id: int
    origin: str | None = None
    foreign_id: str | None = None
    group_key: str = ""
    tags: tuple[str, ...] = ()
    seen: bool = False
    read: bool = False

    def wire(self) -> list[object]:
        """The pushed form (no flags: a push never carries marks), for the journal and the log."""
        return [self.id, self.origin, self.foreign_id, self.group_key, list(self.tags)]

    @classmethod
    def from_wire(cls, raw: Sequence[object]) -> Entry:
        ident, origin, foreign_id, group_key, tags = raw
        return cls(ident, origin, foreign_id, group_key, tuple(tags))  # type: ignore[arg-type]

    def marked(self, seen: bool, read: bool) -> Entry:
        """This entry with seen and/or read set (flags are only ever raised)."""
        return self._replace(seen=self.seen or seen, read=self.read or read)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Id cursor bounds of a read; ``None`` means unbounded."""

    lt: int | None = None
    lte: int | None = None
    gt: int | None = None
    gte: int | None = None

    def upper(self) -> int | None:
        """The inclusive upper bound (ids are integers, so ``lt x`` is ``lte x - 1``)."""
        cands = [b for b in (None if self.lt is None else self.lt - 1, self.lte) if b is not None]
        return min(cands) if cands else None

    def lower(self) -> int | None:
        cands = [b for b in (None if self.gt is None else self.gt + 1, self.gte) if b is not None]
        return max(cands) if cands else None


@dataclass(frozen=True, slots=True)
class PushJob:
    """One journalled chunk of a fan-out: ``entry`` into each of ``feeds``, each trimmed to ``cap``.

    ``app`` scopes the activity body and ``entry.origin`` (the feed the activity was posted to), so
    a resumed job can check that the activity is still there and describe it to the notifier."""

    app: str
    entry: Entry
    cap: int
    feeds: tuple[str, ...]

    def dumps(self) -> bytes:
        return orjson.dumps([self.app, self.cap, self.entry.wire(), self.feeds])

    @classmethod
    def loads(cls, raw: bytes) -> PushJob:
        app, cap, entry, feeds = orjson.loads(raw)
        return cls(app, Entry.from_wire(entry), cap, tuple(feeds))


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A journal record handed out by :meth:`Store.claim_push_jobs`; ``attempts`` counts its claims."""

    id: int
    attempts: int
    job: PushJob


_MAX_CHAR = chr(0x10FFFF)


@dataclass(frozen=True, slots=True)
class Post:
    """An activity's entry for ``feed`` (posted there directly) and the push of it to the feed's
    followers read at or after ``since_us`` (see :meth:`Store.add_and_push`).

    ``groups`` says what a follower gets, by the start of its key: (key prefix, entry, cap), first
    match wins; followers matching no prefix get nothing (a group removed from the configuration
    keeps its timelines frozen).  ``placements`` are recorded for the activity (``entry.id``) under
    ``app``, as :meth:`Store.add_placements` does."""

    app: str
    feed: str
    entry: Entry
    cap: int
    since_us: int
    pull_threshold: int
    max_push: int
    groups: tuple[tuple[str, Entry, int], ...]
    placements: tuple[str, ...] = ()

    def route(self, keys: Sequence[str]) -> list[tuple[list[str], Entry, int]]:
        """``keys`` split by group: (keys, entry, cap) per group that matched any."""
        prefixes = [prefix for prefix, _, _ in self.groups]
        if not all(p and p[-1] != _MAX_CHAR for p in prefixes) or any(
            a != b and b.startswith(a) for a in prefixes for b in prefixes
        ):
            return self._route_in_order(keys)
        # No prefix starts another, so a key matches at most one and order does not matter: each
        # group is a slice of the sorted keys (a push to thousands of followers was ~1 us per key
        # in the loop below, on the loop thread).
        ordered = sorted(keys)
        out: list[tuple[list[str], Entry, int]] = []
        for prefix, entry, cap in self.groups:
            lo = bisect_left(ordered, prefix)
            hi = bisect_left(ordered, prefix[:-1] + chr(ord(prefix[-1]) + 1), lo)
            if hi > lo:
                out.append((ordered[lo:hi], entry, cap))
        return out

    def _route_in_order(self, keys: Sequence[str]) -> list[tuple[list[str], Entry, int]]:
        out: dict[str, tuple[list[str], Entry, int]] = {}
        for key in keys:
            for prefix, entry, cap in self.groups:
                if key.startswith(prefix):
                    out.setdefault(prefix, ([], entry, cap))[0].append(key)
                    break
        return list(out.values())


@dataclass(frozen=True, slots=True)
class Posted:
    """What :meth:`Store.add_and_push` did.  ``done``: the entry and its pushes are written, and
    ``keys`` are the followers it was pushed to.  Not ``done``: only placements were written, and
    ``keys`` are all the active followers (more than ``max_push``, or more than the store writes in
    one step: RedisStore bounds one script's work), for the caller to push.  A store may be
    ``done`` with more than ``max_push`` (SqliteStore logs a push of any size while it has room)."""

    done: bool
    keys: list[str]


class Staged(NamedTuple):
    """What :meth:`Store.stage_activities` returns: the activities as stored, in input order, and
    a future that resolves once they are durable."""

    activities: list[Activity]
    stored: asyncio.Future[None]

    @classmethod
    def durable(cls, activities: list[Activity]) -> Staged:
        """Activities that are durable already (nothing new to insert, or a store that inserts at once)."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored.set_result(None)
        return cls(activities, stored)


@dataclass(frozen=True, slots=True)
class Follow:
    source: str
    target: str
    created_us: int


class ReadPlan(NamedTuple):
    """What a timeline read must know before it reads, fetched in one round trip: how many feeds
    the feed follows, which of them are pulled (more followers than the pull threshold, so their
    entries are merged at read time), and the feed's last-read time.  A named tuple: a store that
    memoizes plans builds one per read from its memo."""

    following: int
    pulled: tuple[str, ...]
    last_read_us: int | None


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def cache_loading(self) -> bool:
        """Whether the store is still loading its data into memory after start: it serves, but
        more slowly until it has (``/health`` says so)."""
        ...

    # --- activity store -------------------------------------------------------------------------
    async def put_activities(self, app: str, activities: Sequence[Activity]) -> list[Activity]:
        """Store new activities (ids already minted); returns what is stored, in input order."""
        ...

    async def stage_activities(self, app: str, activities: Sequence[Activity]) -> Staged:
        """:meth:`put_activities` that may return before the activities are durable."""
        ...

    async def get_activities(self, app: str, ids: Sequence[int]) -> dict[int, Activity]: ...

    async def get_bodies(self, app: str, ids: Sequence[int]) -> dict[int, bytes]:
        """Stored JSON bodies as bytes (Stream's shape without ``origin``): the hot read path."""
        ...

    async def get_by_foreign_id_time(
        self, app: str, pairs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], Activity]: ...

    async def replace_activities(self, app: str, activities: Sequence[Activity]) -> None:
        """Overwrite bodies of existing activities (matched by id); unknown ids are ignored."""
        ...

    async def add_placements(self, app: str, activity_id: int, feeds: Sequence[str]) -> None:
        """Record feeds the activity was written to directly (idempotent, additive)."""
        ...

    async def placements(self, app: str, activity_id: int) -> list[str]:
        """The recorded direct feeds of an activity, sorted."""
        ...

    # --- timeline store -------------------------------------------------------------------------
    async def add_entries(self, feeds: Sequence[str], entries: Sequence[Entry], cap: int) -> None: ...

    async def remove_entries(self, feeds: Sequence[str], ids: Sequence[int]) -> None: ...

    async def add_and_push(self, post: Post) -> Posted:
        """Record ``post.placements``; then, unless more than ``post.max_push`` followers of
        ``post.feed`` are active and the store declines the push (see :class:`Posted`), add
        ``post.entry`` to ``post.feed`` and each active follower's entry (by ``post.groups``), as
        :meth:`add_entries` would; the writes are one atomic step."""
        ...

    # --- push journal ---------------------------------------------------------------------------
    async def add_entries_and_jobs(
        self,
        feeds: Sequence[str],
        entries: Sequence[Entry],
        cap: int,
        jobs: Sequence[PushJob],
        lease_until_us: int,
    ) -> list[int]:
        """:meth:`add_entries` and the journal records of ``jobs`` (leased until ``lease_until_us``)
        in one atomic write; returns the records' ids, in input order."""
        ...

    async def claim_push_jobs(self, now_us: int, lease_until_us: int, limit: int) -> list[ClaimedJob]:
        """Up to ``limit`` records whose lease ended before ``now_us``, oldest id first, each leased
        anew until ``lease_until_us`` and its attempt count raised by one, atomically."""
        ...

    async def finish_push_job(self, job_id: int, job: PushJob | None) -> None:
        """Push ``job`` (if given) and drop record ``job_id``, atomically; an unknown id only pushes."""
        ...

    async def push_job_count(self) -> int:
        """Records in the journal (finished ones are gone)."""
        ...

    async def remove_foreign_id(self, feed: str, foreign_id: str) -> list[Entry]:
        """Remove every entry of ``feed`` with this foreign_id; returns the removed entries."""
        ...

    async def remove_origin(self, feed: str, origin: str) -> int:
        """Remove every entry that arrived from ``origin`` (unfollow without keep_history)."""
        ...

    async def read_entries(
        self,
        feed: str,
        *,
        limit: int,
        offset: int = 0,
        bounds: Bounds | None = None,
        tag: str | None = None,
        slim: bool = False,
    ) -> list[Entry]:
        """Newest first.  ``slim``: the caller uses only ``id`` and ``origin`` (a flat page), so a
        store may leave the other columns at their defaults."""
        ...

    async def read_many(
        self, feeds: Sequence[str], *, limit: int, bounds: Bounds | None = None, tag: str | None = None
    ) -> list[list[Entry]]:
        """:meth:`read_entries` (no offset) of every feed, in input order, in one round trip: the
        pull side of a hybrid read asks every pulled feed at once."""
        ...

    async def read_entries_up(self, feed: str, *, lowest: int, limit: int) -> list[Entry]:
        """The ``limit`` entries of ``feed`` with id >= ``lowest`` nearest to it, oldest first."""
        ...

    async def set_entry_columns(
        self, feeds: Sequence[str], activity_id: int, *, group_key: str, tags: Sequence[str]
    ) -> None:
        """Set group key and tags of entry ``activity_id`` in each of ``feeds`` that holds it; origin,
        foreign_id and seen/read are kept, feeds without the entry are left alone."""
        ...

    async def get_entries(self, feed: str, ids: Sequence[int]) -> list[Entry]:
        """The entries of ``feed`` with these ids (missing ones skipped), newest first."""
        ...

    async def mark(self, feed: str, ids: Sequence[int] | None, *, seen: bool, read: bool) -> None:
        """Set seen and/or read on the given entries (``None``: all entries of the feed)."""
        ...

    # --- follows --------------------------------------------------------------------------------
    async def follow(self, follows: Sequence[Follow]) -> list[bool]:
        """Create follows; ``True`` for each that did not exist before."""
        ...

    async def unfollow(self, source: str, target: str) -> bool: ...

    async def followers(self, target: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]: ...

    async def following(self, source: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]: ...

    async def follower_count(self, target: str) -> int: ...

    async def read_plan(self, feed: str, pull_threshold: int) -> ReadPlan:
        """The :class:`ReadPlan` of ``feed``: pulled are the followed feeds with more than
        ``pull_threshold`` followers, in no particular order."""
        ...

    async def follower_counts(self, targets: Sequence[str]) -> dict[str, int]:
        """Follower counts of many feeds in one round trip (every target present, 0 if none)."""
        ...

    # --- feed activity --------------------------------------------------------------------------
    async def set_last_read(self, feed: str, us: int) -> None: ...

    async def last_read(self, feed: str) -> int | None: ...

    async def active_followers(self, target: str, since_us: int) -> list[str]:
        """Keys of the feeds following ``target`` whose last read is at or after ``since_us``."""
        ...
