"""Store seam: :class:`Store` protocol with SQLite (embedded) and Redis (cluster) implementations."""

from __future__ import annotations

from feeds.store.base import Bounds, Entry, Follow, Store

__all__ = ["Bounds", "Entry", "Follow", "Store"]
