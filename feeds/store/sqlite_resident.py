"""Keeping a memory-mapped store's files in memory, so the loop never waits for the disk.

A store under 1 GiB is read through a memory map (:mod:`feeds.store.sqlite_cache`), so its pages
live in the OS page cache, and the WAL always does.  Some hosts take back page-cache pages that
were not touched for a few seconds (seen here: the kernel's DAMON pageout dropped a 209 MB file to
1 % resident within 50 s, with 23 GB free).  The event loop then waits for the disk twice over:

* a read through the map faults on an evicted page (seen: 35 ms in ``filemap_fault``);
* a WAL frame is a page plus 24 bytes, so every commit's last write ends partway into a page.  If
  that page of the old WAL was evicted, the kernel reads it back before the write (seen: a 286 ms
  group commit in ``ext4_block_write_begin`` with the core idle in iowait, and every request of
  the next half second behind it).

:class:`Resident` maps both files from a side thread and ``mlock``\\ s them: pages that are locked
in a mapping stay in memory whoever else maps the file.  It follows the files as they grow (the WAL
up to the size SQLite truncates it back to, so that prefix is never cut).  SQLite truncates it in
the commit that starts the WAL over, with that connection's ``journal_size_limit``: the loop's.
Set only on the checkpointer's connection, the WAL kept the size it had reached, and the loop
rewrote the unlocked part past the locked prefix in place (seen on the full benchmark dataset:
245-266 ms group commits in ``ext4_block_write_begin``, twice a minute at 1500 req/s).  Locked
memory is the map's whole point here: a store under 1 GiB plus twice its WAL limit.  Where locking is
not allowed (``RLIMIT_MEMLOCK`` without ``CAP_IPC_LOCK``) the store works as before, and says so
once in the log.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
from dataclasses import dataclass, field

from feeds.store.side_thread import SideThread

log = logging.getLogger(__name__)
PAGE = mmap.PAGESIZE
EVERY_S = 1.0

# The process's own symbols, which include the C library's: no library name to find (find_library
# needs ldconfig or a compiler, which slim images lack)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


@dataclass
class LockedFile:
    """One file's locked mappings: consecutive regions from offset 0, so a file that grows costs
    only its new pages."""

    path: str
    fd: int = -1
    inode: int = 0
    regions: list[tuple[int, int]] = field(default_factory=list)  # (address, length)
    locked: int = 0  # bytes from the start of the file

    def lock_to(self, length: int) -> None:
        """Lock the file's first ``length`` bytes (rounded down to a page); raises OSError."""
        length -= length % PAGE
        if length <= self.locked:
            return
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self.inode = os.fstat(self.fd).st_ino
        size = length - self.locked
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, self.fd, self.locked)
        if addr is None or addr == _MAP_FAILED:
            raise _errno_error("mmap")
        if _libc.mlock(addr, size) != 0:
            err = _errno_error("mlock")
            _libc.munmap(addr, size)
            raise err
        self.regions.append((addr, size))
        self.locked = length

    def replaced(self, st: os.stat_result | None) -> bool:
        """Whether the path (``st``, None when it names nothing) is now another file, or a shorter
        one than is locked."""
        if self.fd < 0:
            return False
        return st is None or st.st_ino != self.inode or st.st_size < self.locked

    def release(self) -> None:
        for addr, size in self.regions:
            _libc.munmap(addr, size)  # unmapping unlocks
        self.regions.clear()
        self.locked = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Resident(SideThread):
    """Locks the database file (while ``wanted``) and its WAL's first ``wal_cap`` bytes.  Its
    thread runs at the lowest priority: populating a lock reads the file."""

    def __init__(self, path: str, wal_cap: int, *, every_s: float = EVERY_S) -> None:
        super().__init__("feeds-sqlite-resident", lowest=True)
        self._files = (LockedFile(path), LockedFile(path + "-wal"))
        self._caps = (None, wal_cap)
        self._every_s = every_s
        self.wanted = False  # set on the loop from the store's cache plan: only a mapped store
        self.refused: str | None = None  # why locking was given up, once it was

    @property
    def locked_bytes(self) -> int:
        return sum(f.locked for f in self._files)

    def run(self) -> None:
        try:  # every lock is released when the thread ends
            while True:
                self.step()
                if self.refused is not None or self.stopping.wait(self._every_s):
                    break
        finally:
            for f in self._files:
                f.release()

    def step(self) -> None:
        """One pass: follow the files' sizes.  Runs on the side thread (tests call it directly)."""
        for f, cap, wanted in zip(self._files, self._caps, (self.wanted, True), strict=True):
            try:
                st: os.stat_result | None = os.stat(f.path)
            except FileNotFoundError:
                st = None
            if not wanted or f.replaced(st):
                f.release()
            if not wanted or st is None:
                continue
            try:
                f.lock_to(st.st_size if cap is None else min(st.st_size, cap))
            except FileNotFoundError:  # gone between the stat and the open
                continue
            except OSError as exc:
                self.refused = str(exc)
                log.info("the store's pages are not locked in memory (%s): reads may wait for the disk", exc)
                return


def _errno_error(call: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{call}: {os.strerror(errno)}")
