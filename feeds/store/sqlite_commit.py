"""Group commit for the embedded store: one write connection, many writers per transaction.

Each write is a closure queued with an asyncio future; a group takes what is queued (up to
``max_batch`` closures and ``FLUSH_ROWS`` rows), runs each closure in its own SAVEPOINT inside one
transaction, commits once and resolves the futures.  So one commit (and, with full durability, one
fsync) serves many concurrent writers, and a failing write rolls back alone.

A write submitted ``alone`` gets a transaction of its own and no SAVEPOINT, its transaction being
its rollback unit.  That is for large writes: inside a SAVEPOINT, SQLite first copies every page a
write touches into a sub-journal, and a merge chunk touches one page per row on a large store
(merge-shaped inserts into the full benchmark dataset, alternated chunk by chunk: 8.5-10.3
against 6.4-6.8 us per row; the store's merge chunks, alternated the same way: 13.91 against 12.65
us of loop CPU per row, commit included).

* on the loop (``normal`` durability): once per loop iteration.  A WAL commit without fsync costs
  far less than handing work to a thread that must then win the GIL from a busy loop (measured:
  that hand-off dominated write latency).  The group is bounded by rows because it runs in one loop
  callback: its size is how long every read waits.  The same connection serves reads (its page
  cache survives its own commits; another connection's commit would empty a reader's cache), and
  :class:`~feeds.store.sqlite_wal.WalKeeper` checkpoints from a side thread.
* on a writer thread (``full`` durability), because fsync would block the loop; reads then use a
  connection of their own, which WAL lets proceed while the writer's transaction is open.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from feeds.store.sqlite_sql import StoreConnection
from feeds.store.sqlite_wal import CHECKPOINT_EVERY_S, WAL_LIMIT_FRAMES, WalKeeper

T = TypeVar("T")
log = logging.getLogger(__name__)
# op, its future, its rows (negative: a write that goes alone)
_Op = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", int]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
BEHIND_RECHECK_S = 0.005  # while checkpoints are too far behind, how often commits look again
FLUSH_ROWS = 256  # rows per loop-side group commit: ~5 ms of fan-out inserts on a warm store


class GroupCommit:
    def __init__(
        self,
        connect: Callable[[], StoreConnection],
        *,
        on_loop: bool,
        max_batch: int = 512,
        wal_limit_frames: int = WAL_LIMIT_FRAMES,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self._connect = connect
        self._on_loop = on_loop
        self._max_batch = max_batch
        self._wal_limit, self._checkpoint_every_s = wal_limit_frames, checkpoint_every_s
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: StoreConnection | None = None
        self._pending: list[_Op] = []
        self._flush_scheduled = False
        self._recheck_scheduled = False
        self._wal: WalKeeper | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> StoreConnection:
        """Start writing; returns the connection reads on the loop should use."""
        self._loop = loop
        self._closing = False
        if self._on_loop:
            self._writer = self._connect()
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            db_path = self._writer.execute("PRAGMA database_list").fetchone()[2]
            self._wal = WalKeeper(
                db_path,
                self._connect,
                loop,
                self._schedule_flush,
                limit_frames=self._wal_limit,
                every_s=self._checkpoint_every_s,
            )
            self._wal.start()
            return self._writer
        self._thread = threading.Thread(target=self._writer_main, name="feeds-sqlite-writer", daemon=True)
        self._thread.start()
        return self._connect()

    @property
    def wal_restarts(self) -> int:
        """How many times the WAL keeper held commits to start the WAL over."""
        return 0 if self._wal is None else self._wal.restarts

    async def close(self) -> None:
        """Commit what is queued, stop the threads and close the write connection."""
        self._closing = True
        while self._pending:
            self._flush()
        wal, self._wal = self._wal, None
        if wal is not None:
            await asyncio.to_thread(wal.stop)
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if wal is not None:
            wal.close_files()  # the writer was the last connection (the loop reads through it)

    def _flush(self) -> None:
        """Run on the loop: commit everything queued during the last iteration as one group."""
        self._flush_scheduled = False
        if self._wal is not None and self._wal.holding and not self._closing:
            return  # the WAL keeper resumes us once its checkpoint is done
        if self._wal is not None and not self._closing and self._wal.behind():
            if not self._recheck_scheduled and self._loop is not None:
                self._recheck_scheduled = True
                self._loop.call_later(BEHIND_RECHECK_S, self._recheck)
            return
        pending, taken, rows = self._pending, 0, 0
        # Bounded by rows as well as ops: one group runs in one loop callback, so its size is how
        # long every read waits.  A single op larger than the bound still goes alone.
        while taken < len(pending) and taken < self._max_batch:
            op_rows = pending[taken][2]
            if taken and op_rows < 0:
                break
            rows += abs(op_rows)
            if taken and rows > FLUSH_ROWS:
                break
            taken += 1
            if op_rows < 0:
                break
        batch, self._pending = pending[:taken], pending[taken:]
        if self._pending:
            self._schedule_flush()
        if batch and self._writer is not None:
            _resolve_all(self._run_batch(self._writer, batch))

    def _recheck(self) -> None:
        self._recheck_scheduled = False
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # --- the writer -----------------------------------------------------------------------------
    def _writer_main(self) -> None:
        conn = self._connect()
        stopping = False
        carried: _Op | None = None  # a write that goes alone, taken while filling the last group
        while not stopping:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is None:
                break
            batch = [first]
            while first[2] >= 0 and len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if item[2] < 0:
                    carried = item
                    break
                batch.append(item)
            outcomes = self._run_batch(conn, batch)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_resolve_all, outcomes)  # one loop wake-up per group
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[_Outcome]:
        """Every op gets an outcome, and the connection is left outside a transaction, whatever
        SQLite does: errors such as a full disk, an I/O error or a lock held elsewhere may roll the
        whole transaction back on their own, and then the ops before it are lost too (so they fail
        with that error rather than report a write that is not there)."""
        outcomes: list[_Outcome] = []
        if len(batch) == 1 and batch[0][2] < 0:
            return [self._run_alone(conn, batch[0])]
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = fn(conn)
                except Exception as exc:  # one failing write must not sink the rest of the group
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK TO op")
                    outcomes.append((fut, None, exc))
                else:
                    outcomes.append((fut, result, None))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except Exception as group_error:
            _roll_back(conn, "a failed commit group")
            return [(fut, None, group_error) for _, fut, _ in batch]
        return outcomes

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, op: _Op) -> _Outcome:
        fn, fut, _ = op
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            _roll_back(conn, "a failed write")
            return (fut, None, exc)
        return (fut, result, None)

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], rows: int = 1, *, alone: bool = False
    ) -> asyncio.Future[T]:
        """Queue a write; the future resolves once its group has committed.  Writes commit in the
        order they are submitted.  ``alone``: in a transaction of its own, without a SAVEPOINT."""
        rows = -max(1, rows) if alone else rows
        if (self._writer is None and self._thread is None) or self._loop is None:
            raise RuntimeError("SqliteStore is not started")
        fut: asyncio.Future[T] = self._loop.create_future()
        if self._on_loop:
            self._pending.append((fn, fut, rows))
            self._schedule_flush()
        else:
            self._queue.put((fn, fut, rows))
        return fut

    async def write(self, fn: Callable[[sqlite3.Connection], T], rows: int = 1, *, alone: bool = False) -> T:
        return await self.submit(fn, rows, alone=alone)


def _roll_back(conn: sqlite3.Connection, what: str) -> None:
    """End the transaction, unless SQLite already rolled it back on its own."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rolling back %s failed", what)


def _resolve_all(outcomes: list[_Outcome]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():  # the awaiting task was cancelled
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
