"""What a merged timeline entry costs SQLite alone: one row per entry against one packed row per feed.

The store keeps a row per timeline entry (``entries``, keyed by feed and id), and a merge cycle
inserts each feed's pending entries as rows.  The candidate layout keeps a feed's entries packed,
several to a row (``packed``: feed, newest id, the entries as one JSON array), so a merge cycle
writes one row per feed, whatever the number of its entries.  Each layout gets a file of its own and
the whole page cache: ``rows`` a copy of the dataset, ``packed`` a new file that holds only the
dataset's timelines packed, ``--block`` entries to a row.  Each round draws ``--entries / per-feed``
of the dataset's timelines at random, gives each ``per-feed`` new entries, and writes them as a merge
does: sorted by feed, about ``--chunk`` entries to a commit; then a TRUNCATE checkpoint copies the
WAL back.  Two more layouts keep a row per entry in a new file that holds only the timelines,
written in key order: ``textnew`` keyed by the feed's key as the store is, ``numbered`` by a number
per feed (the numbers held in memory, as a merge would hold them).  All layouts draw the same
timelines and entries.  A temporary trigger like the store's former head-bound trigger
(``feeds.store.sqlite_heads``) is on the table written unless ``--no-trigger``.

Reported per entry, in CPU microseconds (``getrusage``, the process; pin it): ``insert`` (building
the parameters and the INSERTs: row tuples, or one JSON array per feed), ``commit`` and
``checkpoint``.  Nothing here is the store's code: it prices the layouts, not the merge.

    taskset -c 1 python3 loadtest/feeds/bench_layout.py --db /path/feeds-full.db --per-feed 1,4,16
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

PACKED_SCHEMA = """
CREATE TABLE packed(feed TEXT NOT NULL, top INTEGER NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY(feed, top)) WITHOUT ROWID;
"""
BUILD_PACKED = """
INSERT INTO packed
SELECT feed, max(id), json_group_array(json_array(id, origin, foreign_id, group_key, tags, seen, read))
FROM (SELECT *, (row_number() OVER (PARTITION BY feed ORDER BY id DESC) - 1) / ? AS block
      FROM source.entries)
