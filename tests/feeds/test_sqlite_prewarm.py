"""SQLite: loading a large store's pages into the loop connection's cache after start
(feeds.store.sqlite_prewarm)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.sqlite_store import node_store, running

from feeds.store import sqlite_cache, sqlite_prewarm
from feeds.store.base import Entry
from feeds.store.sqlite import SqliteStore
from feeds.store.sqlite_pending import PENDING_SCHEMA
from feeds.store.sqlite_prewarm import TREES, Prewarm, stop_prewarm
from feeds.store.sqlite_sql import SCHEMA


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(SCHEMA + PENDING_SCHEMA)
    yield db
    db.close()


class Recorder:
    """Runs each statement on ``conn`` and keeps the rows each returned."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.answers: list[list[tuple[Any, ...]]] = []

    def __call__(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(sql, args).fetchall()
        self.answers.append(rows)
        return rows


def test_every_tree_is_walked_in_its_own_key_order_without_a_sort(conn: sqlite3.Connection) -> None:
    """The list matches the schema: each walk names a tree that exists and reads it in key order."""
    for tree, keys in TREES:
        cols = ", ".join(keys)
        marks = ", ".join("?" * len(keys))
        sql = f"SELECT {cols} FROM {tree} WHERE ({cols}) > ({marks}) ORDER BY {cols} LIMIT 1 OFFSET 9"
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [0] * len(keys)))
        index = tree.partition(" INDEXED BY ")[2]
        assert ("COVERING INDEX " + index if index else "PRIMARY KEY") in plan, (tree, plan)
        assert "TEMP B-TREE" not in plan, (tree, plan)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {t.split()[0] for t, _ in TREES} | {t.split()[-1] for t, _ in TREES if "INDEXED" in t} <= names


async def test_a_walk_steps_through_each_tree_a_slice_at_a_time(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO feed_state(feed, last_read_us) VALUES (?, 0)", [(f"f{i:02}",) for i in range(7)]
    )
    rows = [(f"a/user:{i % 3}", i, "", "[]") for i in range(10)]
    conn.executemany(
        "INSERT INTO entries(feed, id, group_key, tags, seen, read) VALUES (?, ?, ?, ?, 0, 0)", rows
    )
    read = Recorder(conn)
    walk = Prewarm(read, rows=3, trees=[("feed_state", ("feed",)), ("entries", ("feed", "id"))])
    await walk.run()
    # Each slice answers with the row 3 past its cursor; the one finding none has walked the tail.
    assert read.answers == [
        [("f02",)],
        [("f05",)],
        [],
        [("a/user:0", 6)],
        [("a/user:1", 4)],
        [("a/user:2", 5)],
        [],
    ]
    assert walk.slices == 7 and walk.done


async def test_a_walk_stops_when_cancelled(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO feed_state(feed, last_read_us) VALUES (?, 0)", [(f"f{i:04}",) for i in range(2000)]
    )
    read, fifth = Recorder(conn), asyncio.Event()

    def counted(sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        if len(read.answers) == 4:
            fifth.set()
        return read(sql, args)

    walk = Prewarm(counted, rows=1, trees=[("feed_state", ("feed",))])
    task = asyncio.get_running_loop().create_task(walk.run())
    await fifth.wait()
    await stop_prewarm(task)
    assert task.cancelled() and not walk.done and walk.slices < 2000


async def test_a_walk_that_fails_leaves_the_cache_cold_and_says_so(
    conn: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    walk = Prewarm(Recorder(conn), rows=2, trees=[("no_such_table", ("k",))])
    await walk.run()
    assert not walk.done
    assert "loading the page cache stopped" in caplog.text


def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store counts as 1 GiB or more (read through SQLite's cache, not mapped)."""
    monkeypatch.setattr(sqlite_cache, "LOCK_BYTE_OFFSET", 0)


async def test_a_large_store_that_fits_its_cache_is_loaded_and_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "f.db")
    async with running(SqliteStore(path)) as store:
        await store.add_entries([f"a/user:{i}" for i in range(50)], [Entry(i) for i in range(1, 6)], cap=10)
        await store.merge_pending()
    large(monkeypatch)
    store = SqliteStore(path, cache_mb=64)
    async with running(store):
        assert store._residency.warming is not None
        await store._residency.warming
        assert [e.id for e in await store.read_entries("a/user:7", limit=3)] == [5, 4, 3]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"prewarm": False}, "turned off"),
        ({"durability": "full"}, "another connection writes"),
        ({"cache_mb": 0}, "the file is larger than the cache"),
    ],
)
async def test_no_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], why: str
) -> None:
    large(monkeypatch)
    async with running(SqliteStore(str(tmp_path / "f.db"), **options)) as store:
        assert store._residency.warming is None, why


async def test_a_mapped_store_is_not_walked(tmp_path: Path) -> None:
    async with running(SqliteStore(str(tmp_path / "f.db"))) as store:
        assert store._residency.warming is None  # a store under 1 GiB lives in the OS page cache, mapped


async def test_health_says_the_cache_is_loading_until_the_walk_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.asgi_server import serving

    from realtime.app import create_app
    from realtime.broker.memory import MemoryBroker, MemoryHub
    from realtime.settings import Settings

    large(monkeypatch)
    release = asyncio.Event()

    async def held_walk(self: Prewarm) -> None:
        await release.wait()

    monkeypatch.setattr(sqlite_prewarm.Prewarm, "run", held_walk)
    app = create_app(
        Settings(node_id="n", feeds_store=f"sqlite:{tmp_path / 'f.db'}"), MemoryBroker("n", MemoryHub())
    )
    async with serving(app) as url, httpx.AsyncClient(timeout=10) as http:
        loading = await http.get(url + "/health")
        assert (loading.status_code, loading.json()) == (
            200,
            {"status": "ok", "node": "n", "feeds_cache": "loading"},
        )
        release.set()
        await asyncio.sleep(0)
        assert (await http.get(url + "/health")).json() == {"status": "ok", "node": "n"}


@pytest.mark.parametrize(("value", "walks"), [(None, True), ("false", False)])
def test_the_node_setting_reaches_the_store(tmp_path: Path, value: str | None, walks: bool) -> None:
    store = node_store(tmp_path / "f.db", **({} if value is None else {"REALTIME_FEEDS_PREWARM": value}))
    assert store._residency.prewarm is walks


@pytest.mark.parametrize(("cache_mb", "walks"), [(10, False), (11, True)])
async def test_the_file_must_fit_the_cache_with_room_for_page_headers(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, cache_mb: int, walks: bool
) -> None:
    large(monkeypatch)
    monkeypatch.setattr(sqlite_prewarm, "db_bytes", lambda _: 10 * sqlite_prewarm.MIB)
    task = sqlite_prewarm.start_prewarm(conn, cache_mb)
    assert (task is not None) is walks
    await stop_prewarm(task)
