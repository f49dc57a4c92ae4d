"""Pushed entries waiting to be merged into the embedded store's timelines.

Why.  A fan-out entry written straight into ``entries`` dirties one B-tree page per follower, and
SQLite then writes that page to the WAL at commit and back at checkpoint: about 30 us per entry on
the 10k-user dataset.  Merged later in large batches sorted by feed, entries of the same timeline
share their page writes: about 11 us per entry.  So a post writes its own entry, its placements and
one *push log* record (the entry, the follower keys and the caps) in its commit, which makes the
push durable, and the pushed entries wait here, in memory, until a merge writes them.

Reads see them: every timeline read merges the feed's pending entries with what SQLite returns
(deduplicated by id: a merge chunk is committed before its entries leave this tier).

Changes to entries that are still pending:

* mark / set_entry_columns first *materialize* the feed's pending entries (write them into
  ``entries`` in the same write as the change), so the log, loaded again after a killed process,
  cannot undo the change: reads prefer the stored copy of an id, and merges are ``INSERT OR IGNORE``.
* removals drop matching pending entries here, and record every removed (feed, id) that a load of
  the log could bring back (an id at or above the oldest id in the log) in ``push_log_drops``, in the same
  write as the SQL delete.

At start the log is loaded back into this tier (entries not dropped) and stays; a merge cycle
deletes the log records whose entries it has written, and the drops no later load needs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from feeds.store.base import Bounds, Entry
from feeds.store.sqlite_sql import entry_row
from feeds.store.trim import TRIM_EVERY, TrimSchedule

PENDING_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_log(seq INTEGER PRIMARY KEY, job BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS push_log_drops(
  feed TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY(feed, id)) WITHOUT ROWID;
"""
Push = tuple[Sequence[str], Entry, int]  # follower keys, their entry, their cap (their group's)
Taken = tuple[str, list[int], int]  # a feed, the ids of its entries a merge chunk writes, its cap


def dump_pushes(pushes: Sequence[Push]) -> bytes:
    return orjson.dumps([[list(keys), e.wire(), cap] for keys, e, cap in pushes])


def load_pushes(raw: bytes) -> list[Push]:
    return [(keys, Entry.from_wire(e), cap) for keys, e, cap in orjson.loads(raw)]


