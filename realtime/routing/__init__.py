"""Pure cluster routing: cuckoo filters, their wire format and the table of node replicas.

Nothing here performs I/O or imports asyncio, sockets, Redis or a web framework (a test in
``tests/unit/routing`` reads every module's imports): the broker layer moves the bytes that
``CuckooFilter.to_bytes`` / ``take_delta`` produce and feeds them to ``RoutingTable``.
"""

from __future__ import annotations

from realtime.routing.cuckoo import MAX_KICKS, TARGET_LOAD, CuckooFilter, buckets_for
from realtime.routing.errors import (
    FilterFull,
    GenerationMismatch,
    MalformedFilterData,
    ReplicaOutOfSync,
    RoutingError,
    SequenceGap,
)
from realtime.routing.hashing import KeyHashes, hash_key, hash_keys
from realtime.routing.table import RoutingTable, UnknownNode

__all__ = [
    "MAX_KICKS",
    "TARGET_LOAD",
    "CuckooFilter",
    "FilterFull",
    "GenerationMismatch",
    "KeyHashes",
    "MalformedFilterData",
    "ReplicaOutOfSync",
    "RoutingError",
    "RoutingTable",
    "SequenceGap",
    "UnknownNode",
    "buckets_for",
    "hash_key",
    "hash_keys",
]
