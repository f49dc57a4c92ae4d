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
WAL over, and ``journal_size_limit`` (:func:`wal_keep_bytes`) bounds the file.  Reads go on
meanwhile; only writes wait, for one short checkpoint and its fsyncs.  Before holding, the keeper
syncs the database file itself: SQLite syncs it only in a pass that reaches the last commit, the
held one, which otherwise synced all that earlier passes had copied (holds of 66-95 ms at 1500
req/s on the full benchmark dataset, 0.2-6.8 ms with the sync done first).

The keeper alone cannot bound the WAL when the disk is slower than the loop's writes: commits
without fsync go as fast as the page cache takes them, and a pass whose fsyncs take 300 ms lets the
loop write tens of MB meanwhile (the bound test reached 86 MB against a limit of 256 KiB on a VM
whose passes took that long).  So the loop also waits before a commit group while the WAL holds
more than ``limit_frames`` frames that no checkpoint has copied back yet (:meth:`WalKeeper.behind`,
read from the WAL index's header in the ``-shm`` file), for at most ``HOLD_TIMEOUT_S`` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable

from feeds.store.side_thread import SideThread

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 0.5
WAL_LIMIT_FRAMES = 32_768  # 128 MiB of 4 KiB pages
HOLD_TIMEOUT_S = 5.0
CATCH_UP_PASSES = 8
CATCH_UP_FRAMES = 256  # a tail this short is copied in a few ms while commits wait
SYNC_ROUNDS = 3
SHORT_SYNC_S = 0.005


def wal_keep_bytes(limit_frames: int) -> int:
    """How much of the WAL file is kept (``journal_size_limit``) and locked in memory
    (:mod:`feeds.store.sqlite_resident`): twice the limit, so that what commits add while a hold is
    late stays locked, and the loop, which starts the WAL over, need not truncate it (each cut frees
    blocks: ~25 ms in ``ftruncate`` on a file system mounted with ``discard``)."""
    return 2 * limit_frames * 4096


class CheckpointLag:
    """How many WAL frames no checkpoint has copied back yet, from the WAL index header that
    SQLite's unix VFS keeps at the start of the ``-shm`` file: ``mxFrame`` (a u32 at byte 16 of the
    first of the two 48-byte header copies) minus ``nBackfill`` (the u32 that follows them), in the
    host's byte order.  ``pread``, not a map: SQLite truncates the file at its last close."""

    HEADER_BYTES = 136

    def __init__(self, db_path: str) -> None:
        self._path = db_path + "-shm"
        self._fd = -1

    def frames(self) -> int:
        if self._fd < 0:
            try:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return 0
        head = os.pread(self._fd, self.HEADER_BYTES, 0)
        if len(head) < self.HEADER_BYTES:
            return 0
        (last,) = struct.unpack_from("=I", head, 16)
        (copied,) = struct.unpack_from("=I", head, 96)
        return max(0, int(last) - int(copied))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class WalKeeper(SideThread):
    def __init__(
        self,
        db_path: str,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        resume: Callable[[], None],
        *,
        limit_frames: int = WAL_LIMIT_FRAMES,
        every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        super().__init__("feeds-sqlite-checkpoint", lowest=False)  # see side_thread
        self._connect = connect
        self._loop = loop
        self._resume = resume
        self.limit_frames = limit_frames
        self._every_s = every_s
        self._held = threading.Event()
        self.holding = False  # read on the loop: commits wait while True
        self.restarts = 0
        self._db_path = db_path
        self._lag = CheckpointLag(db_path)  # read on the loop
        self._thread_lag = CheckpointLag(db_path)  # read on the keeper's thread
        self._db_fd = -1
        self._behind_since: float | None = None
        self._warned = False

    def behind(self) -> bool:
        """On the loop, before a commit group: whether to wait because checkpoints are more than
        ``limit_frames`` behind.  A checkpointer that stays behind for ``HOLD_TIMEOUT_S`` stops
        holding writes back (logged): the bound gives way before the writes do."""
        lag = self._lag.frames()
        if lag <= self.limit_frames:
            self._behind_since, self._warned = None, False
            return False
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
        if now - self._behind_since <= HOLD_TIMEOUT_S:
            return True
        if not self._warned:  # once per stretch behind
            self._warned = True
            log.warning("WAL checkpoints %d frames behind for %.0f s: commits go on", lag, HOLD_TIMEOUT_S)
        return False

    def close_files(self) -> None:
        """After the store's last connection has closed: closing a descriptor of the database or
        its ``-shm`` drops every POSIX lock this process holds on that file, SQLite's included."""
        self._lag.close()
        self._thread_lag.close()
        if self._db_fd >= 0:
            os.close(self._db_fd)
            self._db_fd = -1

    def run(self) -> None:
        """Until stopped; the last checkpoint runs before it returns."""
        conn = self._connect()
        try:
            while not self.stopping.wait(self._every_s):
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
        # Catch up and sync the database file before holding, so the held pass copies and syncs
        # only a short tail (see the module's docstring).  Frames keep coming during a sync, and
        # the passes that copy them do not sync, so it is repeated until one finds little to write.
        for _ in range(SYNC_ROUNDS):
            self._catch_up(conn)
            began = time.perf_counter()
            self._sync_db()
            if time.perf_counter() - began <= SHORT_SYNC_S:
                break
        self._catch_up(conn)
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

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Passes until what is left once a pass is done (read from the WAL index) is a short tail."""
        for _ in range(CATCH_UP_PASSES):
            if self._thread_lag.frames() <= CATCH_UP_FRAMES:
                return
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _sync_db(self) -> None:
        """``fdatasync`` the database file through a descriptor of our own (kept open until
        :meth:`close_files`): the pages passes copied reach the disk outside any hold."""
        if self._db_fd < 0:
            self._db_fd = os.open(self._db_path, os.O_RDONLY | os.O_CLOEXEC)
        os.fdatasync(self._db_fd)
