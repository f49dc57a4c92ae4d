"""Versioned binary format for filter snapshots and changed-bucket deltas.

All integers are little-endian. A *snapshot* is the whole filter::

    offset size  field
    0      4     magic b"CKFS"
    4      1     format version (FORMAT_VERSION)
    5      1     slots per bucket (4)
    6      1     fingerprint bits (16)
    7      1     zero
    8      4     generation (u32): bumped by the owner on every rebuild
    12     4     bucket count (u32, a power of two)
    16     8     count: occupied slots (u64)
    24     8     seq (u64): the last delta already reflected in this snapshot
    32     8*n   buckets: n x 4 u16 fingerprints, 0 = empty

A *delta* carries the full contents of every bucket changed since the previous delta::

    0      4     magic b"CKFD"
    4      3     version, slots per bucket, fingerprint bits (as above), then one zero byte
    8      4     generation (u32)
    12     4     bucket count (u32)
    16     8     seq (u64): exactly previous seq + 1
    24     4     k: number of changed buckets (u32)
    28     4*k   bucket indices (u32, strictly increasing)
    28+4k  8*k   their k x 4 u16 slots

Deltas hold absolute bucket contents, not operations, so re-applying a newer state over a
snapshot that already contains part of it is harmless; applying them out of order is not, which
is why replicas check ``seq``. Readers reject any version, slot count or fingerprint width they
do not know (``MalformedFilterData``) instead of guessing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from realtime.routing.errors import MalformedFilterData

FORMAT_VERSION = 1
SLOTS = 4
FINGERPRINT_BITS = 16
SNAPSHOT_MAGIC = b"CKFS"
DELTA_MAGIC = b"CKFD"

_SNAPSHOT = struct.Struct("<4sBBBxIIQQ")
_DELTA = struct.Struct("<4sBBBxIIQI")
_LE_U16 = np.dtype("<u2")
_LE_U32 = np.dtype("<u4")


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    seq: int
    count: int
    buckets: npt.NDArray[np.uint16]  # (n, 4), native byte order, writable


@dataclass(frozen=True, slots=True)
class Delta:
    generation: int
    bucket_count: int
    seq: int
    indices: npt.NDArray[np.intp]
    slots: npt.NDArray[np.uint16]  # (k, 4)


def _check_bucket_count(n: int) -> None:
    if n < 1 or n & (n - 1):
        raise MalformedFilterData(f"bucket count {n} is not a power of two")


def _check_preamble(magic: bytes, want: bytes, version: int, slots: int, bits: int) -> None:
    if magic != want:
        raise MalformedFilterData(f"bad magic {magic!r}, expected {want!r}")
    if version != FORMAT_VERSION:
        raise MalformedFilterData(f"unsupported filter format version {version}")
    if slots != SLOTS or bits != FINGERPRINT_BITS:
        raise MalformedFilterData(f"unsupported layout: {slots} slots of {bits} bits")


def encode_snapshot(generation: int, seq: int, count: int, buckets: npt.NDArray[np.uint16]) -> bytes:
    header = _SNAPSHOT.pack(
        SNAPSHOT_MAGIC, FORMAT_VERSION, SLOTS, FINGERPRINT_BITS, generation, len(buckets), count, seq
    )
    return header + buckets.astype(_LE_U16, copy=False).tobytes()


def decode_snapshot(data: bytes | bytearray | memoryview) -> Snapshot:
    if len(data) < _SNAPSHOT.size:
        raise MalformedFilterData(f"snapshot of {len(data)} bytes is shorter than its header")
    magic, version, slots, bits, generation, n, count, seq = _SNAPSHOT.unpack_from(data)
    _check_preamble(magic, SNAPSHOT_MAGIC, version, slots, bits)
    _check_bucket_count(n)
    if len(data) != _SNAPSHOT.size + n * SLOTS * 2:
        raise MalformedFilterData(f"snapshot of {len(data)} bytes does not hold {n} buckets")
    raw = np.frombuffer(data, dtype=_LE_U16, offset=_SNAPSHOT.size)
    buckets = raw.astype(np.uint16).reshape(n, SLOTS)  # astype copies: replicas mutate it
    if int(np.count_nonzero(buckets)) != count:
        raise MalformedFilterData(f"snapshot says {count} fingerprints but holds another number")
    return Snapshot(generation=generation, seq=seq, count=count, buckets=buckets)


def encode_delta(
    generation: int,
    bucket_count: int,
    seq: int,
    indices: npt.NDArray[np.intp],
    slots: npt.NDArray[np.uint16],
) -> bytes:
    header = _DELTA.pack(
        DELTA_MAGIC, FORMAT_VERSION, SLOTS, FINGERPRINT_BITS, generation, bucket_count, seq, len(indices)
    )
    return header + indices.astype(_LE_U32).tobytes() + slots.astype(_LE_U16, copy=False).tobytes()


def decode_delta(data: bytes | bytearray | memoryview) -> Delta:
    if len(data) < _DELTA.size:
        raise MalformedFilterData(f"delta of {len(data)} bytes is shorter than its header")
    magic, version, slots, bits, generation, n, seq, k = _DELTA.unpack_from(data)
    _check_preamble(magic, DELTA_MAGIC, version, slots, bits)
    _check_bucket_count(n)
    if len(data) != _DELTA.size + k * (4 + SLOTS * 2):
        raise MalformedFilterData(f"delta of {len(data)} bytes does not hold {k} buckets")
    indices = np.frombuffer(data, dtype=_LE_U32, count=k, offset=_DELTA.size).astype(np.intp)
    if k and (int(indices[-1]) >= n or bool(np.any(np.diff(indices) <= 0))):
        raise MalformedFilterData("delta bucket indices out of range or not strictly increasing")
    body = np.frombuffer(data, dtype=_LE_U16, count=k * SLOTS, offset=_DELTA.size + 4 * k)
    return Delta(generation, n, seq, indices, body.astype(np.uint16).reshape(k, SLOTS))
