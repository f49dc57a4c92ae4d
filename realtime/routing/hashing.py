"""Key hashing shared by every filter and replica.

A key is hashed once with xxh3-64 (fixed seed, so every process agrees; Python's salted
``hash()`` would not). From the 64-bit hash ``h``:

- the primary bucket is ``h & mask`` where ``mask = buckets - 1``; bucket counts are powers of
  two, so the same ``h`` indexes a filter of any size;
- the fingerprint is ``(h >> 40) % 65535 + 1``: 16 bits, never 0 (0 marks an empty slot), taken
  from bits the mask does not use for any filter below 2**40 buckets;
- the alternate bucket is ``i ^ (ALT[fp] & mask)`` (partial-key cuckoo hashing): it depends only
  on the bucket and the fingerprint, so a fingerprint can move between its two buckets without
  the key, and the XOR makes the relation symmetric.

``ALT`` is a fixed table of 65536 mixed 64-bit values (the murmur3 ``fmix64`` finaliser of the
fingerprint), computed at import; changing it, the seed or the fingerprint rule changes the wire
format and must bump ``FORMAT_VERSION`` in ``realtime.routing.wire``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xxhash

KEY_SEED = 0x5EED_C0C0_F11E_0001
FINGERPRINT_BITS = 16


def _fmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # Array arithmetic on uint64 wraps modulo 2**64 without warnings, which is what we want.
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


# ALT[fp] viewed as int64 so masked values index numpy arrays without a conversion.
ALT: npt.NDArray[np.int64] = _fmix64(np.arange(1 << FINGERPRINT_BITS, dtype=np.uint64)).view(np.int64)
ALT_LIST: list[int] = ALT.tolist()


@dataclass(frozen=True, slots=True)
class KeyHashes:
    """Hashes of a batch of keys, valid for every filter size.

    ``h`` is the xxh3-64 hash viewed as int64 (only masked low bits are used), ``fp`` the
    fingerprints, ``alt`` = ``ALT[fp]`` so each replica only masks and XORs.
    """

    h: npt.NDArray[np.int64]
    fp: npt.NDArray[np.uint16]
    alt: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.h)

    def take(self, index: npt.NDArray[np.intp]) -> KeyHashes:
        return KeyHashes(self.h[index], self.fp[index], self.alt[index])


def hash_key(key: str) -> tuple[int, int]:
    """``(h, fp)`` of one key as Python ints (the scalar path of ``add``/``remove``)."""
    h = xxhash.xxh3_64_intdigest(key.encode(), KEY_SEED)
    return h, (h >> 40) % 0xFFFF + 1


def hash_keys(keys: Sequence[str]) -> KeyHashes:
    """Hash a batch once; the result can be tested against any number of replicas."""
    raw = np.fromiter(
        map(xxhash.xxh3_64_intdigest, map(str.encode, keys), itertools.repeat(KEY_SEED)),
        dtype=np.uint64,
        count=len(keys),
    )
    fp = ((raw >> np.uint64(40)) % np.uint64(0xFFFF) + np.uint64(1)).astype(np.uint16)
    return KeyHashes(raw.view(np.int64), fp, ALT[fp])
