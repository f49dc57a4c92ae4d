"""The embedded store's newest-id bounds (feeds.store.sqlite_heads): a pulled-feed read skips a feed
with nothing above its floor, and every way an entry reaches the table raises the bound first, so a
skipped feed never hides an entry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers.sqlite_store import running

from feeds.store import sqlite_sql
from feeds.store.base import Bounds, Entry, Follow, Post, PushJob
from feeds.store.sqlite import SqliteStore

FEED = "u:1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with running(SqliteStore(str(tmp_path / "f.db"), merge_after_s=3600)) as impl:
        yield impl


def _pulled_statements(store: SqliteStore) -> list[str]:
    seen: list[str] = []
    assert store._reader is not None
    store._reader.set_trace_callback(
        lambda sql: seen.append(sql) if sql.startswith("SELECT * FROM (SELECT feed") else None
    )
    return seen


async def _newest_above(store: SqliteStore, floor: int) -> list[int]:
    (got,) = await store.read_many([FEED], limit=5, bounds=Bounds(gt=floor))
    return [e.id for e in got]


async def test_a_feed_with_nothing_above_the_floor_is_skipped(store: SqliteStore) -> None:
    await store.add_entries([FEED], [Entry(100)], cap=50)
    statements = _pulled_statements(store)
    assert await _newest_above(store, 10) == [100]  # learns: nothing above 100
    assert len(statements) == 1
    assert await _newest_above(store, 100) == []
    assert await _newest_above(store, 500) == []
    assert len(statements) == 1  # both answered without SQL
    (paged,) = await store.read_many([FEED], limit=5, bounds=Bounds(lt=1000, gt=10))
    assert [e.id for e in paged] == [100]  # an upper bound: read, nothing learned from it


async def _via_add_entries(store: SqliteStore, ident: int) -> None:
    await store.add_entries([FEED], [Entry(ident)], cap=50)


async def _via_own_post(store: SqliteStore, ident: int) -> None:
    await store.add_and_push(Post("a", FEED, Entry(ident), 50, 0, 1000, 1000, ()))


async def _via_merged_push(store: SqliteStore, ident: int) -> None:
    if not await store.following(FEED):
        await store.follow([Follow(FEED, "w:1", 1)])
        await store.set_last_read(FEED, 100)
    groups = (("u:", Entry(ident, origin="w:1"), 50),)
    await store.add_and_push(Post("a", "w:1", Entry(ident), 50, 0, 1000, 1000, groups))
    await store.merge_pending()  # into the table: the pending tier no longer shows it


async def _via_mark(store: SqliteStore, ident: int) -> None:
    await _via_merged_push(store, ident - 1)  # something of FEED's pending...
    groups = (("u:", Entry(ident, origin="w:1"), 50),)
    await store.add_and_push(Post("a", "w:1", Entry(ident), 50, 0, 1000, 1000, groups))
    await store.mark(FEED, None, seen=True, read=False)  # ...materialized by the mark


async def _via_journal(store: SqliteStore, ident: int) -> None:
    await store.add_entries_and_jobs([FEED], [Entry(ident)], 50, [], 0)


async def _via_finished_job(store: SqliteStore, ident: int) -> None:
    (job_id,) = await store.add_entries_and_jobs(
        ["w:2"], [Entry(ident)], 50, [PushJob("a", Entry(ident, origin="w:2"), 50, (FEED,))], 0
    )
    (claimed,) = await store.claim_push_jobs(10, 20, 5)
    await store.finish_push_job(claimed.id, claimed.job)
    assert claimed.id == job_id


@pytest.mark.parametrize(
    "insert",
    [_via_add_entries, _via_own_post, _via_merged_push, _via_mark, _via_journal, _via_finished_job],
)
async def test_every_insert_raises_the_bound_before_a_read_can_skip(
    store: SqliteStore, insert: Callable[[SqliteStore, int], Awaitable[None]]
) -> None:
    await store.add_entries([FEED], [Entry(100)], cap=50)
    assert await _newest_above(store, 10) == [100]
    await insert(store, 200)
    assert store.pending_entries == 0
    assert 200 in await _newest_above(store, 100)


async def test_a_store_writing_on_a_thread_keeps_no_bounds(tmp_path: Path) -> None:
    async with running(SqliteStore(str(tmp_path / "full.db"), durability="full")) as full:
        await full.add_entries([FEED], [Entry(100)], cap=50)
        statements = _pulled_statements(full)
        (got,) = await full.read_many([FEED], limit=5, bounds=Bounds(gt=10))
        (none,) = await full.read_many([FEED], limit=5, bounds=Bounds(gt=100))
        assert [e.id for e in got] == [100] and none == [] and len(statements) == 2


async def _fill_a_memo_of_two(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, memo: str, bounds: Bounds | None
) -> tuple[list[str], list[str]]:
    """Three feeds, each holding entry 100 and read once with ``memo`` (a limit of
    :mod:`feeds.store.sqlite_heads`) set to 2: the third read clears what the first two left.
    Returns the feeds and the pulled-feed statements run so far (and from now on)."""
    from feeds.store import sqlite_heads

    monkeypatch.setattr(sqlite_heads, memo, 2)
    feeds = ["u:1", "u:2", "u:3"]
    for feed in feeds:
        await store.add_entries([feed], [Entry(100)], cap=50)
    statements = _pulled_statements(store)
    for feed in feeds:
        await store.read_many([feed], limit=5, bounds=bounds)
    return feeds, statements


async def test_bounds_are_forgotten_together_when_the_memo_is_full(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds, _ = await _fill_a_memo_of_two(store, monkeypatch, "MAX_FEEDS", Bounds(gt=10))
    for feed in feeds:
        await store.add_entries([feed], [Entry(200)], cap=50)
        (got,) = await store.read_many([feed], limit=5, bounds=Bounds(gt=100))
        assert [e.id for e in got] == [200], feed


# --- windows: the newest stored entries a read learned, answered again without SQL ---------------


async def _newest(store: SqliteStore, floor: int | None, limit: int = 5) -> list[Entry]:
    (got,) = await store.read_many([FEED], limit=limit, bounds=None if floor is None else Bounds(gte=floor))
    return got


async def test_a_newest_read_is_answered_again_from_the_window(store: SqliteStore) -> None:
    await store.add_entries([FEED], [Entry(i, foreign_id=f"f{i}") for i in range(100, 110)], cap=50)
    statements = _pulled_statements(store)
    first = await _newest(store, None)
    assert [e.id for e in first] == [109, 108, 107, 106, 105]
    assert await _newest(store, None) == first
    assert [e.id for e in await _newest(store, 107)] == [109, 108, 107]  # above the window's floor
    assert [e.id for e in await _newest(store, None, limit=3)] == [109, 108, 107]
    assert len(statements) == 1
    # Below the window's floor (105) the window cannot tell what it lacks: SQL again.
    assert [e.id for e in await _newest(store, 103, limit=10)] == list(range(109, 102, -1))
    assert len(statements) == 2
    assert [e.id for e in await _newest(store, 104, limit=10)] == list(range(109, 103, -1))
    assert len(statements) == 2  # the last read left a window down to 103: complete above 104


async def _remove(store: SqliteStore, ident: int) -> None:
    await store.remove_entries([FEED], [ident])


async def _remove_by_foreign_id(store: SqliteStore, ident: int) -> None:
    await store.remove_foreign_id(FEED, f"f{ident}")


async def _retag(store: SqliteStore, ident: int) -> None:
    await store.set_entry_columns([FEED], ident, group_key="g", tags=["t"])


async def _mark(store: SqliteStore, ident: int) -> None:
    await store.mark(FEED, [ident], seen=True, read=True)


async def _mark_all(store: SqliteStore, ident: int) -> None:
    await store.mark(FEED, None, seen=True, read=False)


async def _trim(store: SqliteStore, ident: int) -> None:
    await store.add_entries([FEED], [Entry(i) for i in range(ident + 100, ident + 110)], cap=3)


@pytest.mark.parametrize("change", [_remove, _remove_by_foreign_id, _retag, _mark, _mark_all, _trim])
async def test_every_change_to_a_row_in_the_window_is_seen_by_the_next_read(
    store: SqliteStore, change: Callable[[SqliteStore, int], Awaitable[None]]
) -> None:
    await store.add_entries([FEED], [Entry(i, foreign_id=f"f{i}") for i in range(100, 110)], cap=50)
    assert [e.id for e in await _newest(store, 100)] == [109, 108, 107, 106, 105]
    await change(store, 107)
    (fresh,) = await store.read_many([FEED], limit=5, bounds=Bounds(gte=100, lt=1 << 62))  # SQL only
    assert await _newest(store, 100) == fresh
    assert fresh != [Entry(i, foreign_id=f"f{i}") for i in (109, 108, 107, 106, 105)]


async def test_a_change_below_the_window_keeps_it(store: SqliteStore) -> None:
    await store.add_entries([FEED], [Entry(i, foreign_id=f"f{i}") for i in range(100, 110)], cap=50)
    statements = _pulled_statements(store)
    await _newest(store, 100)
    await store.remove_entries([FEED], [101])
    await store.add_entries([FEED], [Entry(99)], cap=50)
    assert [e.id for e in await _newest(store, 100)] == [109, 108, 107, 106, 105]
    assert len(statements) == 1


async def test_windows_are_forgotten_together_when_their_memo_is_full(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds, statements = await _fill_a_memo_of_two(store, monkeypatch, "MAX_WINDOWS", None)
    (got,) = await store.read_many(["u:3"], limit=5)
    assert [e.id for e in got] == [100] and len(statements) == 3  # u:3's window survived
    for feed in feeds[:2]:
        (got,) = await store.read_many([feed], limit=5)
        assert [e.id for e in got] == [100], feed
    assert len(statements) == 5


def test_every_write_to_entries_is_one_the_watch_sees() -> None:
    """No trigger sees writes (see ``insert_entry_rows``): the bounds are safe only while every
    insert is that function's statement and every delete or update tells ``changing`` first.  A
    new statement must fail here until it is checked and counted."""
    root = Path(sqlite_sql.__file__).parent.parent
    counts = {}
    for path in root.rglob("*.py"):
        text = path.read_text().lower()
        found = [text.count(s) for s in ("into entries", "delete from entries", "update entries")]
        if any(found):
            counts[str(path.relative_to(root))] = found
    assert counts == {"store/sqlite_sql.py": [1, 1, 0], "store/sqlite.py": [0, 2, 3]}
    sql = Path(sqlite_sql.__file__).read_text()
    # the one-row statement and the several-row one built on it, each defined and run once there
    assert sql.count("INSERT_ENTRY") == 5 and sql.count("executemany(INSERT_ENTRY") == 2
    store = (root / "store" / "sqlite.py").read_text()
    assert store.count("changing(conn,") == 4  # removals (2), column updates, marks (both kinds)


class _Recorder:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[tuple[str, str, Any, int]] = []

    def _stored(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def inserting(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.seen += [("insert", row[0], row[1], self._stored()) for row in rows]

    def changing(self, feed: str, ids: Any) -> None:
        self.seen.append(("change", feed, None if ids is None else list(ids), self._stored()))


async def test_the_watch_is_told_before_each_write(store: SqliteStore) -> None:
    assert store._reader is not None
    watch = _Recorder(store._reader)
    store._reader.entries_watch = watch
    await store.add_entries([FEED, "u:2"], [Entry(7)], cap=50)
    await store.remove_entries([FEED], [7])
    await store.mark("u:2", None, seen=True, read=False)
    assert watch.seen == [
        ("insert", FEED, 7, 0),
        ("insert", "u:2", 7, 0),
        ("change", FEED, [7], 2),
        ("change", "u:2", None, 1),
    ]
