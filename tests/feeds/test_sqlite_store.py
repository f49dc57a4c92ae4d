"""SQLite-only behaviour: durability across a clean restart and a killed process, group commit."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import sys
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Literal

import pytest
from helpers.sqlite_store import running

from feeds.activity import Activity
from feeds.store import sqlite_follows, sqlite_sql
from feeds.store.base import Entry, Follow
from feeds.store.sqlite import SqliteStore
from realtime.feeds_bridge import build_store
from realtime.settings import load_settings


async def test_survives_clean_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    store = SqliteStore(path)
    await store.start()
    await store.put_activities("a", [Activity(actor="u", verb="v", object="o", time_us=1, id=42)])
    await store.add_entries(["a/user:1"], [Entry(42)], cap=10)
    await store.close()
    again = SqliteStore(path)
    await again.start()
    try:
        assert [e.id for e in await again.read_entries("a/user:1", limit=5)] == [42]
        assert 42 in await again.get_activities("a", [42])
    finally:
        await again.close()


async def test_acknowledged_writes_survive_a_killed_process(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from feeds.store.base import Entry
        from feeds.store.sqlite import SqliteStore

        async def main():
            store = SqliteStore({path!r})
            await store.start()
            await asyncio.gather(*(store.add_entries(["f"], [Entry(i)], cap=1000) for i in range(1, 201)))
            os._exit(9)  # no close(): the writer thread and connections die with the process

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(proc.wait(), 30) == 9
    store = SqliteStore(path)
    await store.start()
    try:
        assert len(await store.read_entries("f", limit=1000)) == 200
    finally:
        await store.close()


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_concurrent_writes_share_commits(tmp_path: Path, durability: Literal["normal", "full"]) -> None:
    store = SqliteStore(str(tmp_path / "f.db"), durability=durability)
    await store.start()
    commits = 0
    original = store._commits._run_batch

    def counting(conn, batch):  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1
        return original(conn, batch)

    store._commits._run_batch = counting  # type: ignore[method-assign]
    try:
        writes = asyncio.gather(*(store.add_entries(["f"], [Entry(i)], cap=1000) for i in range(1, 301)))
        await asyncio.wait_for(writes, 30)
        assert len(await store.read_entries("f", limit=1000)) == 300
        assert commits < 300  # group commit: many writes per transaction
    finally:
        await store.close()


def _insert(ident: int) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO entries(feed, id, group_key, tags, seen, read) VALUES ('f', ?, '', '[]', 0, 0)",
            (ident,),
        )
        return ident

    return op


def _rolled_back_by_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")  # what SQLite itself does on some errors (a full disk, an I/O error)
    raise sqlite3.OperationalError("disk I/O error")


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_a_group_rolled_back_under_it_fails_its_writes_and_the_store_goes_on(
    tmp_path: Path, durability: Literal["normal", "full"]
) -> None:
    async with running(SqliteStore(str(tmp_path / "f.db"), durability=durability)) as store:
        ops = [_insert(1), _rolled_back_by_sqlite, _insert(3)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(store._commits.write(op) for op in ops), return_exceptions=True), 10
        )
        assert isinstance(outcomes[1], sqlite3.OperationalError)
        reported = {o for o in outcomes if isinstance(o, int)}
        stored = {e.id for e in await store.read_entries("f", limit=10)}
        assert stored == reported  # what a writer was told is what the file holds
        assert await asyncio.wait_for(store._commits.write(_insert(4)), 10) == 4
        assert 4 in {e.id for e in await store.read_entries("f", limit=10)}


def _alone(ids: list[int], *, fail: bool) -> Callable[[sqlite3.Connection], list[int]]:
    def op(conn: sqlite3.Connection) -> list[int]:
        assert conn.in_transaction
        with pytest.raises(sqlite3.OperationalError, match="no such savepoint"):
            conn.execute("RELEASE op")  # a write that goes alone runs without a SAVEPOINT
        for ident in ids:
            _insert(ident)(conn)
        if fail:
            raise ValueError("refused after writing")
        return ids

    return op


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_a_write_that_goes_alone_is_its_own_transaction(
    tmp_path: Path, durability: Literal["normal", "full"]
) -> None:
    async with running(SqliteStore(str(tmp_path / "f.db"), durability=durability)) as store:
        batches: list[list[int]] = []
        original = store._commits._run_batch

        def recording(conn, batch):  # type: ignore[no-untyped-def]
            batches.append([rows for _, _, rows in batch])
            return original(conn, batch)

        store._commits._run_batch = recording  # type: ignore[method-assign]
        write = store._commits.write
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                write(_insert(1)),
                write(_alone([2, 3], fail=True), 2, alone=True),
                write(_insert(4)),
                write(_alone([5], fail=False), 1, alone=True),
                write(_insert(6)),
                return_exceptions=True,
            ),
            10,
        )
        assert outcomes[0] == 1 and outcomes[2:] == [4, [5], 6]
        assert isinstance(outcomes[1], ValueError)
        assert {e.id for e in await store.read_entries("f", limit=10)} == {1, 4, 5, 6}  # 2, 3 rolled back
        alone = [b for b in batches if any(rows < 0 for rows in b)]
        assert alone == [[-2], [-1]]  # nothing else shared their transactions


async def test_a_lock_held_elsewhere_fails_writes_instead_of_hanging_them(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path)) as store:
        store._read("PRAGMA busy_timeout=50")  # reads and the loop-side group share one connection
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await asyncio.wait_for(store._commits.write(_insert(1)), 10)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await asyncio.wait_for(store._commits.write(_insert(2)), 10) == 2


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


async def test_wal_stays_bounded_under_continuous_writes_and_reads_go_on(tmp_path: Path) -> None:
    """Without the WAL keeper a passive checkpoint never catches the last commit under continuous
    writes, so SQLite never starts the WAL over and the file grows with everything written."""
    path = tmp_path / "f.db"
    store = SqliteStore(str(path), wal_limit_frames=64, checkpoint_every_s=0.02)
    await store.start()
    wal = f"{path}-wal"
    biggest, written, reads = 0, 0, 0
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        n = 0
        while loop.time() < deadline:
            # 40 concurrent writes of 50 feeds each: many dirty pages per commit group
            feeds = [f"a/timeline:{(n * 7919 + i) % 5000}" for i in range(50)]
            await asyncio.gather(
                *(store.add_entries(feeds[k::5], [Entry(n * 100 + k)], cap=1000) for k in range(40))
            )
            assert await store.read_entries(feeds[0], limit=1)  # reads see what was acknowledged
            reads += 1
            written += sum(len(feeds[k::5]) for k in range(40))
            n += 1
            biggest = max(biggest, _size(wal))
        assert store.wal_restarts >= 1
        total_entries = 0
        for i in range(5000):
            total_entries += len(await store.read_entries(f"a/timeline:{i}", limit=1000))
        assert total_entries == written  # nothing lost while commits were held
    finally:
        await store.close()
    # bound: the limit plus what commit groups add while checkpoints catch up (0.54-0.67 MB in 8
    # runs here); without the keeper the WAL held every page written (tens of MB), and with the
    # keeper but no commits held back while checkpoints lag, 1.2-86 MB on a VM with slow fsyncs
    assert biggest < 4 * 1024 * 1024, biggest
    assert not [f for f in _open_files() if f.startswith(str(path))]  # the keeper's included


def _open_files() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


async def test_the_keeper_syncs_what_it_copied_before_it_holds_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass that starts the WAL over runs while commits wait, and SQLite syncs the database
    file in it: everything earlier passes copied must already be on disk, or the wait is that sync."""
    path = tmp_path / "f.db"
    store = SqliteStore(str(path), wal_limit_frames=64, checkpoint_every_s=0.02)
    await store.start()
    keeper = store._commits._wal
    assert keeper is not None
    holding_at_sync: list[bool] = []
    real_sync = os.fdatasync

    def fdatasync(fd: int) -> None:  # SQLite syncs in C: only the keeper's own sync comes here
        holding_at_sync.append(keeper.holding)
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    try:
        loop = asyncio.get_running_loop()
        deadline, n = loop.time() + 10.0, 0
        while store.wal_restarts < 2 and loop.time() < deadline:
            feeds = [f"a/timeline:{(n * 7919 + i) % 5000}" for i in range(50)]
            await asyncio.gather(
                *(store.add_entries(feeds[k::5], [Entry(n * 100 + k)], cap=1000) for k in range(40))
            )
            n += 1
        assert store.wal_restarts >= 2
    finally:
        await store.close()
    assert len(holding_at_sync) >= 2 and not any(holding_at_sync)


