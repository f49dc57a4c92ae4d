"""When to trim a timeline to its cap: every ``every`` inserted entries per feed.

Trimming on each insert would cost a DELETE per fan-out entry; trimming lazily lets a timeline
hold at most ``every - 1`` entries beyond its cap (plus one insert's worth), and reads are
unaffected. Counting per feed, rather than trimming at random, makes that bound hard. The counts
live in a bounded LRU: a feed evicted from it (more than ``max_feeds`` other feeds written since
its last insert) starts counting again, so only rarely written feeds can exceed the slack, and
slowly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

TRIM_EVERY = 32


class TrimSchedule:
    def __init__(self, every: int = TRIM_EVERY, max_feeds: int = 100_000) -> None:
        self.every = every
        self.max_feeds = max_feeds
        self._counts: OrderedDict[str, int] = OrderedDict()

    def owe(self, feeds: Iterable[str]) -> None:
        """Make the next insert into each of ``feeds`` trim it: pushes loaded back from the log at
        start may hold entries that a merge before the crash had already written and trimmed."""
        counts = self._counts
        for feed in feeds:
            counts.pop(feed, None)
            counts[feed] = self.every - 1
        self._bound()

    def due(self, feeds: Sequence[str], inserted: int) -> list[str]:
        """The feeds among ``feeds`` to trim now that ``inserted`` entries went into each."""
        out = []
        counts = self._counts
        for feed in feeds:
            count = counts.pop(feed, 0) + inserted
            if count >= self.every:
                out.append(feed)
                count = 0
            counts[feed] = count
        self._bound()
        return out

    def _bound(self) -> None:
        counts = self._counts
        while len(counts) > self.max_feeds:
            counts.popitem(last=False)
