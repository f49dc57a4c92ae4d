"""The exact subscription index: subscription key -> the local sessions holding it.

A key *enters* the index with its first holder and *leaves* with its last; those
edges are reported to ``on_enter``/``on_leave`` (the broker, which keeps the
cluster's routing filters in step). Never use the filters to answer "who is here":
they may say yes wrongly; this index never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from realtime.bayeux.session import Session


class SubscriptionIndex:
    def __init__(self, on_enter: Callable[[str], None], on_leave: Callable[[str], None]) -> None:
        self.holders: dict[str, set[Session]] = {}
        self._on_enter = on_enter
        self._on_leave = on_leave
        self.count = 0

    def add(self, key: str, session: Session) -> bool:
        holders = self.holders.get(key)
        if holders is None:
            holders = self.holders[key] = set()
            self._on_enter(key)
        elif session in holders:
            return False
        holders.add(session)
        self.count += 1
        return True

    def remove(self, key: str, session: Session) -> bool:
        holders = self.holders.get(key)
        if holders is None or session not in holders:
            return False
        holders.discard(session)
        self.count -= 1
        if not holders:
            del self.holders[key]
            self._on_leave(key)
        return True

    def recipients(self, keys: Iterable[str]) -> set[Session] | frozenset[Session]:
        """Sessions holding any of ``keys``, each once."""
        found: list[set[Session]] = []
        get = self.holders.get
        for key in keys:
            holders = get(key)
            if holders:
                found.append(holders)
        if not found:
            return frozenset()
        if len(found) == 1:
            return found[0]
        return set().union(*found)

    def has_any(self, keys: Iterable[str]) -> bool:
        return any(k in self.holders for k in keys)

    def holds_each(self, keys: Iterable[str]) -> list[bool]:
        holders = self.holders
        return [k in holders for k in keys]
