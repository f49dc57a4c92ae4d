"""Keeping the embedded store's WAL small while the loop writes continuously.

SQLite starts its WAL over only when a writer begins after a checkpoint has copied *every* frame
back.  Under sustained writes a checkpoint in another thread never quite catches up with the last
commit, so the WAL is never restarted: it grew to gigabytes in a ten-minute load, and every page
lookup and commit slowed down with it (the WAL index is searched per page).

:class:`WalKeeper` runs the checkpoints from a side thread (copying and fsync stay off the loop) and
bounds the WAL: once it holds more than ``limit_frames`` frames, the keeper catches up with a few
more passes, then asks the loop to hold new commits, waits until the loop confirms (a commit group
runs in one loop callback, so a callback that runs after the request means none is in progress),
checkpoints the now-still tail, and lets the commits go.  The first commit after that starts the
WAL over, and ``journal_size_limit`` truncates the file.  Reads go on meanwhile; only writes wait,
for one short checkpoint and its fsyncs (0-86 ms measured here at 100 posts/s; 160-200 ms before
the catch-up passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

from feeds.store.thread_priority import yield_to_loop

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 0.5
WAL_LIMIT_FRAMES = 32_768  # 128 MiB of 4 KiB pages
HOLD_TIMEOUT_S = 5.0
CATCH_UP_PASSES = 8
CATCH_UP_FRAMES = 256  # a tail this short is copied in a few ms while commits wait


class WalKeeper:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        resume: Callable[[], None],
        *,
        limit_frames: int = WAL_LIMIT_FRAMES,
        every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self._connect = connect
        self._loop = loop
        self._resume = resume
        self.limit_frames = limit_frames
        self._every_s = every_s
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread: threading.Thread | None = None
        self.holding = False  # read on the loop: commits wait while True
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="feeds-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Blocking: the last checkpoint runs before it returns (call it off the loop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _main(self) -> None:
        yield_to_loop()
        conn = self._connect()
        conn.execute(f"PRAGMA journal_size_limit={self.limit_frames * 4096}")
        try:
            while not self._stop.wait(self._every_s):
                self._pass(conn)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # thread boundary: the store keeps working, the WAL just grows
            log.exception("WAL checkpoint failed")
        finally:
            conn.close()

    def _pass(self, conn: sqlite3.Connection) -> None:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames <= self.limit_frames:
            return
        # Catch up without holding first: each pass copies what arrived during the previous one,
        # so the held pass below only copies a short tail (holds measured 160-200 ms without this).
        for _ in range(CATCH_UP_PASSES):
            _, now, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if now - frames <= CATCH_UP_FRAMES:
                break
            frames = now
        self._held.clear()
        self.holding = True
        try:
            with contextlib.suppress(RuntimeError):  # a closed loop has nothing left to hold
                self._loop.call_soon_threadsafe(self._held.set)
            if self._held.wait(HOLD_TIMEOUT_S):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # nothing commits now: copies all
                self.restarts += 1
        finally:
            self.holding = False
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._resume)
