"""Snapshots and deltas: exact byte layout, round trips, sequence gaps, corrupt input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.routing import (
    CuckooFilter,
    GenerationMismatch,
    MalformedFilterData,
    ReplicaOutOfSync,
    SequenceGap,
)
from realtime.routing.wire import FORMAT_VERSION


def filled(n_keys: int, bucket_count: int = 64, generation: int = 0) -> CuckooFilter:
    f = CuckooFilter(bucket_count, generation=generation)
    for i in range(n_keys):
        f.add(f"/room/{i}")
    return f


def test_snapshot_layout_is_little_endian_and_versioned() -> None:
    f = filled(10, bucket_count=4, generation=3)
    f.take_delta()
    data = f.to_bytes()
    magic, version, slots, bits, pad, generation, n, count, seq = struct.unpack_from("<4sBBBBIIQQ", data)
    assert (magic, version, slots, bits, pad) == (b"CKFS", FORMAT_VERSION, 4, 16, 0)
    assert (generation, n, count, seq) == (3, 4, 10, 1)
    assert len(data) == 32 + 4 * 4 * 2
    assert data[32:] == f.buckets.astype("<u2").tobytes()


def test_snapshot_round_trip_and_independence() -> None:
    f = filled(200)
    replica = CuckooFilter.from_bytes(f.to_bytes())
    assert replica == f
    assert (replica.generation, replica.seq, len(replica)) == (f.generation, f.seq, len(f))
    replica.add("only-in-replica")  # the replica owns its memory: the owner is not affected
    assert replica != f
    assert CuckooFilter.from_bytes(memoryview(bytearray(f.to_bytes()))) == f


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "delta", "snapshot"]), st.integers(0, 80)),
        max_size=120,
    )
)
def test_replica_follows_owner_through_deltas(ops: list[tuple[str, int]]) -> None:
    owner = CuckooFilter(32)
    replicas = [CuckooFilter.from_bytes(owner.to_bytes())]
    deltas: list[bytes] = []
    present: list[str] = []
    for op, n in ops:
        key = f"user:{n}"
        if op == "add" and owner.load_factor < 0.8:
            owner.add(key)
            present.append(key)
        elif op == "remove" and key in present:
            assert owner.remove(key)
            present.remove(key)
        elif op == "delta" and (delta := owner.take_delta()) is not None:
            deltas.append(delta)
            for r in replicas:
                assert r.apply_delta(delta)
        elif op == "snapshot":
            # A snapshot taken with changes not yet in a delta: the next delta repeats them harmlessly.
            replicas.append(CuckooFilter.from_bytes(owner.to_bytes()))
    final = owner.take_delta()
    for r in replicas:
        if final is not None:
            assert r.apply_delta(final)
        assert r == owner
        assert r.seq == owner.seq
        assert r.contains_many(present).all()
        # Old deltas are recognised as already applied and ignored.
        for d in deltas:
            assert not r.apply_delta(d)
        assert r == owner


def test_gap_is_detected_and_snapshot_reload_recovers() -> None:
    owner = CuckooFilter(16)
    replica = CuckooFilter.from_bytes(owner.to_bytes())
    deltas = []
    for i in range(3):
        owner.add(f"k{i}")
        delta = owner.take_delta()
        assert delta is not None
        deltas.append(delta)
    assert owner.take_delta() is None
    assert replica.apply_delta(deltas[0])
    before = replica.to_bytes()
    with pytest.raises(SequenceGap) as gap:
        replica.apply_delta(deltas[2])
    assert (gap.value.expected, gap.value.received) == (2, 3)
    assert isinstance(gap.value, ReplicaOutOfSync)
    assert replica.to_bytes() == before, "a rejected delta must not change the replica"
    replica = CuckooFilter.from_bytes(owner.to_bytes())
    assert replica.seq == 3
    assert replica == owner


def test_delta_for_other_generation_or_size_is_rejected() -> None:
    owner = filled(5, bucket_count=16, generation=1)
    owner.take_delta()
    other_gen = filled(5, bucket_count=16, generation=2)
    other_size = filled(5, bucket_count=32, generation=1)
    replica = CuckooFilter.from_bytes(owner.to_bytes())
    for source in (other_gen, other_size):
        source.add("x")
        source.take_delta()  # seq 1 is in the snapshot-equivalent state; seq 2 would be "next"
        source.add("y")
        delta = source.take_delta()
        assert delta is not None
        with pytest.raises(GenerationMismatch):
            replica.apply_delta(delta)
    assert replica == owner


def test_delta_layout() -> None:
    f = CuckooFilter(8, generation=5)
    f.add("a")
    f.add("b")
    data = f.take_delta()
    assert data is not None
    magic, version, slots, bits, generation, n, seq, k = struct.unpack_from("<4sBBBxIIQI", data)
    assert (magic, version, slots, bits, generation, n, seq) == (b"CKFD", FORMAT_VERSION, 4, 16, 5, 8, 1)
    assert k in (1, 2)
    indices = np.frombuffer(data, "<u4", count=k, offset=28)
    body = np.frombuffer(data, "<u2", offset=28 + 4 * k).reshape(k, 4)
    assert np.array_equal(body, f.buckets[indices])
    assert len(data) == 28 + 12 * k


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([FORMAT_VERSION + 1]) + b[5:], "version"),
        (lambda b: b[:5] + bytes([8]) + b[6:], "layout"),
        (lambda b: b[:-1], "does not hold"),
        (lambda b: b[:10], "shorter"),
        (lambda b: b[:12] + struct.pack("<I", 3) + b[16:], "power of two"),
        (lambda b: b[:16] + struct.pack("<Q", 999) + b[24:], "fingerprints"),
    ],
)
def test_corrupt_snapshot_is_rejected(mutate: object, message: str) -> None:
    data = filled(20).to_bytes()
    assert callable(mutate)
    with pytest.raises(MalformedFilterData, match=message):
        CuckooFilter.from_bytes(mutate(data))


def test_corrupt_delta_is_rejected() -> None:
    f = CuckooFilter(8)
    f.add("a")
    replica = CuckooFilter.from_bytes(CuckooFilter(8).to_bytes())
    data = f.take_delta()
    assert data is not None
    out_of_range = data[:28] + struct.pack("<I", 8) + data[32:]
    for bad in (data[:-2], b"CKFS" + data[4:], out_of_range):
        with pytest.raises(MalformedFilterData):
            replica.apply_delta(bad)
    assert replica.apply_delta(data)
