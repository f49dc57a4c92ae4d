"""When and how the embedded store's pending pushes are merged into its timelines.

See :mod:`feeds.store.sqlite_pending` for why pushes wait.  A merge cycle runs when
``merge_rows`` entries are pending or the oldest logged push is ``merge_after_s`` old.  It walks the
feeds with pending entries in key order and writes them in chunks of about ``MERGE_CHUNK_ROWS``
rows, each a commit of its own (a write that goes alone: no SAVEPOINT, see
:mod:`feeds.store.sqlite_commit`), so reads run between chunks; then it deletes the log records the
cycle covered, ``FORGET_CHUNK_SEQS`` to a commit.  A chunk's entries leave the pending tier only once
it is committed.
Cycles started by the timer are paced (after each chunk they wait twice as long as it took, and
long enough to spread the cycle over half the merge interval, unless pending entries pass half of
``max_pending``); explicit merges and the one at close are not.

Memory is bounded: with ``max_pending`` entries pending, posts write their pushes directly, as
they did before this tier existed, until a merge has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from feeds.store.sqlite_pending import PendingEntries, Push, forget_log
from feeds.store.sqlite_sql import insert_entry_rows, trim_feeds
from feeds.store.trim import TrimSchedule

# A chunk is one commit on the loop, so its length is how long reads wait behind it.  Its
# rows adapt to aim at MERGE_CHUNK_S: 256 rows took ~3 ms on the 10k dataset, but 3-17 ms on the
# full one (100k timelines: each row lands on a page SQLite must first fetch).
MERGE_CHUNK_ROWS = 256
MERGE_CHUNK_MIN_ROWS = 16
MERGE_CHUNK_S = 0.002
# A cycle's chunks otherwise run back to back: with the WAL checkpoint that follows, a cycle took
# most of the core for a few hundred ms every 5 s, and requests queued behind it.
MERGE_PACE = 2.0
# ...and at MERGE_PACE alone a cycle of ~120k entries (1500 req/s, every 10 s) still packs its ~2 ms
# chunks into about 3 s, a third of the core, and slow requests clustered at those times.  A paced
# cycle is therefore also spread over half the merge interval (at most MERGE_SPREAD_MAX_S): each
# timeline is still merged once per cycle, so the entries a page rewrite carries stay the same.
MERGE_SPREAD_MAX_S = 5.0
# A longer window puts more entries into each timeline page a cycle rewrites: on the 10k dataset at
# 1500 req/s, cycles of ~120k entries cost ~9 us of CPU per entry against ~12 us for ~85k.  On the
# 100k-user dataset a cycle of 6000 posts cost 16.6-16.8 us per entry in-process against 25-30 us
# for 1500 (bench_write.py --merge-every), but a node merging every 40 s instead of 10 s spent the
# same CPU per request at 1500 req/s (8 alternated runs a side), so the time window stayed.
# The row trigger is what sets the window under a burst of posts: 131k rows are ~2200 posts on the
# full dataset (~60 pushed entries each), and a window of 24000 posts cost 13.8-17.6 against
# 34.9-38.9 us per merged entry for 1500 (alternated in one process).  So a cycle waits for 3x as
# many rows, and a burst is merged about every MERGE_AFTER_S instead.  Pending entries share their
# Entry objects across followers: ~60 bytes each (tracemalloc, 1.5M entries over 100k feeds), so
# MAX_PENDING bounds the tier near 64 MB (and what a start after a killed process loads back).
MERGE_ROWS = 393_216
MERGE_AFTER_S = 10.0
MAX_PENDING = 1_048_576
# A clean stop merges for at most this long and leaves the rest to the log, which the next start
# loads back in about a second: merging a full tier first (724k entries, cache not yet loaded) kept
# a stop waiting 50.5 s on the full dataset.
CLOSE_MERGE_S = 5.0
# A cycle's log records go in commits of their own after its entries, this many to a commit: each
# record holds a post's follower keys, and deleting a cycle's 1500 records (10 s at 1500 req/s) in
# one commit held the loop for ~10 ms on the 100k-user dataset.
FORGET_CHUNK_SEQS = 256
log = logging.getLogger("feeds.store")

Write = Callable[[Callable[[sqlite3.Connection], Any], int], Awaitable[Any]]


class WriteBehind:
    def __init__(
        self,
        write: Write,
        trims: TrimSchedule,
        *,
        merge_rows: int = MERGE_ROWS,
        merge_after_s: float = MERGE_AFTER_S,
        max_pending: int = MAX_PENDING,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.pending = PendingEntries()
        self._tick = tick  # the store's own housekeeping, run on the loop between cycles
        self._write = write
        self._trims = trims
        self._merge_rows, self._merge_after_s, self._max_pending = merge_rows, merge_after_s, max_pending
        # Pacing stops only when pending entries near the bound past which posts write directly;
        # a cycle that starts because merge_rows are pending is paced too (unpaced, its chunks
        # ran back to back for a second and the writes queued behind them).
        self._backlog = max(merge_rows, max_pending // 2)
        self._waiting = 0  # explicit (unpaced) merges waiting for or running a cycle
        self._chunk_rows = MERGE_CHUNK_ROWS
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.cycles = 0

    def accepts(self, entries: int) -> bool:
        """Whether a post may leave ``entries`` pushed entries pending (else it writes them)."""
        return self.pending.count + entries <= self._max_pending

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feeds-sqlite-merge")

    async def close(self) -> None:
        """Stop the cycles and merge what is still pending for up to ``CLOSE_MERGE_S`` (a clean
        stop with a normal backlog leaves no log; a larger one leaves the rest logged)."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            self._wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.merge(deadline=time.perf_counter() + CLOSE_MERGE_S)

    def logged(self, seq: int, pushes: Sequence[Push]) -> None:
        """A post's log record ``seq`` is committed: its pushes are pending from now on."""
        self.pending.add(seq, pushes)
        if self.pending.count >= self._merge_rows:
            self._wake.set()

    async def _run(self) -> None:
        tick = min(0.25, self._merge_after_s / 4)
        while not self._stopping:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the wake
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if self._tick is not None:
                self._tick()
            p = self.pending
            if p.count >= self._merge_rows or p.oldest_age() >= self._merge_after_s:
                try:
                    await self.merge(paced=True)
                except sqlite3.Error:  # entries and log stay as they were: the next tick retries
                    log.exception("merging pending timeline entries failed")

    async def merge(self, *, paced: bool = False, deadline: float | None = None) -> int:
        """One cycle over everything pending now; returns the entries written.  ``paced``: after
        each chunk, wait ``MERGE_PACE`` times as long as it took, unless a backlog has built up
        (half of ``max_pending``) or an unpaced merge is waiting for this one, so a cycle's work
        is spread out instead of taking the loop in one burst.  ``deadline`` (``perf_counter``): stop
        after the chunk that passes it, leaving the cycle's log records for a later cycle or start."""
        self._waiting += not paced
        try:
            return await self._merge(paced, deadline)
        finally:
            self._waiting -= not paced

    async def _merge(self, paced: bool, deadline: float | None) -> int:
        async with self._lock:
            p = self.pending
            seqs, feeds = p.seqs(), p.feeds()
            if not seqs and not feeds:
                return 0
            written, i = 0, 0
            began, spread, total = time.perf_counter(), self._spread_s(), max(1, p.count)
            encoded: dict[int, tuple[Any, ...]] = {}
            while True:
                i, rows, taken = p.take_rows(feeds, i, self._chunk_rows, encoded)
                last = i >= len(feeds)
                due = [(feed, cap) for feed, ids, cap in taken if self._trims.due([feed], len(ids))]
                began_chunk = await self._write(_started(_chunk_op(rows, due)), max(1, len(rows)))
                took = time.perf_counter() - began_chunk  # from the chunk's first statement to here
                self._fit_chunk(len(rows), took)
                if paced and not last:
                    on_time = began + spread * min(1.0, (written + len(rows)) / total)
                    await self._pace(took, on_time)
                p.drop_merged(taken)
                written += len(rows)
                if last:
                    break
                if deadline is not None and time.perf_counter() >= deadline:
                    # the records stay: loaded again, what this cycle wrote comes back as twins
                    log.info("stopped merging with %d entries pending; they stay logged", p.count)
                    return written
            await self._forget(seqs, paced)
            self.cycles += 1
            return written

    async def _forget(self, seqs: list[int], paced: bool) -> None:
        """Delete the cycle's log records, now that every entry they hold is merged.  A crash
        between two of these commits leaves records whose entries are all written: loaded again,
        they come back as pending twins of stored entries, which reads leave out and merges skip
        (INSERT OR IGNORE); the drops that keep removed entries from coming back are deleted only
        with the last of them."""
        p = self.pending
        for at in range(0, max(1, len(seqs)), FORGET_CHUNK_SEQS):
            piece = seqs[at : at + FORGET_CHUNK_SEQS]
            last = at + FORGET_CHUNK_SEQS >= len(seqs)
            floor = p.floor_without(seqs) if last else None
            began_piece = await self._write(
                _started(partial(forget_log, seqs=piece, floor=floor, drops=last)), 1
            )
            p.forget_seqs(piece)
            if paced and not last:
                await self._pace(time.perf_counter() - began_piece, 0.0)

    async def _pace(self, took: float, on_time: float) -> None:
        if not self._hurried():
            await asyncio.sleep(max(took * MERGE_PACE, on_time - time.perf_counter()))

    def _spread_s(self) -> float:
        return min(MERGE_SPREAD_MAX_S, self._merge_after_s / 2)

    def _fit_chunk(self, rows: int, took: float) -> None:
        if rows >= self._chunk_rows // 2 and took > 0:  # a short last chunk says little
            fitted = int(rows * MERGE_CHUNK_S / took)
            self._chunk_rows = max(
                MERGE_CHUNK_MIN_ROWS, min(MERGE_CHUNK_ROWS, (self._chunk_rows + fitted) // 2)
            )

    def _hurried(self) -> bool:
        return self._stopping or self._waiting > 0 or self.pending.count >= self._backlog


def _chunk_op(
    rows: list[tuple[Any, ...]], due: list[tuple[str, int]]
) -> Callable[[sqlite3.Connection], None]:
    def op(conn: sqlite3.Connection) -> None:
        insert_entry_rows(conn, rows)
        trim_feeds(conn, due)

    return op


def _started(work: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], float]:
    """``work`` as a write whose result is when it began: pacing counts a write's own time, not
    the time it waited in the commit queue."""

    def op(conn: sqlite3.Connection) -> float:
        began = time.perf_counter()
        work(conn)
        return began

    return op
