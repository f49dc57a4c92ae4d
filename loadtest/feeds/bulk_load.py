"""``dataset.py --bulk``: write the rows the feed write path would leave, set-based, into a new SQLite file.

Same draws as the write path (``dataset.draw_follows`` / ``draw_posts``), same rows:

* ``activities``: the bodies ``Activity.dumps()`` writes, with the planned ids;
* ``follows``, ``follower_counts`` (feeds with at least one follower), ``feed_state`` (every user's
  timeline, read at --now);
* ``entries``: each author's own ``user:<n>`` entries, and, for authors with at most
  ``pull_threshold`` followers, one entry per follower timeline with the columns the service
  writes (origin = the author's feed id, foreign_id, the timeline group's key, tags json); each
  feed keeps its newest ``max_length`` entries (a window function over each chunk of followers).

How it stays fast: the schema comes from ``SqliteStore`` itself; rows go in primary-key order (the
B-trees only append); the secondary indexes of ``follows`` and ``activities`` are dropped and
rebuilt from their own definitions at the end (one sort instead of millions of random inserts); one
transaction with ``journal_mode=OFF`` and ``synchronous=OFF`` (the file is new: a crash just means
starting again), and WAL, which the store expects, is restored at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import time
from array import array
from typing import Any

import orjson
from dataset import APP, draw_follows, draw_posts, feed_groups

from feeds.store.sqlite import SqliteStore

FOLLOWERS_PER_CHUNK = 2000  # timelines per INSERT ... SELECT: ~200k joined rows sorted in memory

_PUSH = """
INSERT INTO entries(feed, id, origin, foreign_id, group_key, tags, seen, read)
SELECT feed, id, origin, foreign_id, fan_key, tags, 0, 0 FROM (
  SELECT f.source AS feed, p.id, p.origin, p.foreign_id, p.fan_key, p.tags,
         row_number() OVER (PARTITION BY f.source ORDER BY p.id DESC) AS rn
  FROM follows f JOIN temp.posts p ON p.author = f.target
  WHERE f.source BETWEEN ?1 AND ?2 AND p.pushed)
WHERE rn <= ?3 ORDER BY feed, id
"""
_OWN = """
INSERT INTO entries(feed, id, origin, foreign_id, group_key, tags, seen, read)
SELECT author, id, NULL, foreign_id, own_key, tags, 0, 0 FROM (
  SELECT *, row_number() OVER (PARTITION BY author ORDER BY id DESC) AS rn FROM temp.posts)
