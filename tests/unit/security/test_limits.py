from __future__ import annotations

from realtime.security.limits import Counts, KeyedBuckets, TokenBucket


def test_token_bucket_refills_with_time() -> None:
    b = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert not b.take(0.4)
    assert b.take(0.5)


def test_keyed_buckets_are_per_key_bounded_and_zero_means_unlimited() -> None:
    k = KeyedBuckets(rate=1.0, burst_s=1.0, max_keys=3)
    assert k.allow("a", 0.0) and not k.allow("a", 0.0) and k.allow("b", 0.0)
    for i in range(10):
        k.allow(f"x{i}", 0.0)
    assert len(k._buckets) == 3
    assert all(KeyedBuckets(rate=0).allow("a", 0.0) for _ in range(1000))
    assert k.allow(None, 0.0)


def test_counts() -> None:
    c = Counts(2)
    assert c.acquire("ip") and c.acquire("ip") and not c.acquire("ip")
    c.release("ip")
    assert c.acquire("ip")
    for _ in range(3):
        c.release("ip")
    assert c._counts == {}
    assert all(Counts(0).acquire("ip") for _ in range(100))
