"""Exceptions of the routing package.

::

    RoutingError
    ├── FilterFull            an insert found no home within the kick budget (owner must rebuild)
    ├── MalformedFilterData   bytes that are not a snapshot/delta this version can read
    └── ReplicaOutOfSync      a replica cannot apply a delta; the caller reloads the snapshot
        ├── SequenceGap         a delta arrived after a missing one
        └── GenerationMismatch  the delta belongs to another generation / bucket count
"""

from __future__ import annotations


class RoutingError(Exception):
    """Root of every error raised by ``realtime.routing``."""


class FilterFull(RoutingError):
    """The filter could not place a fingerprint; it is unchanged. Rebuild it larger."""


class MalformedFilterData(RoutingError, ValueError):
    """Bytes with a wrong magic, version, length or inconsistent fields."""


class ReplicaOutOfSync(RoutingError):
    """The replica missed something; the only cure is a fresh snapshot."""


class SequenceGap(ReplicaOutOfSync):
    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"delta seq {received} received, expected {expected}: reload the snapshot")
        self.expected = expected
        self.received = received


class GenerationMismatch(ReplicaOutOfSync):
    def __init__(self, replica: tuple[int, int], delta: tuple[int, int]) -> None:
        super().__init__(
            f"delta for generation {delta[0]} / {delta[1]} buckets, replica has generation "
            f"{replica[0]} / {replica[1]} buckets: reload the snapshot"
        )
        self.replica = replica
        self.delta = delta