WHERE rn <= ?1 ORDER BY author, id
"""


def _key(group: str, user: int) -> str:
    return f"{APP.app_id}/{group}:{user}"


async def _create_schema(path: str) -> None:
    store = SqliteStore(path)
    await store.start()
    await store.close()


def build_bulk(path: str, args: argparse.Namespace) -> dict[str, Any]:
    if os.path.exists(path) and os.path.getsize(path) > 0:
        raise SystemExit(f"--bulk writes a new file; {path} exists")
    started = time.perf_counter()
    rng = random.Random(args.seed)
    now_us = args.now * 1_000_000
    asyncio.run(_create_schema(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576", "temp_store=MEMORY"):
            conn.execute(f"PRAGMA {pragma}")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
            "AND tbl_name IN ('follows', 'activities')"
        ).fetchall()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        phases: dict[str, float] = {}
        mark = time.perf_counter()
        following, counts = _load_follows(conn, rng, args, now_us)
        phases["follows_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        _load_posts(conn, rng, args, counts)
        phases["activities_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        pushed, own = _load_entries(conn, args, following)
        phases["entries_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("DROP TABLE temp.posts")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
        phases["indexes_s"] = time.perf_counter() - mark
    finally:
        conn.close()
    follows = sum(len(t) for t in following)
    return {
        "users": args.users,
        "follows": follows,
        "activities": args.activities,
        "max_followers": max(counts),
        "mean_followers": follows / args.users,
        "pulled_authors": sum(n > args.pull_threshold for n in counts),
        "timeline_entries": pushed,
        "own_entries": own,
        **phases,
        "wall_s": time.perf_counter() - started,
        "file_bytes": os.path.getsize(path),
    }


def _load_follows(
    conn: sqlite3.Connection, rng: random.Random, args: argparse.Namespace, now_us: int
) -> tuple[list[array[int]], list[int]]:
    following = [array("l", targets) for targets in draw_follows(rng, args)]
    counts = [0] * args.users
    for targets in following:
        for t in targets:
            counts[t] += 1
    users_by_key = sorted(range(args.users), key=str)  # "1/timeline:<u>" order is str(u) order
    conn.executemany(
        "INSERT INTO follows(source, target, created_us) VALUES (?,?,?)",
        (
            (_key("timeline", u), _key("user", t), now_us)
            for u in users_by_key
            for t in sorted(following[u], key=str)
        ),
    )
    conn.executemany(
        "INSERT INTO feed_state(feed, last_read_us) VALUES (?,?)",
        ((_key("timeline", u), now_us) for u in users_by_key),
    )
    conn.executemany(
        "INSERT INTO follower_counts(feed, n) VALUES (?,?)",
        ((_key("user", t), counts[t]) for t in users_by_key if counts[t]),
    )
    return following, counts


def _load_posts(
    conn: sqlite3.Connection, rng: random.Random, args: argparse.Namespace, counts: list[int]
) -> None:
    groups = {g.name: g for g in feed_groups(args.max_length)}
    own_group, fan_group = groups["user"], groups["timeline"]
    conn.execute(
        "CREATE TEMP TABLE posts(author TEXT NOT NULL, id INTEGER NOT NULL, origin TEXT NOT NULL, "
        "foreign_id TEXT, own_key TEXT NOT NULL, fan_key TEXT NOT NULL, tags TEXT NOT NULL, "
        "pushed INTEGER NOT NULL, PRIMARY KEY(author, id)) WITHOUT ROWID"
    )
    bodies: list[tuple[str, int, str | None, int, bytes]] = []
    posts: list[tuple[str, int, str, str | None, str, str, str, bool]] = []
    for post in draw_posts(rng, args):
        act = post.activity
        bodies.append((APP.app_id, act.id, act.foreign_id, act.time_us, act.dumps()))
        tags = orjson.dumps(list(act.extra.get("tags", ()))).decode()
        posts.append(
            (
                _key("user", post.author),
                act.id,
                f"user:{post.author}",
                act.foreign_id,
                own_group.group_key(act),
                fan_group.group_key(act),
                tags,
                counts[post.author] <= args.pull_threshold,
            )
        )
    bodies.sort(key=lambda row: row[1])
    conn.executemany("INSERT INTO activities(app, id, foreign_id, time_us, body) VALUES (?,?,?,?,?)", bodies)
    del bodies
    posts.sort(key=lambda row: (row[0], row[1]))
    conn.executemany("INSERT INTO temp.posts VALUES (?,?,?,?,?,?,?,?)", posts)


def _load_entries(
    conn: sqlite3.Connection, args: argparse.Namespace, following: list[array[int]]
) -> tuple[int, int]:
    """Timelines first: their keys sort before the ``user:`` feeds, so every insert appends."""
    groups = {g.name: g for g in feed_groups(args.max_length)}
    followers = sorted((u for u in range(args.users) if following[u]), key=str)
    pushed = 0
    for start in range(0, len(followers), FOLLOWERS_PER_CHUNK):
        chunk = followers[start : start + FOLLOWERS_PER_CHUNK]
        cur = conn.execute(
            _PUSH, (_key("timeline", chunk[0]), _key("timeline", chunk[-1]), groups["timeline"].max_length)
        )
        pushed += cur.rowcount
    own = conn.execute(_OWN, (groups["user"].max_length,)).rowcount
    return pushed, own