async def test_the_commit_that_starts_the_wal_over_cuts_it_back_to_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the limit the WAL is not locked in memory: a file left longer would be rewritten there
    in place, and a page the kernel evicted would be read back from disk inside a loop commit."""
    from feeds.store import sqlite_wal

    monkeypatch.setattr(sqlite_wal, "HOLD_TIMEOUT_S", 0.0)  # no keeper here: commits need not wait for it
    path = tmp_path / "f.db"
    store = SqliteStore(str(path), wal_limit_frames=16, checkpoint_every_s=3600)  # no keeper passes
    await store.start()
    wal = f"{path}-wal"
    try:
        for n in range(1, 200):
            await store._commits.write(_insert(n))
        assert _size(wal) > 4 * 16 * 4096  # past what is kept, twice the limit
        with closing(sqlite3.connect(path)) as other:  # copies every frame back: the next commit restarts
            assert other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
        await store._commits.write(_insert(200))
        assert _size(wal) <= 2 * 16 * 4096
    finally:
        await store.close()


async def test_commit_groups_are_bounded_by_rows_so_the_loop_runs_between_them(tmp_path: Path) -> None:
    from feeds.store.sqlite_commit import FLUSH_ROWS

    store = SqliteStore(str(tmp_path / "f.db"))
    await store.start()
    try:
        feeds = [f"a/timeline:{i}" for i in range(FLUSH_ROWS * 3 // 4)]
        writes = [asyncio.ensure_future(store.add_entries(feeds, [Entry(k)], cap=100)) for k in range(1, 11)]
        progress = []
        while not all(w.done() for w in writes):
            await asyncio.sleep(0)
            progress.append(sum(w.done() for w in writes))
        assert len(set(progress)) >= 9  # one write per group: the loop ran between every two groups
        assert [e.id for e in await store.read_entries(feeds[-1], limit=20)] == list(range(10, 0, -1))
    finally:
        await store.close()


async def test_body_cache_serves_reads_and_never_a_replaced_body(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "f.db"))
    await store.start()
    try:
        first = Activity(actor="u", verb="v", object="o", time_us=1, id=42)
        await store.put_activities("a", [first])
        assert Activity.loads((await store.get_bodies("a", [42, 43]))[42]) == first
        assert len(store._bodies) == 1 and (await store.get_bodies("b", [42])) == {}  # apps apart
        changed = Activity(actor="u", verb="edited", object="o", time_us=1, id=42)
        await store.replace_activities("a", [changed])
        assert Activity.loads((await store.get_bodies("a", [42]))[42]) == changed
    finally:
        await store.close()


def test_body_cache_is_bounded_by_bytes() -> None:
    from feeds.store.body_cache import BodyCache

    cache = BodyCache(max_bytes=64 * 100)
    cache.add("a", {i: b"x" * 50 for i in range(200)})  # 10,000 bytes: over the bound
    assert cache._bytes <= 64 * 100 * 3 // 4 and len(cache) < 200
    found, missing = cache.split("a", [0, 199])
    assert list(found) == [199] and missing == [0]  # the oldest went first
    cache.add("a", {500: b"y" * 200})  # bigger than a 64th of the bound: not kept
    assert cache.split("a", [500]) == ({}, [500])
    cache.forget("a", [199])
    assert cache.split("a", [199]) == ({}, [199])
    cache.add("b", {1: b"z" * 50})
    assert cache.split("b", [1]) == ({1: b"z" * 50}, []) and cache.split("c", [1]) == ({}, [1])
    cache.add("b", {i: b"z" * 50 for i in range(2, 120)})  # "b" now holds the most: it gives way
    assert cache._bytes <= 64 * 100 and cache.split("a", [198])[0]


async def test_page_cache_bound_comes_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        env={"REALTIME_FEEDS_STORE": f"sqlite:{tmp_path / 'f.db'}", "REALTIME_FEEDS_CACHE_MB": "3"}
    )
    built = build_store(settings)
    assert isinstance(built, SqliteStore)
    async with running(built) as store:
        assert store._read("PRAGMA cache_size") == [(-3 * 1024,)]  # negative: KiB, not pages


async def test_read_plans_are_memoized_share_their_keys_and_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_follows, "PLANS", 2)
    async with running(SqliteStore(str(tmp_path / "f.db"))) as store:
        await store.follow([Follow("t:1", "u:a", 1), Follow("t:2", "u:a", 2)])
        assert store._reader is not None
        planned: list[str] = []
        store._reader.set_trace_callback(lambda sql: planned.append(sql) if "group_concat" in sql else None)
        first = await store.read_plan("t:1", 0)
        assert await store.read_plan("t:1", 0) == first and len(planned) == 1
        # memos are plain tuples, which the collector stops walking (a collection untracks a tuple
        # once its items are untracked: the inner tuple first, the memo at the next at the latest)
        gc.collect()
        gc.collect()
        assert not gc.is_tracked(store._plans["t:1"])
        other = await store.read_plan("t:2", 0)
        assert other.pulled[0] is first.pulled[0]  # one string per pulled key, whatever the plan
        await store.read_plan("t:3", 0)  # a third plan: the memo is full, so it starts again
        await store.read_plan("t:1", 0)
        assert len(planned) == 4 and len(store._plans) <= 2


def test_checkpoint_lag_is_read_from_the_wal_index(tmp_path: Path) -> None:
    """CheckpointLag reads SQLite's own shm header: it must agree with what SQLite reports."""
    from contextlib import closing

    from feeds.store.sqlite_wal import CheckpointLag

    path = str(tmp_path / "f.db")
    lag = CheckpointLag(path)
    assert lag.frames() == 0  # no -shm file yet
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t(x)")
        for i in range(20):
            conn.execute("INSERT INTO t VALUES (?)", (str(i) * 2000,))
        written = lag.frames()
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            _, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert written == frames > 20 and copied == frames
        assert lag.frames() == 0  # all copied back
        conn.execute("INSERT INTO t VALUES ('x')")  # the WAL starts over: one commit's frames
        assert 0 < lag.frames() < 5
        lag.close()


