"""A cuckoo filter with 16-bit fingerprints in 4-slot buckets, stored in one numpy array.

Theory of operation
-------------------
``buckets`` is a ``(n, 4)`` uint16 array, ``n`` a power of two; 0 marks an empty slot. A key
hashes (``realtime.routing.hashing``) to a fingerprint ``fp`` and two candidate buckets
``i1 = h & (n - 1)`` and ``i2 = i1 ^ (ALT[fp] & (n - 1))``. The key *may* be present iff ``fp``
sits in either bucket: no false negatives for keys added and not removed; a false positive needs
an absent key to share a fingerprint with one of the <= 8 slots it inspects, so the rate is at
most ``8 / 65535`` (~0.012%) at full load and proportionally less below it.

- ``add`` puts ``fp`` in a free slot of either bucket, else evicts a random slot's fingerprint to
  that fingerprint's other bucket, up to ``MAX_KICKS`` times. If that fails, every move is
  undone and ``FilterFull`` is raised: the filter is exactly as before and still has no false
  negatives.
- ``remove`` clears one copy of ``fp`` from either bucket. It is only safe for a key that was
  added (otherwise it may delete another key's fingerprint); the owner guarantees that with its
  exact refcounted index, adding a key with its first local holder and removing it with its last.
- Batch lookups (``contains_hashed``) view each bucket as one uint64 word, XOR it with the
  fingerprint repeated in every 16-bit lane and test "some lane is zero" with the classic SWAR
  expression: two gathers and a handful of numpy operations per batch, no Python loop per key.

Capacity policy
---------------
``for_capacity(c)`` and ``build(keys, c)`` choose the smallest power-of-two bucket count that
holds ``c`` keys at ``TARGET_LOAD`` (0.9); with 4-slot buckets and ``MAX_KICKS`` inserts
typically start failing only above ~0.95 load (the unit test sees ~0.98). When ``add`` raises
``FilterFull`` the owner rebuilds from its exact key set with ``rebuild(keys, old)``: double the
buckets, generation + 1 (after a large drop in keys, ``build(keys, generation=old.generation + 1)``
shrinks instead). The new generation makes every replica's next delta fail with
``GenerationMismatch``, so replicas reload the snapshot, which the owner must publish before its
first delta of the new generation.

Replication
-----------
The owner records changed buckets; ``take_delta()`` encodes them with the next ``seq`` and clears
the record. ``to_bytes()`` snapshots the filter with the seq of the last delta taken. A replica
made by ``from_bytes`` applies deltas in seq order with ``apply_delta`` (formats in ``wire``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from realtime.routing import wire
from realtime.routing.errors import FilterFull, GenerationMismatch, SequenceGap
from realtime.routing.hashing import ALT_LIST, KeyHashes, hash_key, hash_keys

SLOTS = wire.SLOTS
MAX_KICKS = 500
TARGET_LOAD = 0.9
MAX_BUCKETS = 1 << 31
_LANES = np.uint64(0x0001_0001_0001_0001)
_HIGH = np.uint64(0x8000_8000_8000_8000)


def buckets_for(capacity: int) -> int:
    """Smallest power-of-two bucket count holding ``capacity`` keys at ``TARGET_LOAD``."""
    need = max(1, -(-max(capacity, 1) * 10 // (SLOTS * 9)))  # ceil(c / (4 * 0.9)), exact in ints
    return 1 << (need - 1).bit_length()


class CuckooFilter:
    """Owner's filter or a replica of another node's; see the module docstring."""

    __slots__ = ("_buckets", "_count", "_dirty", "_generation", "_mask", "_rng", "_seq", "_words")

    def __init__(self, bucket_count: int, *, generation: int = 0, seq: int = 0) -> None:
        if bucket_count < 1 or bucket_count & (bucket_count - 1) or bucket_count > MAX_BUCKETS:
            raise ValueError(f"bucket count must be a power of two <= 2**31, not {bucket_count}")
        self._set_buckets(np.zeros((bucket_count, SLOTS), dtype=np.uint16), 0)
        self._generation = generation & 0xFFFF_FFFF
        self._seq = seq
        self._dirty: set[int] = set()
        # Eviction choices only need to be unbiased, not secret; a fixed seed keeps runs reproducible.
        self._rng = random.Random(0x5EED)

    def _set_buckets(self, buckets: npt.NDArray[np.uint16], count: int) -> None:
        self._buckets = buckets
        self._words: npt.NDArray[np.uint64] = buckets.view(np.uint64).reshape(len(buckets))
        self._mask = len(buckets) - 1
        self._count = count

    @classmethod
    def for_capacity(cls, capacity: int, *, generation: int = 0) -> CuckooFilter:
        return cls(buckets_for(capacity), generation=generation)

    @classmethod
    def build(cls, keys: Iterable[str], capacity_hint: int = 0, *, generation: int = 0) -> CuckooFilter:
        """A filter holding ``keys`` (each once per occurrence), sized for ``max(hint, len)``.

        A key held more times than its two buckets have slots fits at no size: ``_build`` would
        double the filter up to ``MAX_BUCKETS``, allocating gigabytes on the way (found by the
        routing property test), so such input is refused here.  ``rebuild`` takes a set."""
        key_list = list(keys)
        if key_list and (most := Counter(key_list).most_common(1)[0])[1] > 2 * SLOTS:
            raise ValueError(f"{most[0]!r} occurs {most[1]} times; a filter holds a key at most {2 * SLOTS}")
        return cls._build(key_list, buckets_for(max(capacity_hint, len(key_list))), generation)

    @classmethod
    def rebuild(cls, keys: Iterable[str], previous: CuckooFilter) -> CuckooFilter:
        """The owner's answer to ``FilterFull``: ``keys`` (its exact set) in a filter of the next
        generation with at least twice ``previous``'s buckets, more if ``keys`` need it."""
        key_list = list(keys)
        n = max(2 * previous.bucket_count, buckets_for(len(key_list)))
        return cls._build(key_list, n, previous.generation + 1)

    @classmethod
    def _build(cls, keys: list[str], bucket_count: int, generation: int) -> CuckooFilter:
        # Doubles the bucket count and starts over in the rare case an insert fails.
        hashes = hash_keys(keys)
        n = bucket_count
        while True:
            f = cls(n, generation=generation)
            try:
                f.add_many_hashed(hashes)
            except FilterFull:
                n *= 2
                continue
            f._dirty.clear()  # a new generation reaches replicas as a snapshot, never as a delta
            return f

    # -- introspection ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    @property
    def capacity(self) -> int:
        return len(self._buckets) * SLOTS

    @property
    def load_factor(self) -> float:
        return self._count / self.capacity

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def buckets(self) -> npt.NDArray[np.uint16]:
        """Read-only view of the ``(n, 4)`` fingerprint array."""
        view = self._buckets.view()
        view.flags.writeable = False
        return view

    # -- single keys --------------------------------------------------------------------------

    def add(self, key: str) -> None:
        """Insert one occurrence of ``key``; raises ``FilterFull`` (filter unchanged) if no room."""
        h, fp = hash_key(key)
        self._insert(h & self._mask, fp)

    def remove(self, key: str) -> bool:
        """Delete one occurrence of a key previously added; False if its fingerprint is absent."""
        h, fp = hash_key(key)
        i1 = h & self._mask
        for i in (i1, i1 ^ (ALT_LIST[fp] & self._mask)):
            row: list[int] = self._buckets[i].tolist()
            if fp in row:
                self._buckets[i, row.index(fp)] = 0
                self._count -= 1
                self._dirty.add(i)
                return True
        return False

    def contains(self, key: str) -> bool:
        h, fp = hash_key(key)
        i1 = h & self._mask
        i2 = i1 ^ (ALT_LIST[fp] & self._mask)
        return fp in self._buckets[i1].tolist() or fp in self._buckets[i2].tolist()

    __contains__ = contains

    def _insert(self, i1: int, fp: int) -> None:
        b, mask = self._buckets, self._mask
        i2 = i1 ^ (ALT_LIST[fp] & mask)
        for i in (i1, i2):
            row: list[int] = b[i].tolist()
            if 0 in row:
                b[i, row.index(0)] = fp
                self._count += 1
                self._dirty.add(i)
                return
        i = i1 if self._rng.getrandbits(1) else i2
        path: list[tuple[int, int, int]] = []
        for _ in range(MAX_KICKS):
            s = self._rng.randrange(SLOTS)
            victim = int(b[i, s])
            b[i, s] = fp
            path.append((i, s, victim))
            fp = victim
            i ^= ALT_LIST[fp] & mask
            row = b[i].tolist()
            if 0 in row:
                b[i, row.index(0)] = fp
                self._count += 1
                self._dirty.add(i)
                self._dirty.update(step[0] for step in path)
                return
        for i, s, old in reversed(path):
            b[i, s] = old
        raise FilterFull(f"no room after {MAX_KICKS} kicks at load {self.load_factor:.3f}")

    # -- batches ------------------------------------------------------------------------------

    def contains_hashed(self, hashes: KeyHashes) -> npt.NDArray[np.bool_]:
        """For each hashed key, whether it may be in the filter (vectorised, any filter size)."""
        m = np.int64(self._mask)
        i1 = hashes.h & m
        i2 = i1 ^ (hashes.alt & m)
        fp4 = hashes.fp.astype(np.uint64) * _LANES
        v1 = self._words[i1] ^ fp4
        v2 = self._words[i2] ^ fp4
        # (v - 0x0001..) & ~v & 0x8000.. is non-zero iff some 16-bit lane of v is zero.
        hit: npt.NDArray[np.bool_] = (((v1 - _LANES) & ~v1) | ((v2 - _LANES) & ~v2)) & _HIGH != 0
        return hit

    def contains_many(self, keys: list[str]) -> npt.NDArray[np.bool_]:
        return self.contains_hashed(hash_keys(keys))

    def add_many(self, keys: list[str]) -> None:
        self.add_many_hashed(hash_keys(keys))

    def add_many_hashed(self, hashes: KeyHashes) -> None:
        """Insert a batch: vectorised placement into free slots, then ``add``'s eviction path.

        On ``FilterFull`` part of the batch is already in; the owner rebuilds anyway.
        """
        m = np.int64(self._mask)
        i1 = (hashes.h & m).astype(np.intp)
        i2 = i1 ^ (hashes.alt & m).astype(np.intp)
        pending = np.arange(len(hashes), dtype=np.intp)
        for candidates in (i1, i2):
            placed = self._place(candidates[pending], hashes.fp[pending])
            pending = pending[~placed]
        for j in pending.tolist():
            self._insert(int(i1[j]), int(hashes.fp[j]))

    def _place(self, index: npt.NDArray[np.intp], fp: npt.NDArray[np.uint16]) -> npt.NDArray[np.bool_]:
        """Put each ``fp[j]`` into a free slot of bucket ``index[j]`` where one is left."""
        order = np.argsort(index, kind="stable")
        si = index[order]
        pos = np.arange(len(si))
        run_start = np.maximum.accumulate(np.where(np.r_[True, si[1:] != si[:-1]], pos, 0))
        rank = pos - run_start  # j-th key aiming at the same bucket takes its j-th free slot
        empty = self._buckets[si] == 0
        ok = rank < empty.sum(axis=1)
        nth_free = empty & (np.cumsum(empty, axis=1) == (rank + 1)[:, None])
        slot = nth_free.argmax(axis=1)
        self._buckets[si[ok], slot[ok]] = fp[order[ok]]
        self._count += int(ok.sum())
        self._dirty.update(si[ok].tolist())
        placed = np.zeros(len(index), dtype=np.bool_)
        placed[order[ok]] = True
        return placed

    # -- replication --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return wire.encode_snapshot(self._generation, self._seq, self._count, self._buckets)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> CuckooFilter:
        snap = wire.decode_snapshot(data)
        f = cls(1, generation=snap.generation, seq=snap.seq)
        f._set_buckets(snap.buckets, snap.count)
        return f

    @property
    def has_changes(self) -> bool:
        return bool(self._dirty)

    def take_delta(self) -> bytes | None:
        """Encode the buckets changed since the last call as delta ``seq + 1``; None if none."""
        if not self._dirty:
            return None
        indices = np.fromiter(sorted(self._dirty), dtype=np.intp, count=len(self._dirty))
        self._dirty.clear()
        self._seq += 1
        slots = self._buckets[indices]
        return wire.encode_delta(self._generation, self.bucket_count, self._seq, indices, slots)

    def apply_delta(self, data: bytes | bytearray | memoryview) -> bool:
        """Apply the owner's next delta to this replica.

        Returns False (and changes nothing) for a delta already reflected (seq <= ours). Raises
        ``GenerationMismatch`` for another generation or size and ``SequenceGap`` if a delta
        was missed; both are ``ReplicaOutOfSync``: the caller reloads the snapshot.
        """
        d = wire.decode_delta(data)
        if d.generation != self._generation or d.bucket_count != self.bucket_count:
            raise GenerationMismatch((self._generation, self.bucket_count), (d.generation, d.bucket_count))
        if d.seq <= self._seq:
            return False
        if d.seq != self._seq + 1:
            raise SequenceGap(self._seq + 1, d.seq)
        old = self._buckets[d.indices]
        self._count += int(np.count_nonzero(d.slots)) - int(np.count_nonzero(old))
        self._buckets[d.indices] = d.slots
        self._seq = d.seq
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CuckooFilter):
            return NotImplemented
        return (
            self._generation == other._generation
            and self._count == other._count
            and np.array_equal(self._buckets, other._buckets)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CuckooFilter(buckets={self.bucket_count}, count={self._count}, "
            f"load={self.load_factor:.3f}, generation={self._generation}, seq={self._seq})"
        )


__all__ = ["MAX_KICKS", "TARGET_LOAD", "CuckooFilter", "buckets_for"]
