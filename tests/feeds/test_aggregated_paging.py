"""Cursor paging of aggregated and notification feeds on every store: following ``next`` (or
``id_lt`` of the last group) walks every group exactly once, newest first, across many windows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from feeds import reads
from feeds.apps import App
from feeds.config import FeedGroup
from feeds.reads import ReadParams
from feeds.service import FeedService
from feeds.store.base import Store

APP = App("5", "k", "s" * 40)
WINDOW = 10


@pytest.fixture
async def svc(store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FeedService]:
    monkeypatch.setattr(reads, "AGGREGATION_WINDOW", WINDOW)
    groups = [
        FeedGroup("agg", "aggregated", aggregation_format="{{ kind }}"),
        FeedGroup("notif", "notification", aggregation_format="{{ kind }}"),
    ]
    yield FeedService(store, [APP], groups, clock=lambda: 1_750_000_000.0)


async def post(svc: FeedService, group: str, user: str, kinds: list[str]) -> list[str]:
    """Posts one activity per kind, oldest first, one second apart; returns ids newest first."""
    items = [
        {
            "actor": f"a{i % 3}",
            "verb": "v",
            "object": str(i),
            "kind": k,
            "time": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}",
        }
        for i, k in enumerate(kinds)
    ]
    added = await svc.add_activities(APP, svc.feed(APP, group, user), items)
    return [a["id"] for a in reversed(added)]


def expected_groups(ids: list[str], kinds: list[str]) -> list[tuple[str, list[str]]]:
    """The documented rule, written out plainly: newest first, an entry joins the group of the nearest
    newer entry with its key if that is fewer than WINDOW positions above it."""
    last: dict[str, tuple[int, list[str]]] = {}
    groups: list[tuple[str, list[str]]] = []
    for pos, (i, k) in enumerate(zip(ids, kinds, strict=True)):
        prev = last.get(k)
        members = prev[1] if prev and pos - prev[0] < WINDOW else []
        if not members:
            groups.append((k, members))
        members.append(i)
        last[k] = (pos, members)
    return groups


async def walk(svc: FeedService, group: str, user: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    feed, params, seen, pages = svc.feed(APP, group, user), ReadParams(limit=limit), [], 0
    while True:
        page = await svc.read(APP, feed, params)
        pages += 1
        seen += page["results"]
        if not page["next"]:
            return seen, pages
        assert pages < 100
        query = {k: v[0] for k, v in parse_qs(urlsplit(page["next"]).query).items()}
        assert urlsplit(page["next"]).path == f"/api/v1.0/feed/{group}/{user}/"
        params = ReadParams.from_query(query)


@pytest.mark.parametrize("group", ["agg", "notif"])
async def test_paging_walks_every_group_once_across_windows(svc: FeedService, group: str) -> None:
    rng = random.Random(7)
    kinds = [rng.choice("abcdefg") for _ in range(70)]  # 7 windows; keys recur near and far apart
    ids = await post(svc, group, "u", kinds)
    newest_first_kinds = kinds[::-1]
    expected = expected_groups(ids, newest_first_kinds)
    assert len({k for k, _ in expected}) < len(expected)  # some keys split into several groups

    got, pages = await walk(svc, group, "u", limit=3)
    assert pages > 70 // WINDOW
    assert [(g["group"], g["activities"][0]["id"]) for g in got] == [(k, m[0]) for k, m in expected]
    for g, (key, members) in zip(got, expected, strict=True):
        shown = [a["id"] for a in g["activities"]]
        assert shown == members[: len(shown)]  # a prefix: counts cover the scanned window
        assert g["id"] == (f"{members[0]}.{key}" if group == "notif" else members[0])
    every = [a["id"] for g in got for a in g["activities"]]
    assert len(every) == len(set(every))  # no activity shown twice


async def test_raw_id_lt_with_group_ids_and_one_huge_group(svc: FeedService) -> None:
    ids = await post(svc, "agg", "big", ["x"] * 35 + ["y"])
    feed = svc.feed(APP, "agg", "big")
    first = await svc.read(APP, feed, ReadParams(limit=5))
    assert [g["group"] for g in first["results"]] == ["y", "x"] and first["next"]
    assert first["results"][1]["activity_count"] == WINDOW - 1  # what the window holds
    later = await svc.read(APP, feed, ReadParams.from_query({"id_lt": first["results"][1]["id"]}))
    assert later["results"] == []  # everything below belongs to "x", shown already
    got, _ = await walk(svc, "agg", "big", limit=5)
    assert [g["activities"][0]["id"] for g in got] == [ids[0], ids[1]]


async def test_notification_marks_by_group_id_from_a_later_page(svc: FeedService) -> None:
    kinds = [k for k in "abcdefghij" for _ in range(3)]  # 10 groups of 3
    await post(svc, "notif", "n", kinds)
    feed = svc.feed(APP, "notif", "n")
    first = await svc.read(APP, feed, ReadParams(limit=2))
    assert first["unseen"] == first["unread"] == 4  # the newest window holds 4 groups (3+3+3+1)
    query = {k: v[0] for k, v in parse_qs(urlsplit(first["next"]).query).items()}
    second = await svc.read(APP, feed, ReadParams.from_query(query))
    target = second["results"][1]
    assert target["group"] == "g" and not target["is_read"]
    # Marked while reading the first page: the group is not in that read's window.
    await svc.read(APP, feed, ReadParams.from_query({"limit": "2", "mark_read": target["id"]}))
    again = await svc.read(APP, feed, ReadParams.from_query(query))
    assert [g["is_read"] for g in again["results"]] == [False, True]
    assert again["unread"] == 3  # the newest window ends inside "g": that part is read now


async def test_paging_merges_pulled_authors(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds.config import FanoutConfig

    monkeypatch.setattr(reads, "AGGREGATION_WINDOW", WINDOW)
    groups = [FeedGroup("user"), FeedGroup("agg", "aggregated", aggregation_format="{{ kind }}")]
    cfg = FanoutConfig(pull_threshold=0, follower_count_ttl_s=0)  # every author is pulled at read time
    svc = FeedService(store, [APP], groups, fanout=cfg, clock=lambda: 1_750_000_000.0)
    await svc.follow(APP, svc.feed(APP, "agg", "r"), svc.feed(APP, "user", "star"), copy_limit=0)
    rng = random.Random(3)
    kinds = [rng.choice("abcd") for _ in range(40)]
    ids = await post(svc, "user", "star", kinds)
    assert await store.read_entries(svc.feed(APP, "agg", "r").key, limit=5) == []  # nothing pushed
    expected = expected_groups(ids, kinds[::-1])
    got, _ = await walk(svc, "agg", "r", limit=2)
    assert [(g["group"], g["activities"][0]["id"]) for g in got] == [(k, m[0]) for k, m in expected]
    assert got[0]["activities"][0]["origin"] == "user:star"
