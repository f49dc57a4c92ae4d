"""Rate and count limits. Pure: every call takes ``now``.

A ``TokenBucket`` allows ``rate`` events per second with bursts of ``burst``.
``KeyedBuckets`` keeps one bucket per key (client id, IP) in a bounded LRU, so an
attacker who rotates keys costs memory up to the bound and no more. A rate of 0
means no limit.
"""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class KeyedBuckets:
    def __init__(self, rate: float, burst_s: float = 2.0, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * burst_s)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str | None, now: float, cost: float = 1.0) -> bool:
        if self.rate <= 0 or key is None:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


class Counts:
    """Open things per key (sessions per IP, sockets per IP) under a ceiling (0: none)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self._counts: dict[str, int] = {}

    def acquire(self, key: str | None) -> bool:
        if key is None or self.ceiling <= 0:
            return True
        n = self._counts.get(key, 0)
        if n >= self.ceiling:
            return False
        self._counts[key] = n + 1
        return True

    def release(self, key: str | None) -> None:
        if key is None or self.ceiling <= 0:
            return
        n = self._counts.get(key, 0) - 1
        if n <= 0:
            self._counts.pop(key, None)
        else:
            self._counts[key] = n
