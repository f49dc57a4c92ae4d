"""Upper bounds on the newest entry id of feeds, so a read can skip a feed with nothing above its floor.

A timeline read pulls every followed feed above the pull threshold (on the full benchmark dataset,
about 25 per read), each with an indexed query for entries above the read's floor; most return
nothing.  :class:`Heads` remembers, per feed a read has pulled, an id no entry of it exceeds.  A read
whose floor is above that id skips the feed.

Safety: the bound may be too high, never too low.
* Every insert into ``entries``, by any code path, raises it first: a temporary trigger on the
  writer connection calls :meth:`Heads.added` for each inserted row, before the row's commit.
* A bound is learned only from a read of the newest entries (no upper bound, no tag filter), whose
  first row is the newest, or which found nothing above its floor.
* Only with the loop writer (``normal`` durability): writes and reads then take turns on one thread
  and one connection, so no write lands between a read and what it learned.  A store writing on a
  thread keeps no bounds.
Removals leave bounds as they are (still upper bounds).  Pending pushes are not counted: reads merge
them separately.
"""

from __future__ import annotations

import sqlite3

MAX_FEEDS = 100_000

# The trigger calls into Python only for feeds with a bound (listed in a temporary table): a merge
# inserts thousands of rows a second, nearly all into timelines no read has pulled.
_SCHEMA = """
CREATE TEMP TABLE IF NOT EXISTS feeds_bounded(feed TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TRIGGER IF NOT EXISTS feeds_entry_heads AFTER INSERT ON main.entries
WHEN NEW.feed IN (SELECT feed FROM temp.feeds_bounded)
BEGIN SELECT feeds_entry_added(NEW.feed, NEW.id); END;
"""


class Heads:
    """``writer``: the loop writer's connection, which is also the one reads use (no write is in
    progress whenever a read runs, so :meth:`learned` may write its temporary table)."""

    def __init__(self, writer: sqlite3.Connection) -> None:
        self._newest: dict[str, int] = {}
        self._writer = writer
        writer.create_function("feeds_entry_added", 2, self.added)
        writer.executescript(_SCHEMA)

    def added(self, feed: str, ident: int) -> None:
        bound = self._newest.get(feed)
        if bound is not None and ident > bound:
            self._newest[feed] = ident

    def may_hold(self, feed: str, lowest: int) -> bool:
        """Whether ``feed`` may hold an entry with an id at or above ``lowest``."""
        bound = self._newest.get(feed)
        return bound is None or bound >= lowest

    def learned(self, feed: str, newest: int | None, lowest: int | None) -> None:
        """A read of ``feed``'s newest entries at or above ``lowest`` (None: all) returned ``newest``
        first, or nothing (None)."""
        if feed not in self._newest:
            if len(self._newest) >= MAX_FEEDS:  # a bounded memo: the next reads learn again
                self._newest.clear()
                self._writer.execute("DELETE FROM temp.feeds_bounded")
            self._writer.execute("INSERT INTO temp.feeds_bounded(feed) VALUES (?)", (feed,))
        self._newest[feed] = newest if newest is not None else -1 if lowest is None else lowest - 1
