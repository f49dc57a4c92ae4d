"""``loadtest/feeds/dataset.py --bulk`` leaves the rows the real write path leaves.

One small dataset is built twice from the same seed, through ``FeedService.add_activities`` and
through the bulk loader, into two SQLite files; the tables are compared row by row (timelines up to
the write path's lazy-trim slack) and timelines are read through ``FeedService`` from both.  The
bulk loader is also run with the cap and with the pull threshold ignored, and the comparison must
see it.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from feeds.config import FanoutConfig
from feeds.reads import ReadParams
from feeds.service import FeedService
from feeds.store.base import Bounds
from feeds.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest" / "feeds"))
import dataset
from bulk_load import build_bulk

CAP = 60  # > two pages of 25, so reads stay within the cap; < most timelines, so the cap bites
THRESHOLD = 40


def _args(**overrides: Any) -> argparse.Namespace:
    base = ["--users", "300", "--follows", "20", "--activities", "2000"]
    base += ["--pull-threshold", str(THRESHOLD), "--max-length", str(CAP), "--now", str(NOW)]
    args = dataset.parser().parse_args(base)
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


NOW = int(time.time())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    paths = {name: root / f"{name}.db" for name in ("write", "bulk", "no_cap", "no_pull")}
    asyncio.run(dataset.build(SqliteStore(str(paths["write"])), _args()))
    build_bulk(str(paths["bulk"]), _args())
    build_bulk(str(paths["no_cap"]), _args(max_length=10**6))
    build_bulk(str(paths["no_pull"]), _args(pull_threshold=10**9))
    return paths


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def differences(written: Path, bulk: Path) -> list[str]:
    """Where ``bulk`` is not what the write path left in ``written``.  Timelines: the write path trims
    lazily, but whatever it trimmed was never among a feed's newest ``CAP`` entries, so the bulk
    feed must be exactly the newest ``CAP`` entries of the written one."""
    out = []
    for table, order in [
        ("activities", "app, id"),
        ("follows", "source, target"),
        ("follower_counts", "feed"),
        ("feed_state", "feed"),
    ]:
        sql = f"SELECT * FROM {table} ORDER BY {order}"
        if _rows(written, sql) != _rows(bulk, sql):
            out.append(table)
    by_feed: list[dict[str, list[tuple[Any, ...]]]] = []
    for path in (written, bulk):
        feeds = defaultdict(list)
        for row in _rows(path, "SELECT * FROM entries ORDER BY feed, id DESC"):
            feeds[row[0]].append(row)
        by_feed.append(feeds)
    for feed in sorted(by_feed[0].keys() | by_feed[1].keys()):
        if by_feed[0][feed][:CAP] != by_feed[1][feed]:
            out.append(f"entries of {feed}")
    return out


def test_bulk_rows_equal_write_path_rows(built: dict[str, Path]) -> None:
    written, bulk = built["write"], built["bulk"]
    # The comparison below only means something if the cap and the threshold both matter.
    counts = _rows(written, "SELECT count(*) FROM entries WHERE feed LIKE '1/timeline:%' GROUP BY feed")
    assert sum(n >= CAP for (n,) in counts) > 50
    pulled = _rows(written, f"SELECT feed FROM follower_counts WHERE n > {THRESHOLD}")
    assert len(pulled) > 5
    assert _rows(written, "SELECT count(*) FROM activities")[0][0] == 2000
    assert differences(written, bulk) == []
    assert _rows(bulk, "PRAGMA journal_mode") == [("wal",)]
    assert _rows(bulk, "PRAGMA integrity_check") == [("ok",)]
    names = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    assert _rows(written, names) == _rows(bulk, names)


def test_comparison_sees_an_ignored_cap_or_threshold(built: dict[str, Path]) -> None:
    for broken in ("no_cap", "no_pull"):
        diffs = differences(built["write"], built[broken])
        assert diffs and all(d.startswith("entries of 1/timeline:") for d in diffs), broken


async def _pages(path: Path) -> tuple[list[Any], list[int]]:
    svc = FeedService(
        SqliteStore(str(path)),
        [dataset.APP],
        dataset.feed_groups(CAP),
        fanout=FanoutConfig(pull_threshold=THRESHOLD),
    )
    await svc.start()
    try:
        pages: list[Any] = []
        for user in range(0, 300, 3):
            feed = svc.feed(dataset.APP, "timeline", str(user))
            first = await svc.read(dataset.APP, feed, ReadParams())
            pages.append(first)
            if len(first["results"]) == 25:
                lt = int(first["results"][-1]["id"])
                pages.append(await svc.read(dataset.APP, feed, ReadParams(bounds=Bounds(lt=lt))))
        counts = [await svc.store.follower_count(f"1/user:{u}") for u in range(300)]
        return pages, counts
    finally:
        await svc.close()


async def test_timeline_reads_agree(built: dict[str, Path]) -> None:
    written_pages, written_counts = await _pages(built["write"])
    bulk_pages, bulk_counts = await _pages(built["bulk"])
    second_pages = len(written_pages) - 100
    assert second_pages > 50
    assert sum(bool(p["results"]) for p in written_pages) > 100
    assert written_counts == bulk_counts and max(written_counts) > THRESHOLD
    for written, bulk in zip(written_pages, bulk_pages, strict=True):
        assert [r["id"] for r in written["results"]] == [r["id"] for r in bulk["results"]]
        assert written == bulk  # bodies, origins and the next link too
