"""Node-local state: sessions, the exact subscription index, mailboxes and holds."""

from __future__ import annotations

from realtime.engine.engine import Engine

__all__ = ["Engine"]
