"""Post.route: the sorted-slice split agrees with first-match-wins over the prefixes, whatever the
keys and prefixes (prefixes that start one another take the in-order path)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feeds.store.base import Entry, Post

_key = st.text(alphabet="ab:/1\U0010ffff", max_size=6)


def _first_match(groups: list[str], keys: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in keys:
        for prefix in groups:
            if key.startswith(prefix):
                out.setdefault(prefix, []).append(key)
                break
    return out


def _post(prefixes: list[str]) -> Post:
    groups = tuple((p, Entry(i), i) for i, p in enumerate(prefixes))
    return Post("a", "u:1", Entry(0), 10, 0, 100, 100, groups)


@given(st.lists(_key, max_size=4, unique=True), st.lists(_key, max_size=40))
def test_route_matches_first_prefix_wins(prefixes: list[str], keys: list[str]) -> None:
    routed = _post(prefixes).route(keys)
    got = {prefixes[entry.id]: sorted(ks) for ks, entry, cap in routed}
    assert all(cap == entry.id for _, entry, cap in routed)
    assert got == {p: sorted(ks) for p, ks in _first_match(prefixes, keys).items()}


def test_feed_group_prefixes_split_thousands_of_keys_by_slices() -> None:
    prefixes = ["1/user:", "1/timeline:", "1/aggregated:", "1/notification:"]
    keys = [f"1/timeline:{i}" for i in range(5000)] + [f"1/notification:{i}" for i in range(7)]
    keys += ["2/timeline:1", "1/timelinex:3"]
    routed = {prefixes[e.id]: ks for ks, e, _ in _post(prefixes).route(list(reversed(keys)))}
    assert sorted(routed) == ["1/notification:", "1/timeline:"]
    assert len(routed["1/timeline:"]) == 5000 and len(routed["1/notification:"]) == 7
