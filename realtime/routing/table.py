"""Which nodes may hold which keys: one filter replica per live node.

A publisher hashes its keys once (``hash_keys``) and tests the batch against every replica; all
filters share the layout, so the same hashes index replicas of any size. The answer can contain
false positives (the receiving node drops the message after checking its exact index) but never
false negatives, as long as each replica is in sync (``apply_delta`` raises ``ReplicaOutOfSync``
otherwise, and the caller reloads that node's snapshot).

The table is plain data: the Redis layer feeds it snapshots and deltas, the heartbeat logic
drops dead nodes, and the publish path asks ``nodes_for_channels``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from realtime.bayeux.channels import expand
from realtime.routing.cuckoo import CuckooFilter
from realtime.routing.errors import ReplicaOutOfSync
from realtime.routing.hashing import KeyHashes, hash_keys


class UnknownNode(ReplicaOutOfSync):
    """A delta for a node whose snapshot this table has not loaded yet."""


class RoutingTable:
    __slots__ = ("_replicas",)

    def __init__(self) -> None:
        self._replicas: dict[str, CuckooFilter] = {}

    # -- membership ---------------------------------------------------------------------------

    def set_node(self, node_id: str, replica: CuckooFilter) -> None:
        """Add a node or replace its replica (after a snapshot reload or a rebuild)."""
        self._replicas[node_id] = replica

    def load_snapshot(self, node_id: str, data: bytes | bytearray | memoryview) -> CuckooFilter:
        replica = CuckooFilter.from_bytes(data)
        self._replicas[node_id] = replica
        return replica

    def apply_delta(self, node_id: str, data: bytes | bytearray | memoryview) -> bool:
        """``CuckooFilter.apply_delta`` on that node's replica; ``UnknownNode`` if there is none."""
        replica = self._replicas.get(node_id)
        if replica is None:
            raise UnknownNode(f"no snapshot loaded for node {node_id!r}")
        return replica.apply_delta(data)

    def drop_node(self, node_id: str) -> bool:
        return self._replicas.pop(node_id, None) is not None

    def get(self, node_id: str) -> CuckooFilter | None:
        return self._replicas.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._replicas

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def node_ids(self) -> list[str]:
        return list(self._replicas)

    # -- lookups ------------------------------------------------------------------------------

    def hits(self, hashes: KeyHashes, exclude: str | None = None) -> dict[str, npt.NDArray[np.bool_]]:
        """Per node (except ``exclude``) with at least one hit: which of the hashed keys it may hold."""
        out: dict[str, npt.NDArray[np.bool_]] = {}
        if not len(hashes):
            return out
        for node_id, replica in self._replicas.items():
            if node_id == exclude:
                continue
            hit = replica.contains_hashed(hashes)
            if hit.any():
                out[node_id] = hit
        return out

    def nodes_for(self, keys: Sequence[str], exclude: str | None = None) -> dict[str, list[int]]:
        """``node -> indices into keys`` of the keys that node may hold; nodes with none omitted."""
        return {n: np.flatnonzero(hit).tolist() for n, hit in self.hits(hash_keys(keys), exclude).items()}

    def nodes_for_channels(self, channels: Iterable[str], exclude: str | None = None) -> dict[str, list[str]]:
        """``node -> channels`` to send there: a channel goes to a node if any key of its
        ``expand()`` (the name and every wildcard pattern matching it) may be in that node's filter.

        Channels must be valid names (not patterns); duplicates are routed once. Many channels
        bound for one node come back as one list, so a feed fan-out to 10k channels costs one
        message per node. Siblings share every pattern key (``expand`` derives patterns from the
        parent path only), so each parent is expanded once and each distinct key hashed once.
        """
        names = list(dict.fromkeys(channels))
        if not names or not self._replicas:
            return {}
        # Every step over the names is a C-level map or comprehension: this loop is the hot part.
        parent_keys = [name.rpartition("/")[0] for name in names]
        example = dict(zip(parent_keys, names, strict=True))  # parent -> one of its channels
        parent_id = {parent: i for i, parent in enumerate(example)}
        patterns: dict[str, int] = {}
        pattern_ids = [
            [patterns.setdefault(k, len(patterns)) for k in expand(name) if k != name]
            for name in example.values()
        ]
        parent_index = np.fromiter(map(parent_id.__getitem__, parent_keys), dtype=np.intp, count=len(names))
        # A name that is also some sibling's pattern cannot occur: names never end in * or **.
        pattern_keys = list(patterns)
        hashes = hash_keys(names + pattern_keys)
        # Flatten parent -> pattern ids for a segmented OR (every parent has >= 2 patterns).
        lengths = np.fromiter(map(len, pattern_ids), dtype=np.intp, count=len(pattern_ids))
        flat = np.fromiter((k for ids in pattern_ids for k in ids), dtype=np.intp, count=int(lengths.sum()))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out: dict[str, list[str]] = {}
        for node_id, hit in self.hits(hashes, exclude).items():
            name_hit = hit[: len(names)]
            parent_hit = np.logical_or.reduceat(hit[len(names) :][flat], starts)
            routed = name_hit | parent_hit[parent_index]
            idx = np.flatnonzero(routed).tolist()
            if idx:
                out[node_id] = [names[i] for i in idx]
        return out
