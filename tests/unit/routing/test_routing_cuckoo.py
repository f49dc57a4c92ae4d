"""CuckooFilter: no false negatives under any interleaving, batch == scalar, FP rate, capacity."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from realtime.routing import (
    CuckooFilter,
    FilterFull,
    GenerationMismatch,
    buckets_for,
    hash_key,
    hash_keys,
)
from realtime.routing.cuckoo import TARGET_LOAD

KEYS = [f"/chat/room{i}" for i in range(30)] + [f"user:{i}" for i in range(30)] + ["/**", "/chat/*"]


class FilterVsMultiset(RuleBasedStateMachine):
    """The model is the exact multiset of keys added and not yet removed.

    Small filters (1 to 16 buckets) make evictions and FilterFull common; a replica follows the
    owner through deltas taken at arbitrary points.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model: Counter[str] = Counter()
        self.f = CuckooFilter(1)
        self.replica = CuckooFilter.from_bytes(self.f.to_bytes())

    @initialize(bucket_count=st.sampled_from([1, 2, 4, 16]))
    def make(self, bucket_count: int) -> None:
        self.f = CuckooFilter(bucket_count)
        self.replica = CuckooFilter.from_bytes(self.f.to_bytes())

    @rule(key=st.sampled_from(KEYS))
    def add(self, key: str) -> None:
        before = self.f.buckets.copy()
        try:
            self.f.add(key)
        except FilterFull:
            assert np.array_equal(before, self.f.buckets), "a failed add must leave the filter unchanged"
        else:
            self.model[key] += 1

    @precondition(lambda self: any(self.model.values()))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, n in self.model.items() if n)))
        assert self.f.remove(key)
        self.model[key] -= 1

    @rule()
    def sync_replica(self) -> None:
        delta = self.f.take_delta()
        if delta is not None:
            assert self.replica.apply_delta(delta)
        assert self.replica == self.f
        assert len(self.replica) == len(self.f)

    @invariant()
    def no_false_negatives(self) -> None:
        present = [k for k, n in self.model.items() if n]
        for key in present:
            assert self.f.contains(key), key
        if present:
            assert self.f.contains_hashed(hash_keys(present)).all()

    @invariant()
    def fingerprints_are_exactly_the_model(self) -> None:
        stored = np.sort(self.f.buckets[self.f.buckets != 0])
        expected = np.sort(np.array([hash_key(k)[1] for k, n in self.model.items() for _ in range(n)]))
        assert np.array_equal(stored, expected.astype(np.uint16))
        assert len(self.f) == self.model.total()


TestFilterVsMultiset = FilterVsMultiset.TestCase
TestFilterVsMultiset.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@settings(max_examples=50, deadline=None)
@given(
    present=st.lists(st.text(max_size=12), max_size=200, unique=True),
    probes=st.lists(st.text(max_size=12), max_size=200),
    bucket_count=st.sampled_from([1, 8, 64, 1024]),
)
def test_batch_lookup_agrees_with_scalar_lookup(
    present: list[str], probes: list[str], bucket_count: int
) -> None:
    f = CuckooFilter(bucket_count)
    added = []
    for key in present:
        try:
            f.add(key)
        except FilterFull:
            break
        added.append(key)
    batch = f.contains_hashed(hash_keys(probes + added))
    assert batch.tolist() == [f.contains(k) for k in probes + added]
    assert batch[len(probes) :].all()


def test_add_many_matches_add_and_handles_collisions() -> None:
    keys = [f"k{i}" for i in range(3000)] + ["dup"] * 5
    f = CuckooFilter(buckets_for(len(keys)))
    f.add_many(keys)
    assert len(f) == len(keys)
    assert f.contains_many(keys).all()
    for _ in range(5):
        assert f.remove("dup")
    assert len(f) == 3000
    assert f.contains_many(keys[:3000]).all()


def test_hash_layout_is_pinned() -> None:
    # Changing the seed, the hash or the fingerprint rule breaks every replica in a mixed-version
    # cluster: if this fails on purpose, bump wire.FORMAT_VERSION.
    assert hash_key("/foo/bar") == (6936781462154718105, 17606)
    assert hash_key("user:42") == (15702508782689095441, 60254)
    hashes = hash_keys(["/foo/bar", "user:42"])
    assert hashes.fp.tolist() == [17606, 60254]
    assert hashes.h.view(np.uint64).tolist() == [6936781462154718105, 15702508782689095441]


def test_false_positive_rate_at_ninety_percent_load() -> None:
    n_buckets = 1 << 15
    n_keys = int(n_buckets * 4 * TARGET_LOAD)
    f = CuckooFilter.build((f"present:{i}" for i in range(n_keys)), n_keys)
    assert f.bucket_count == n_buckets
    assert f.load_factor == pytest.approx(0.9, abs=0.001)
    absent = hash_keys([f"absent:{i}" for i in range(200_000)])
    rate = float(f.contains_hashed(absent).mean())
    print(f"false-positive rate at load {f.load_factor:.3f}: {rate:.5%} (theory <= {8 / 65535:.5%})")
    assert 0 < rate < 0.0005


def test_buckets_for_sizes_to_target_load() -> None:
    assert buckets_for(0) == 1
    assert buckets_for(3) == 1
    assert buckets_for(4) == 2  # 4 keys in one 4-slot bucket would be load 1.0 > 0.9
    for capacity in (10, 1000, 943_718, 943_719):
        n = buckets_for(capacity)
        assert capacity <= n * 4 * TARGET_LOAD
        assert n == 1 or capacity > (n // 2) * 4 * TARGET_LOAD
    with pytest.raises(ValueError):
        CuckooFilter(3)


def test_fill_until_full_then_rebuild_at_double_size() -> None:
    f = CuckooFilter.for_capacity(900, generation=7)
    assert f.bucket_count == 256
    replica = CuckooFilter.from_bytes(f.to_bytes())
    keys: list[str] = []
    with pytest.raises(FilterFull):
        for i in range(f.capacity + 1):
            snapshot = f.to_bytes()
            f.add(f"user:{i}")
            keys.append(f"user:{i}")
    assert f.to_bytes() == snapshot, "FilterFull must leave the filter as it was"
    assert f.load_factor > 0.9, f"gave up early at load {f.load_factor:.3f}"
    assert f.contains_many(keys).all()

    bigger = CuckooFilter.rebuild(keys, f)
    assert bigger.bucket_count == 2 * f.bucket_count
    assert bigger.generation == 8
    assert len(bigger) == len(keys)
    assert bigger.contains_many(keys).all()
    assert bigger.take_delta() is None, "a rebuilt filter reaches replicas as a snapshot"
    bigger.add("user:new")
    delta = bigger.take_delta()
    assert delta is not None
    with pytest.raises(GenerationMismatch):
        replica.apply_delta(delta)


def test_build_grows_when_the_hint_is_too_small() -> None:
    keys = [f"k{i}" for i in range(5000)]
    f = CuckooFilter.build(keys, capacity_hint=10)
    assert f.contains_many(keys).all()
    assert f.load_factor <= TARGET_LOAD


def test_remove_of_absent_key_reports_false() -> None:
    f = CuckooFilter(64)
    f.add("a")
    assert not f.remove("b")
    assert "a" in f
    assert f.remove("a")
    assert "a" not in f
    assert len(f) == 0


def test_a_key_held_more_often_than_its_buckets_have_slots_is_refused_at_once() -> None:
    CuckooFilter.build(["/**"] * 8)  # two buckets of four slots: fits
    with pytest.raises(ValueError, match="at most 8"):
        CuckooFilter.build(["/**"] * 9, 1000)
