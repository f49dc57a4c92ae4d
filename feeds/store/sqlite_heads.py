"""Upper bounds on the newest entry id of feeds, so a read can skip a feed with nothing above its floor.

A timeline read pulls every followed feed above the pull threshold (on the full benchmark dataset,
about 25 per read), each with an indexed query for entries above the read's floor; most return
nothing.  :class:`Heads` remembers, per feed a read has pulled, an id no entry of it exceeds.  A read
whose floor is above that id skips the feed.

Safety: the bound may be too high, never too low.
* Every insert into ``entries`` raises it first: all of them go through
  :func:`feeds.store.sqlite_sql.insert_entry_rows`, which shows the rows to :meth:`Heads.inserting`
  (the writer connection's watch) before the INSERT.  A row the INSERT then ignores, or a write
  rolled back, leaves a bound too high, which is allowed.  No trigger does this: a temporary
  trigger's program cost ~0.7 us per written row on the full dataset (bench_layout.py), in merges
  and trims that touch thousands of rows a second, nearly all in feeds that no read has pulled.
* A bound is learned only from a read of the newest entries (no upper bound, no tag filter), whose
  first row is the newest, or which found nothing above its floor.
* Only with the loop writer (``normal`` durability): writes and reads then take turns on one thread
  and one connection, so no write lands between a read and what it learned.  A store writing on a
  thread keeps no bounds.
Removals leave bounds as they are (still upper bounds).  Pending pushes are not counted: reads merge
them separately.

Windows.  On the full dataset a read still queries about 5 pulled feeds that have something above
its floor, ~90 us of its ~280 us.  The same read of the newest entries also leaves a window: the
newest ``WINDOW`` stored entries of the feed, with the id at and above which the window holds every
stored entry.  A later newest-entries read answers from the window when it can tell the answer is
complete.  Any write that may touch a row at or above a window's floor drops the window (a delete
or an update is shown to :meth:`Heads.changing` by the statement's own code, before it runs, with
its ids or as "any row of the feed"), and the next read learns it again from SQL.  Windows are
learned only from committed state: a write group runs in one loop callback, so no read sees it half
done, and a rolled-back row already dropped its window when it was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from feeds.store.base import Entry
from feeds.store.sqlite_sql import StoreConnection

MAX_FEEDS = 100_000
WINDOW = 32  # entries kept per feed: a default page (25) and a little more
MAX_WINDOWS = 4096  # a bounded memo (about 30 MB at most): cleared when full, learned again


class Heads:
    """``writer``: the loop writer's connection, which is also the one reads use; the bounds watch
    what it writes (:class:`feeds.store.sqlite_sql.EntriesWatch`)."""

    def __init__(self, writer: StoreConnection) -> None:
        self._newest: dict[str, int] = {}
        self._windows: dict[str, tuple[int, tuple[Entry, ...]]] = {}  # feed -> (floor, newest first)
        writer.entries_watch = self

    def inserting(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (feed, id, ...) about to be inserted: a dict lookup per row, more only for a feed
        with a bound (few: the feeds reads pull)."""
        newest = self._newest
        if newest:
            for row in rows:
                feed, ident = row[0], row[1]
                bound = newest.get(feed)
                if bound is not None:
                    if ident > bound:
                        newest[feed] = ident
                    self.changing(feed, (ident,))

    def changing(self, feed: str, ids: Iterable[int] | None) -> None:
        """Rows of ``feed`` with these ids (None: any of its rows) are about to be deleted or
        updated.  Bounds stay: they are still upper bounds."""
        window = self._windows.get(feed)
        if window is not None and (ids is None or any(i >= window[0] for i in ids)):
            del self._windows[feed]

    def may_hold(self, feed: str, lowest: int) -> bool:
        """Whether ``feed`` may hold an entry with an id at or above ``lowest``."""
        bound = self._newest.get(feed)
        return bound is None or bound >= lowest

    def answer(
        self, feeds: Sequence[str], lowest: int | None, limit: int, out: dict[str, list[Entry]]
    ) -> list[str]:
        """Puts into ``out`` the answers the windows hold to a read of each feed's newest ``limit``
        stored entries at or above ``lowest``; returns the feeds left for SQL."""
        asked = []
        for feed in feeds:
            held = self.newest(feed, lowest, limit)
            if held is None:
                asked.append(feed)
            else:
                out[feed] = held
        return asked

    def newest(self, feed: str, lowest: int | None, limit: int) -> list[Entry] | None:
        """The stored answer to a read of ``feed``'s newest ``limit`` entries at or above ``lowest``
        (None: all), if its window holds it whole; None otherwise."""
        window = self._windows.get(feed)
        if window is None:
            return None
        floor, entries = window
        low = 0 if lowest is None else lowest
        got = [e for e in entries if e.id >= low]
        if len(got) >= limit:
            return got[:limit]  # every stored entry above the window's floor is in it
        return got if low >= floor else None

    def learned(self, feed: str, entries: Sequence[Entry], lowest: int | None, limit: int) -> None:
        """A read of ``feed``'s newest ``limit`` (at least 1) stored entries at or above ``lowest``
        (None: all) returned ``entries``, newest first."""
        if feed not in self._newest and len(self._newest) >= MAX_FEEDS:
            self._newest.clear()  # a bounded memo: the next reads learn again
            self._windows.clear()
        self._newest[feed] = entries[0].id if entries else -1 if lowest is None else lowest - 1
        kept = tuple(entries[:WINDOW])
        if len(entries) >= limit or len(kept) < len(entries):
            floor = kept[-1].id  # a full page: complete only down to its last
        else:
            floor = 0 if lowest is None else lowest  # fewer than asked: nothing else at or above
        if len(self._windows) >= MAX_WINDOWS and feed not in self._windows:
            self._windows.clear()
        self._windows[feed] = (floor, kept)
