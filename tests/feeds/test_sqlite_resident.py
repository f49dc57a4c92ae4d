"""SQLite: a mapped store's files stay locked in memory (feeds.store.sqlite_resident), and its side
threads give way to the event loop (feeds.store.side_thread)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.sqlite_store import node_store, running

from feeds.store.base import Entry
from feeds.store.side_thread import LOWEST, yield_to_loop
from feeds.store.sqlite import SqliteStore
from feeds.store.sqlite_resident import PAGE, LockedFile, Resident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mlock and SCHED_IDLE as Linux has them")


def locked_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck line")


def a_file(path: Path, pages: int) -> Path:
    path.write_bytes(os.urandom(pages * PAGE))
    return path


def test_a_file_is_locked_from_its_start_as_it_grows_and_released(tmp_path: Path) -> None:
    path = a_file(tmp_path / "f", 64)
    before = locked_kib()
    f = LockedFile(str(path))
    try:
        f.lock_to(10 * PAGE + 100)  # a partial page is not locked: it would reach past the end
        assert (f.locked, locked_kib() - before) == (10 * PAGE, 10 * PAGE // 1024)
        f.lock_to(5 * PAGE)  # already locked
        f.lock_to(64 * PAGE)
        assert (f.locked, len(f.regions), locked_kib() - before) == (64 * PAGE, 2, 64 * PAGE // 1024)
    finally:
        f.release()
    assert (f.locked, f.fd, locked_kib()) == (0, -1, before)


def stat(path: Path) -> os.stat_result | None:
    return path.stat() if path.exists() else None


def test_a_replaced_or_shortened_file_is_noticed(tmp_path: Path) -> None:
    path = a_file(tmp_path / "f", 8)
    f = LockedFile(str(path))
    try:
        f.lock_to(8 * PAGE)
        assert not f.replaced(stat(path))
        os.truncate(path, 4 * PAGE)
        assert f.replaced(stat(path))
        f.release()
        f.lock_to(4 * PAGE)
        path.unlink()
        assert f.replaced(stat(path))
        a_file(path, 8)  # another inode under the same name
        assert f.replaced(stat(path))
    finally:
        f.release()


def test_resident_follows_the_database_while_wanted_and_the_wal_up_to_its_cap(tmp_path: Path) -> None:
    db, wal = a_file(tmp_path / "s.db", 16), a_file(tmp_path / "s.db-wal", 40)
    resident = Resident(str(db), wal_cap=32 * PAGE)
    before = locked_kib()
    try:
        resident.step()  # the database is not mapped (not wanted): only the WAL is locked
        assert resident.locked_bytes == 32 * PAGE
        resident.wanted = True
        resident.step()
        assert resident.locked_bytes == 48 * PAGE
        with db.open("ab") as fh:
            fh.write(os.urandom(8 * PAGE))
        resident.step()
        assert resident.locked_bytes == 56 * PAGE
        assert locked_kib() - before == 56 * PAGE // 1024
        resident.wanted = False  # the store outgrew the map: its own cache holds what it reads
        resident.step()
        assert resident.locked_bytes == 32 * PAGE
        wal.unlink()
        resident.step()
        assert resident.locked_bytes == 0
    finally:
        for f in resident._files:
            f.release()
    assert locked_kib() == before


async def test_a_store_locks_its_mapped_files_and_releases_them_when_closed(tmp_path: Path) -> None:
    before = locked_kib()
    store = SqliteStore(str(tmp_path / "f.db"), merge_after_s=0.02)
    async with running(store):
        feeds = [f"a/user:{i}" for i in range(300)]
        await store.add_entries(feeds, [Entry(i) for i in range(1, 11)], cap=100)
        await store.merge_pending()
        assert store._residency.resident is not None
        store._residency.resident.step()  # the side thread does this every second
        db = (tmp_path / "f.db").stat().st_size
        assert store._residency.resident.locked_bytes >= db - PAGE
        assert locked_kib() - before >= (db - PAGE) // 1024
        assert store._read("PRAGMA temp_store") == [(2,)]  # memory: no temp files on the loop
    assert locked_kib() == before
    assert not (tmp_path / "f.db-wal").exists()  # nothing held the WAL open past the last close


async def test_a_store_can_be_told_not_to_lock(tmp_path: Path) -> None:
    before = locked_kib()
    store = SqliteStore(str(tmp_path / "f.db"), lock_pages=False)
    async with running(store):
        await store.add_entries(["a/user:1"], [Entry(1)], cap=10)
        assert store._residency.resident is None and locked_kib() == before


REFUSED = """
import asyncio, resource, sys
from feeds.store.base import Entry
from feeds.store.sqlite import SqliteStore
resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
async def main():
    store = SqliteStore(sys.argv[1])
    await store.start()
    try:
        await store.add_entries(["a/user:1"], [Entry(1)], cap=10)
        store._residency.resident.step()
        assert (await store.read_entries("a/user:1", limit=5))[0].id == 1
        print(store._residency.resident.refused is not None, store._residency.resident.locked_bytes)
    finally:
        await store.close()
asyncio.run(main())
"""


def test_a_store_that_may_not_lock_memory_works_unlocked(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", REFUSED, str(tmp_path / "f.db")]
    if os.geteuid() == 0:  # root locks past the limit unless the capability is dropped
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed")
        cmd = ["setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "0"]


def test_a_side_thread_yields_the_core_to_the_loop() -> None:
    seen: list[tuple[bool, int]] = []

    def side() -> None:
        seen.append((yield_to_loop(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=side)
    thread.start()
    thread.join()
    assert seen == [(True, LOWEST)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # only that thread


@pytest.mark.parametrize(("value", "locks"), [(None, True), ("false", False)])
def test_the_node_setting_reaches_the_store(tmp_path: Path, value: str | None, locks: bool) -> None:
    store = node_store(tmp_path / "f.db", **({} if value is None else {"REALTIME_FEEDS_LOCK_PAGES": value}))
    assert (store._residency.resident is not None) is locks


async def test_the_locking_thread_runs_at_the_lowest_priority_and_the_checkpointer_does_not(
    tmp_path: Path,
) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    want = {"feeds-sqlite-checkpoint": mine, "feeds-sqlite-resident": LOWEST}
    store = SqliteStore(str(tmp_path / "f.db"))
    async with running(store):
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # a thread lowers itself first thing, but it may not have run yet
            ids = {t.name: t.native_id for t in threading.enumerate() if t.name in want}
            nice = {name: os.getpriority(os.PRIO_PROCESS, tid) for name, tid in ids.items() if tid}
            if nice == want:
                break
            assert asyncio.get_running_loop().time() < deadline, nice
            await asyncio.sleep(0.01)
