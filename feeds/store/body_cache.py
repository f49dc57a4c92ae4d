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
    """Bodies per app, keyed by id: a hit is one int-keyed dict lookup (a (app, id) tuple key cost
    a tuple and its hash per lookup, a few percent of a timeline read)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._apps: dict[str, dict[int, bytes]] = {}
        self._app_bytes: dict[str, int] = {}
        self._bytes = 0

    def split(self, app: str, ids: Iterable[int]) -> tuple[dict[int, bytes], list[int]]:
        """The cached bodies of ``ids`` and the ids to read."""
        bodies = self._apps.get(app)
        if bodies is None:
            return {}, list(ids)
        found: dict[int, bytes] = {}
        missing: list[int] = []
        get = bodies.get
        for i in ids:
            body = get(i)
            if body is None:
                missing.append(i)
            else:
                found[i] = body
        return found, missing

    def add(self, app: str, bodies: dict[int, bytes]) -> None:
        kept = self._apps.setdefault(app, {})
        size = self._app_bytes.get(app, 0)
        for i, body in bodies.items():
            if len(body) > self.max_bytes // 64:
                continue  # one huge body must not flush the cache
            old = kept.pop(i, None)
            if old is not None:
                size -= len(old)
            kept[i] = body
            size += len(body)
        self._bytes += size - self._app_bytes.get(app, 0)
        self._app_bytes[app] = size
        if self._bytes > self.max_bytes:
            self._evict()

    def forget(self, app: str, ids: Iterable[int]) -> None:
        kept = self._apps.get(app)
        if kept is None:
            return
        for i in ids:
            old = kept.pop(i, None)
            if old is not None:
                self._bytes -= len(old)
                self._app_bytes[app] -= len(old)

    def _evict(self) -> None:
        """Oldest first, from the app holding the most bytes, down to 3/4 of the bound (in bulk:
        eviction runs rarely)."""
        target = self.max_bytes * 3 // 4
        while self._bytes > target:
            app = max(self._app_bytes, key=self._app_bytes.__getitem__)
            kept = self._apps[app]
            over = self._bytes - target
            freed = 0
            while freed < over and kept:
                freed += len(kept.pop(next(iter(kept))))
            self._app_bytes[app] -= freed
            self._bytes -= freed
            if not kept:
                del self._apps[app], self._app_bytes[app]

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._apps.values())
