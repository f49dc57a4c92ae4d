"""Activity rows written in the same group commit as the post that places them.

A post used to be two commits: its activity row, then its own entry and push log.  Each commit costs
a request about two loop iterations (one to be flushed, one to wake the writer), and under load an
iteration is milliseconds.  So :meth:`SqliteStore.stage_activities` settles what the row will be by
reads (idempotency on (foreign_id, time), a free id), queues its insert without waiting for the
commit, and returns.  The caller's :meth:`~SqliteStore.add_and_push` is queued behind it, so both
land in one group commit, or the activity in an earlier one: writes commit in the order they are
queued.

What reads cannot see yet is kept here until its commit resolves: an id taken by a row still in
flight, and the activity a (foreign_id, time) pair already names.  If the insert fails (its
savepoint rolls back alone), an ``add_and_push`` of its entry queued behind it must not leave an
entry pointing at nothing: that op checks the row is there first (:func:`require_activity`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from feeds.activity import Activity

Rows = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class ActivityNotStored(RuntimeError):
    """The activity row an entry was written for did not commit."""


class Staging:
    def __init__(self) -> None:
        self._ids: dict[tuple[str, int], bytes] = {}  # in flight: (app, id) -> body
        self._pairs: dict[tuple[str, str, int], Activity] = {}  # in flight: (app, fid, time) -> it

    def settle(
        self, app: str, activities: Sequence[Activity], read: Rows
    ) -> tuple[list[Activity], list[Activity]]:
        """What ``activities`` are once stored, in input order, and which of them are new rows."""
        stored: list[Activity] = []
        new: list[Activity] = []
        minted: set[int] = set()  # ids this call hands out
        for act in activities:
            if act.foreign_id is not None:
                pair = (act.foreign_id, act.time_us)
                known = self._pairs.get((app, *pair)) or next(
                    (a for a in new if (a.foreign_id, a.time_us) == pair), None
                )
                if known is None:
                    rows = read(
                        "SELECT body FROM activities WHERE app=? AND foreign_id=? AND time_us=?", (app, *pair)
                    )
                    known = Activity.loads(rows[0][0]) if rows else None
                if known is not None:
                    stored.append(known)
                    continue
            while act.id in minted or (app, act.id) in self._ids or _taken(read, app, act.id):
                act = act.with_id(act.id + 1)  # id taken by another activity: stay in the same ms
            minted.add(act.id)
            new.append(act)
            stored.append(act)
        return stored, new

    def insert(self, app: str, new: Sequence[Activity]) -> Callable[[sqlite3.Connection], None]:
        """The write of ``new``; they stay visible to :meth:`settle` until :meth:`release_on`."""
        rows = [(app, a.id, a.foreign_id, a.time_us, a.dumps()) for a in new]
        for act, row in zip(new, rows, strict=True):
            self._ids[(app, act.id)] = row[4]
            if act.foreign_id is not None:
                self._pairs[(app, act.foreign_id, act.time_us)] = act

        def op(conn: sqlite3.Connection) -> None:
            # a plain INSERT: a row that appeared since the reads (another process) fails the batch
            conn.executemany(
                "INSERT INTO activities(app, id, foreign_id, time_us, body) VALUES (?,?,?,?,?)", rows
            )

        return op

    def release_on(self, app: str, new: Sequence[Activity], commit: asyncio.Future[None]) -> None:
        def release(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved here: the caller may never await a failed insert
            for act in new:
                self._ids.pop((app, act.id), None)
                if act.foreign_id is not None:
                    pair = (app, act.foreign_id, act.time_us)
                    if self._pairs.get(pair) is act:
                        del self._pairs[pair]

        commit.add_done_callback(release)

    def in_flight(self, app: str, activity_id: int) -> bytes | None:
        """The body of a staged activity whose insert has not resolved yet."""
        return self._ids.get((app, activity_id))


def _taken(read: Rows, app: str, activity_id: int) -> bool:
    return bool(read("SELECT 1 FROM activities WHERE app=? AND id=?", (app, activity_id)))


def require_activity(conn: sqlite3.Connection, app: str, activity_id: int, body: bytes) -> None:
    """Fail unless the staged row is there: compared by body, since another writer's row may have
    taken its id (and the insert, a plain INSERT, then failed)."""
    sql = "SELECT 1 FROM activities WHERE app=? AND id=? AND body=?"
    if conn.execute(sql, (app, activity_id, body)).fetchone() is None:
        raise ActivityNotStored(f"activity {activity_id} of app {app!r} was not stored")