GROUP BY feed, block
"""
TRIGGER = """
CREATE TEMP TABLE bounded(feed TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TRIGGER added AFTER INSERT ON main.{table} WHEN NEW.feed IN (SELECT feed FROM temp.bounded)
BEGIN SELECT bench_added(NEW.feed, NEW.{column}); END;
"""
INSERT_ROW = "INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?,?,?)"
NEW_SCHEMA = """
CREATE TABLE entries(feed {key} NOT NULL, id INTEGER NOT NULL, origin TEXT, foreign_id TEXT,
  group_key TEXT NOT NULL, tags TEXT NOT NULL, seen INTEGER NOT NULL, read INTEGER NOT NULL,
  PRIMARY KEY(feed, id)) WITHOUT ROWID;
"""
FEED_NUMBERS = """
CREATE TEMP TABLE numbers(feed TEXT PRIMARY KEY, no INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO numbers SELECT feed, row_number() OVER (ORDER BY feed)
FROM (SELECT feed FROM source.entries UNION SELECT source FROM source.follows);
"""
INSERT_PACKED = "INSERT OR IGNORE INTO packed VALUES (?,?,?)"
Entry = tuple[int, str, None, str, str, int, int]  # the columns after feed, as a merge binds them


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connect(path: Path, cache_mb: int, page_size: int = 0) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if page_size:  # takes effect only on a new file, before its first table
        conn.execute(f"PRAGMA page_size={int(page_size)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
    return conn


def open_rows(dataset: str, tmp: Path, cache_mb: int) -> sqlite3.Connection:
    """A copy of the dataset, its timelines read once so that the page cache holds them."""
    copy = tmp / "rows.db"
    shutil.copyfile(dataset, copy)
    conn = connect(copy, cache_mb)
    conn.execute("SELECT count(*), sum(length(origin)) FROM entries").fetchone()
    return conn


def open_packed(dataset: str, tmp: Path, cache_mb: int, block: int) -> sqlite3.Connection:
    """A new file holding the dataset's timelines packed, ``block`` entries to a row, and nothing else."""
    conn = connect(tmp / "packed.db", cache_mb)
    conn.executescript(PACKED_SCHEMA)
    conn.execute("ATTACH ? AS source", (f"file:{dataset}?mode=ro",))
    conn.execute("BEGIN")
    conn.execute(BUILD_PACKED, (block,))
    conn.execute("COMMIT")
    conn.execute("DETACH source")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("SELECT count(*), sum(length(body)) FROM packed").fetchone()
    return conn


def open_new(
    dataset: str, tmp: Path, cache_mb: int, numbered: bool, page_size: int
) -> tuple[sqlite3.Connection, dict[str, int]]:
    """A new file holding only the dataset's timelines, written in key order; ``numbered``: keyed by
    a feed number instead of the feed's key (returns the numbers, which a merge would hold);
    ``page_size``: the new file's (0: SQLite's default)."""
    conn = connect(tmp / "new.db", cache_mb, page_size)
    conn.executescript(NEW_SCHEMA.format(key="INTEGER" if numbered else "TEXT"))
    conn.execute("ATTACH ? AS source", (f"file:{dataset}?mode=ro",))
    conn.execute("BEGIN")
    numbers: dict[str, int] = {}
    if numbered:
        for statement in FEED_NUMBERS.strip().split(";\n"):  # executescript would commit first
            conn.execute(statement)
        numbers = dict(conn.execute("SELECT feed, no FROM temp.numbers"))
        conn.execute(
            "INSERT INTO entries SELECT n.no, e.id, e.origin, e.foreign_id, e.group_key, e.tags, e.seen, "
            "e.read FROM source.entries e JOIN temp.numbers n ON n.feed = e.feed ORDER BY n.no, e.id"
        )
    else:
        conn.execute("INSERT INTO entries SELECT * FROM source.entries ORDER BY feed, id")
    conn.execute("COMMIT")
    conn.execute("DETACH source")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("SELECT count(*), sum(length(origin)) FROM entries").fetchone()
    return conn, numbers


def add_trigger(conn: sqlite3.Connection, table: str, column: str) -> None:
    conn.create_function("bench_added", 2, lambda feed, ident: None)
    conn.executescript(TRIGGER.format(table=table, column=column))
    # the store bounds the feeds reads pull (large authors' own feeds), not the timelines pushed to
    conn.executemany("INSERT INTO temp.bounded VALUES (?)", [(f"user:{u}",) for u in range(200)])


def new_entries(rng: random.Random, feeds: list[str], per_feed: int, next_id: int) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for feed in feeds:
        got = []
        for _ in range(per_feed):
            next_id += rng.randrange(1, 1 << 20)
            got.append((next_id, f"user:{rng.randrange(100_000)}", None, str(next_id), "[]", 0, 0))
        out[feed] = got
    return out


def write_rows(conn: sqlite3.Connection, batch: dict[str, list[Entry]]) -> None:
    conn.executemany(INSERT_ROW, [(feed, *e) for feed, got in batch.items() for e in got])


def numbered_writer(numbers: dict[str, int]) -> Callable[[sqlite3.Connection, dict[str, list[Entry]]], None]:
    def write(conn: sqlite3.Connection, batch: dict[str, list[Entry]]) -> None:
        number = numbers.__getitem__
        conn.executemany(INSERT_ROW, [(number(feed), *e) for feed, got in batch.items() for e in got])

    return write


def write_packed(conn: sqlite3.Connection, batch: dict[str, list[Entry]]) -> None:
    conn.executemany(
        INSERT_PACKED, [(feed, got[-1][0], orjson.dumps(got[::-1])) for feed, got in batch.items()]
    )


def measure(
    conn: sqlite3.Connection,
    write: Callable[[sqlite3.Connection, dict[str, list[Entry]]], None],
    entries: dict[str, list[Entry]],
    chunk: int,
) -> dict[str, float]:
    feeds = sorted(entries)
    per_commit = max(1, chunk // max(1, len(entries[feeds[0]])))
    insert_s = commit_s = 0.0
    for at in range(0, len(feeds), per_commit):
        batch = {feed: entries[feed] for feed in feeds[at : at + per_commit]}
        t0 = cpu()
        conn.execute("BEGIN")
        write(conn, batch)
        t1 = cpu()
        conn.execute("COMMIT")
        commit_s += cpu() - t1
        insert_s += t1 - t0
    t2 = cpu()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    checkpoint_s = cpu() - t2
    n = sum(len(got) for got in entries.values())
    per = 1e6 / n
    return {
        "entries": n,
        "insert_us": round(insert_s * per, 2),
        "commit_us": round(commit_s * per, 2),
        "checkpoint_us": round(checkpoint_s * per, 2),
        "total_us": round((insert_s + commit_s + checkpoint_s) * per, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a SQLite dataset file from dataset.py (copied)")
    parser.add_argument("--per-feed", default="1,4,16", help="new entries per timeline per round")
    parser.add_argument("--entries", type=int, default=64_000, help="new entries per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per layout and per-feed count")
    parser.add_argument("--chunk", type=int, default=256, help="entries per commit, as a merge chunk")
    parser.add_argument("--block", type=int, default=64, help="entries per packed row in the copy")
    parser.add_argument("--cache-mb", type=int, default=6144)
    parser.add_argument("--no-trigger", action="store_true")
    parser.add_argument(
        "--page-size", type=int, default=0, help="of textnew and numbered's new file (rows report the file's)"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--layouts", default="rows,packed", help="of rows, packed, textnew and numbered, in this order"
    )
    args = parser.parse_args()
    with closing(sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)) as source:
        timelines = [row[0] for row in source.execute("SELECT DISTINCT source FROM follows")]
        first_id = source.execute("SELECT max(id) FROM entries").fetchone()[0] + (1 << 30)
    for layout in args.layouts.split(","):
        rng = random.Random(args.seed)  # both layouts get the same feeds and entries
        with tempfile.TemporaryDirectory(prefix="feeds-layout-") as tmp:
            started = time.monotonic()
            if layout == "rows":
                conn, write, table, column = (
                    open_rows(args.db, Path(tmp), args.cache_mb),
                    write_rows,
                    "entries",
                    "id",
                )
            elif layout in ("textnew", "numbered"):
                conn, numbers = open_new(
                    args.db, Path(tmp), args.cache_mb, layout == "numbered", args.page_size
                )
                write = numbered_writer(numbers) if layout == "numbered" else write_rows
                table, column = "entries", "id"
            else:
                conn = open_packed(args.db, Path(tmp), args.cache_mb, args.block)
                write, table, column = write_packed, "packed", "top"
            if not args.no_trigger:
                add_trigger(conn, table, column)
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]  # the file's, asked for or not
            print(
                json.dumps({"layout": layout, "prepared_s": round(time.monotonic() - started, 1)}), flush=True
            )
            next_id = first_id
            for per_feed in (int(p) for p in args.per_feed.split(",")):
                for round_no in range(args.rounds):
                    feeds = rng.sample(timelines, max(1, args.entries // per_feed))
                    entries = new_entries(rng, feeds, per_feed, next_id)
                    next_id = max(got[-1][0] for got in entries.values()) + 1
                    row: dict[str, Any] = {
                        "layout": layout,
                        "page_size": page_size,
                        "per_feed": per_feed,
                        "round": round_no + 1,
                    }
                    row.update(measure(conn, write, entries, args.chunk))
                    print(json.dumps(row), flush=True)
            conn.close()


if __name__ == "__main__":
    main()
