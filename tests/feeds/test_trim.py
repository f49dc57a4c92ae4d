from __future__ import annotations

from feeds.store.trim import TrimSchedule


def test_each_feed_is_trimmed_every_n_entries() -> None:
    t = TrimSchedule(every=3)
    due = [t.due(["a", "b"], 1) for _ in range(6)]
    assert due == [[], [], ["a", "b"], [], [], ["a", "b"]]
    assert t.due(["a"], 5) == ["a"]


def test_interleaved_feeds_keep_their_own_counts_and_the_memory_is_bounded() -> None:
    t = TrimSchedule(every=2, max_feeds=2)
    assert [t.due([f], 1) for f in "abab"] == [[], [], ["a"], ["b"]]
    t.due(["c"], 1)
    assert len(t._counts) == 2


def test_an_owed_feed_is_trimmed_at_its_next_insert_and_the_memory_stays_bounded() -> None:
    t = TrimSchedule(every=4, max_feeds=2)
    assert t.due(["a"], 2) == []
    t.owe(["a", "b"])
    assert t.due(["a", "b"], 1) == ["a", "b"]
    assert t.due(["a", "b"], 1) == []  # counting starts over after the trim
    t.owe(["c", "d", "e"])
    assert len(t._counts) == 2 and t.due(["a", "e"], 1) == ["e"]  # a was evicted: counts afresh