def test_commits_wait_for_lagging_checkpoints_but_not_past_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import struct
    import time

    from feeds.store import sqlite_wal

    def index(last: int, copied: int) -> None:  # a WAL index header as SQLite lays it out
        head = bytearray(136)
        struct.pack_into("=I", head, 16, last)
        struct.pack_into("=I", head, 96, copied)
        (tmp_path / "f.db-shm").write_bytes(bytes(head))

    monkeypatch.setattr(sqlite_wal, "HOLD_TIMEOUT_S", 0.05)
    keeper = sqlite_wal.WalKeeper(
        str(tmp_path / "f.db"), lambda: sqlite3.connect(":memory:"), None, lambda: None, limit_frames=100
    )  # type: ignore[arg-type]  # no loop: behind() never touches it
    index(150, 100)
    assert not keeper.behind()  # 50 frames behind: within the limit
    index(400, 100)
    assert keeper.behind() and keeper.behind()
    time.sleep(0.06)
    assert not keeper.behind()  # the bound gives way rather than stop writes
    assert "frames behind" in caplog.text
    index(400, 400)
    assert not keeper.behind()
    index(400, 100)
    assert keeper.behind()  # a new stretch behind waits again
    keeper.stop()
    keeper.close_files()


@pytest.mark.parametrize("count", [0, 1, sqlite_sql.ROWS_PER_INSERT - 1, 2 * sqlite_sql.ROWS_PER_INSERT + 5])
def test_entry_rows_go_several_to_a_statement_and_each_is_ignored_alone(count: int) -> None:
    """Whole groups go as multi-row statements, the rest row by row; a row already stored, or
    twice in one statement, is skipped and leaves the stored one as it was, never failing the rest."""
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        conn.executescript(sqlite_sql.SCHEMA)
        kept = Entry(3, "kept", "fid-kept")
        sqlite_sql.insert_rows(conn, [("f:1", kept)])
        rows = [(f"f:{i % 7}", Entry(100 + i, f"o{i}")) for i in range(count)]
        if count:
            rows[count // 2] = ("f:1", Entry(3, "replacement"))  # present: ignored
            rows.append(rows[0])  # twice in one call
        sqlite_sql.insert_rows(conn, rows)
        stored = {(f, i): o for f, i, o in conn.execute("SELECT feed, id, origin FROM entries")}
    want = {(f, e.id): e.origin for f, e in rows} | {("f:1", 3): "kept"}
    assert stored == want