class PendingEntries:
    """Pending entries per feed, the caps of their feeds and the log records they came from.

    Why the indirection: a push shares one :class:`Entry` among all its followers, and holding it in
    every follower's dict made each of those dicts (one per pending feed, 10k on the benchmark
    dataset) a container the garbage collector traverses: full collections took 20-35 ms there.
    Each push's entry is held once, under a serial number; a feed maps entry ids to serial numbers,
    only ints, and such dicts are not tracked by the collector at all."""

    def __init__(self) -> None:
        self._feeds: dict[str, dict[int, int]] = {}  # feed -> entry id -> serial of its entry
        self._entries: dict[int, Entry] = {}  # serial -> entry
        self._holders: dict[int, int] = {}  # serial -> how many feeds hold it
        self._serial = 0
        self._caps: dict[str, int] = {}
        self._seqs: dict[int, tuple[int, float]] = {}  # log record -> (lowest entry id, added at)
        self.count = 0

    # --- writes ------------------------------------------------------------------------------
    def add(self, seq: int, pushes: Sequence[Push]) -> None:
        lowest = None
        feeds, caps, holders = self._feeds, self._caps, self._holders
        for keys, entry, cap in pushes:
            eid = entry.id
            lowest = eid if lowest is None else min(lowest, eid)
            self._serial += 1
            serial = self._serial
            self._entries[serial] = entry
            # one pass per push, a few dict operations per follower: thousands run in one step
            held = 0
            for key in keys:
                slot = feeds.get(key)
                if slot is None:
                    feeds[key] = {eid: serial}
                    caps[key] = cap  # a feed's cap is its group's: set once per slot, not per push
                    self.count += 1
                else:
                    before = slot.get(eid)
                    if before == serial:  # a key listed twice in one push
                        continue
                    if before is None:
                        self.count += 1
                    else:
                        self._release(before)
                    slot[eid] = serial
                held += 1
            if held:
                holders[serial] = held
            else:
                del self._entries[serial]
        self._seqs[seq] = (lowest if lowest is not None else 0, time.monotonic())

    def _release(self, serial: int) -> Entry:
        left = self._holders[serial] - 1
        if left:
            self._holders[serial] = left
            return self._entries[serial]
        del self._holders[serial]
        return self._entries.pop(serial)

    def seqs(self) -> list[int]:
        return list(self._seqs)

    def forget_seqs(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self._seqs.pop(seq, None)

    def oldest_age(self) -> float:
        """Seconds since the oldest record still unmerged was added (0 when none is)."""
        for _, added in self._seqs.values():  # insertion order is commit order: the first is oldest
            return time.monotonic() - added
        return 0.0

    def log_floor(self) -> int | None:
        """The lowest entry id any unmerged log record holds (None: the log is empty)."""
        return self.floor_without(())

    def floor_without(self, seqs: Sequence[int]) -> int | None:
        """:meth:`log_floor` once ``seqs`` are gone from the log."""
        gone = set(seqs)
        rest = [low for seq, (low, _) in self._seqs.items() if seq not in gone]
        return min(rest) if rest else None

    def feeds(self) -> list[str]:
        return sorted(self._feeds)

    def take_rows(
        self, feeds: Sequence[str], start: int, max_rows: int, encoded: dict[int, tuple[Any, ...]]
    ) -> tuple[int, list[tuple[Any, ...]], list[Taken]]:
        """Insert rows for the pending entries of ``feeds[start:]``, feed after feed until about
        ``max_rows``, each feed's in id order; and, per feed with any, its (feed, ids, cap).  Returns
        the index to go on from too.  The entries stay pending until :meth:`drop_merged`.

        One walk, with no call per row but an entry's first encoding: on a large store a chunk
        holds about one row per feed, so per-feed calls were per-row calls.  ``encoded`` keeps an
        entry's columns (by serial) for the rest of a merge cycle: a push shares its entry among
        all its followers."""
        slots, entries, caps = self._feeds, self._entries, self._caps
        rows: list[tuple[Any, ...]] = []
        taken: list[Taken] = []
        i, end = start, len(feeds)
        while i < end and len(rows) < max_rows:
            feed = feeds[i]
            i += 1
            slot = slots.get(feed)
            if not slot:
                continue
            ids = sorted(slot)
            for eid in ids:
                serial = slot[eid]
                cols = encoded.get(serial)
                if cols is None:
                    cols = encoded[serial] = entry_row(entries[serial])
                rows.append((feed, *cols))
            taken.append((feed, ids, caps.get(feed, 0)))
        return i, rows, taken

    def drop_merged(self, taken: Sequence[Taken]) -> None:
        """Drop what a committed merge chunk wrote: :meth:`discard` for each taken feed, with no
        call per entry and nothing returned (the merge's own walk after a chunk was a third of its
        Python time on the 100k-user dataset).  Entries pushed to a feed since the chunk took it stay."""
        feeds, holders, entries, caps = self._feeds, self._holders, self._entries, self._caps
        dropped = 0
        for feed, ids, _ in taken:
            slot = feeds.get(feed)
            if slot is None:
                continue
            for eid in ids:
                serial = slot.pop(eid, None)
                if serial is None:  # removed meanwhile
                    continue
                dropped += 1
                left = holders[serial] - 1
                if left:
                    holders[serial] = left
                else:
                    del holders[serial], entries[serial]
            if not slot:
                del feeds[feed]
                caps.pop(feed, None)
        self.count -= dropped

    def discard(self, feed: str, ids: Iterable[int]) -> list[Entry]:
        """Drop these ids from the feed's pending entries; returns the dropped ones."""
        slot = self._feeds.get(feed)
        if not slot:
            return []
        out = [self._release(s) for s in (slot.pop(i, None) for i in ids) if s is not None]
        self.count -= len(out)
        if not slot:
            del self._feeds[feed]
            self._caps.pop(feed, None)
        return out

    def discard_where(self, feed: str, match: str, value: str) -> list[Entry]:
        """Drop the feed's pending entries whose ``match`` column ("origin"/"foreign_id") equals value."""
        slot = self._feeds.get(feed)
        if not slot:
            return []
        entries = self._entries
        ids = [i for i, s in slot.items() if getattr(entries[s], match) == value]
        return self.discard(feed, ids)

    # --- reads -------------------------------------------------------------------------------
    def has(self, feed: str) -> bool:
        return feed in self._feeds

    def keep(self, feed: str) -> int:
        """How many newest entries of the feed a read may show: its cap plus the lazy trim's slack."""
        return self._caps.get(feed, 0) + TRIM_EVERY

    def newest_first(self, feed: str, bounds: Bounds | None, tag: str | None) -> list[Entry]:
        slot = self._feeds.get(feed)
        if not slot:
            return []
        upper, lower = (bounds.upper(), bounds.lower()) if bounds is not None else (None, None)
        entries = self._entries
        out = [
            e
            for e in (entries[s] for s in slot.values())
            if (upper is None or e.id <= upper)
            and (lower is None or e.id >= lower)
            and (tag is None or tag in e.tags)
        ]
        out.sort(key=lambda e: -e.id)
        return out

    def by_ids(self, feed: str, ids: Iterable[int]) -> list[Entry]:
        slot = self._feeds.get(feed)
        if not slot:
            return []
        entries = self._entries
        return [entries[s] for s in (slot.get(i) for i in ids) if s is not None]


def merge_newest_first(
    stored: list[Entry], pending: list[Entry], offset: int, limit: int, keep: int | None = None
) -> list[Entry]:
    """``stored`` (from SQLite, newest first, no offset applied) with ``pending`` merged in; only
    the ``keep`` newest count (the cap and the lazy trim's slack: the merge would trim the rest)."""
    if not pending:
        return stored[offset : offset + limit]
    have = {e.id for e in stored}
    merged = stored + [e for e in pending if e.id not in have]
    merged.sort(key=lambda e: -e.id)
    if keep is not None:
        del merged[keep:]
    return merged[offset : offset + limit]


def merge_oldest_first(stored: list[Entry], pending: list[Entry], limit: int) -> list[Entry]:
    """``stored`` (oldest first, limited) with ``pending`` merged in, the ``limit`` oldest."""
    if not pending:
        return stored
    have = {e.id for e in stored}
    return sorted([*stored, *(e for e in pending if e.id not in have)], key=lambda e: e.id)[:limit]


def record_drops(conn: sqlite3.Connection, drops: Sequence[tuple[str, int]]) -> None:
    conn.executemany("INSERT OR IGNORE INTO push_log_drops(feed, id) VALUES (?, ?)", drops)


def forget_log(
    conn: sqlite3.Connection, seqs: Sequence[int], floor: int | None, *, drops: bool = True
) -> None:
    """Drop merged log records and, with ``drops``, the drops no remaining record could bring back
    (``floor``: the lowest entry id of the records left, None if none is)."""
    conn.executemany("DELETE FROM push_log WHERE seq=?", [(s,) for s in seqs])
    if not drops:
        return
    if floor is None:
        conn.execute("DELETE FROM push_log_drops")
    else:
        conn.execute("DELETE FROM push_log_drops WHERE id < ?", (floor,))


def load_log(conn: sqlite3.Connection, pending: PendingEntries, trims: TrimSchedule) -> int:
    """Put the pushes a killed process left in the log back into ``pending``, less the dropped ones
    (at start, before anything else writes), and have the first merge into each of their feeds
    trim it; returns the entries loaded.  The records and the drops stay in the log until a merge
    cycle has written the entries, as they would have in the process that logged them.  A start
    that loaded 724k entries so took 1.2 s on the full dataset; writing them first took 31.9 s."""
    for seq, raw in conn.execute("SELECT seq, job FROM push_log ORDER BY seq"):
        pending.add(seq, load_pushes(raw))
    for feed, eid in conn.execute("SELECT feed, id FROM push_log_drops").fetchall():
        pending.discard(feed, [eid])
    trims.owe(pending.feeds())
    return pending.count
