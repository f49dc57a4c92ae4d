"""The merge of a timeline read: a feed's own page with the pulled feeds' entries, newest first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.fanout import SORT_UP_TO, _newest
from feeds.store.base import Entry


def reference(lists: list[list[Entry]], need: int) -> list[Entry]:
    """The slow, obvious answer: the first copy of each id, by list order, newest id first."""
    first: dict[int, Entry] = {}
    for entries in lists:
        for entry in entries:
            first.setdefault(entry.id, entry)
    return [first[i] for i in sorted(first, reverse=True)[:need]]


def feed(origin: str, ids: list[int]) -> list[Entry]:
    return [Entry(i, origin) for i in sorted(set(ids), reverse=True)]


@given(
    st.lists(st.lists(st.integers(1, 60), max_size=30), min_size=1, max_size=8),
    st.integers(1, 12),
)
def test_the_merge_matches_the_obvious_answer(raw: list[list[int]], need: int) -> None:
    lists = [feed(f"f{n}", ids) for n, ids in enumerate(raw)]
    assert _newest(lists, need) == reference(lists, need)


@pytest.mark.parametrize("pulled_per_feed", [1, 10])  # few candidates: sorted; many: heap merge
def test_the_own_copy_of_an_id_wins_on_either_path(pulled_per_feed: int) -> None:
    need = 5
    own = feed("own", [100, 90, 80, 70, 60])
    pulled = [feed(f"p{n}", [90 + n, *range(1, pulled_per_feed)]) for n in range(4)]
    total = sum(map(len, [own, *pulled]))
    assert (total <= SORT_UP_TO * need) == (pulled_per_feed == 1)
    got = _newest([own, *pulled], need)
    assert [(e.id, e.origin) for e in got] == [(100, "own"), (93, "p3"), (92, "p2"), (91, "p1"), (90, "own")]
