"""Recently read activity bodies, kept by the embedded store (the hot read path hydrates 25 per
timeline read: ~90 us in SQLite on the 10k dataset here, a few dict lookups from this cache).

Only a store that is the sole writer of its activities may keep one (SQLite: one process owns the
file); it must :meth:`BodyCache.forget` bodies it rewrites once the write is done.  Bounded by
bytes; the oldest entries go first (insertion order: a hit does not refresh, which keeps a hit as
cheap as a lookup).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_BYTES = 64 * 1024 * 1024


class BodyCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bodies: dict[tuple[str, int], bytes] = {}
        self._bytes = 0

    def split(self, app: str, ids: Iterable[int]) -> tuple[dict[int, bytes], list[int]]:
        """The cached bodies of ``ids`` and the ids to read."""
        found: dict[int, bytes] = {}
        missing: list[int] = []
        bodies = self._bodies
        for i in ids:
            body = bodies.get((app, i))
            if body is None:
                missing.append(i)
            else:
                found[i] = body
        return found, missing

    def add(self, app: str, bodies: dict[int, bytes]) -> None:
        for i, body in bodies.items():
            if len(body) > self.max_bytes // 64:
                continue  # one huge body must not flush the cache
            key = (app, i)
            old = self._bodies.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._bodies[key] = body
            self._bytes += len(body)
        if self._bytes > self.max_bytes:
            self._evict()

    def forget(self, app: str, ids: Iterable[int]) -> None:
        for i in ids:
            old = self._bodies.pop((app, i), None)
            if old is not None:
                self._bytes -= len(old)

    def _evict(self) -> None:
        target = self.max_bytes * 3 // 4  # evict in bulk: eviction runs rarely
        bodies = self._bodies
        while self._bytes > target and bodies:
            key = next(iter(bodies))
            self._bytes -= len(bodies.pop(key))

    def __len__(self) -> int:
        return len(self._bodies)
