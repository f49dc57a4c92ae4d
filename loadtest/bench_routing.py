"""Micro-benchmark of the pure routing layer (not a test): lookups, serialisation, fan-out routing.

    python3 loadtest/bench_routing.py [--quick]

Prints one table. Each figure is the median of several timed repetitions on this process;
nothing here does I/O. ``--quick`` shrinks the sizes tenfold for a smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from realtime.routing import CuckooFilter, RoutingTable, hash_keys

Row = tuple[str, str, str]


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_lookups(rows: list[Row], n_buckets: int) -> None:
    n_keys = int(n_buckets * 4 * 0.9)
    f = CuckooFilter.build((f"/feed/user/{i}" for i in range(n_keys)), n_keys)
    rows.append(
        ("filter under test", f"{n_keys:,} keys, {f.bucket_count:,} buckets", f"load {f.load_factor:.3f}")
    )
    for batch in (100, 1_000, 10_000, 100_000):
        keys = [f"/feed/user/{i * 7}" for i in range(batch // 2)] + [f"absent:{i}" for i in range(batch // 2)]
        hashes = hash_keys(keys)
        repeat = max(5, 200_000 // batch)
        t_hash = median_s(lambda k=keys: hash_keys(k), repeat)  # type: ignore[misc]
        t_look = median_s(lambda h=hashes: f.contains_hashed(h), repeat)  # type: ignore[misc]
        rows.append(
            (
                f"lookup, batch {batch:,}",
                f"{t_look / batch * 1e9:.1f} ns/key",
                f"+ hashing {t_hash / batch * 1e9:.0f} ns/key",
            )
        )
    one = f"/feed/user/{n_keys // 3}"
    t_one = median_s(lambda: [f.contains(one) for _ in range(1000)], 20) / 1000
    rows.append(("lookup, single key (scalar)", f"{t_one * 1e9:.0f} ns/key", "hash included"))


def bench_serialisation(rows: list[Row], n_keys: int) -> None:
    keys = [f"user:{i}" for i in range(n_keys)]
    t0 = time.perf_counter()
    sized = CuckooFilter.build(keys)
    t_build = time.perf_counter() - t0
    rows.append(
        (
            f"build {n_keys:,} keys",
            f"{t_build * 1e3:.0f} ms",
            f"{sized.bucket_count:,} buckets, load {sized.load_factor:.2f}",
        )
    )
    dense_keys = int(sized.bucket_count // 2 * 4 * 0.9)
    dense = CuckooFilter.build(keys[:dense_keys])
    for label, f in ((f"{n_keys:,} keys", sized), (f"{dense_keys:,} keys (load 0.9)", dense)):
        data = f.to_bytes()
        t_enc = median_s(f.to_bytes, 20)
        t_dec = median_s(lambda d=data: CuckooFilter.from_bytes(d), 20)  # type: ignore[misc]
        rows.append(
            (
                f"snapshot, {label}",
                f"{len(data) / len(f):.2f} B/key, {len(data):,} B",
                f"encode {t_enc * 1e3:.2f} ms, decode {t_dec * 1e3:.2f} ms",
            )
        )
    replica = CuckooFilter.from_bytes(dense.to_bytes())
    for i in range(1000):
        dense.remove(keys[i])
        dense.add(f"new:{i}")
    t0 = time.perf_counter()
    delta = dense.take_delta()
    t_take = time.perf_counter() - t0
    assert delta is not None
    t0 = time.perf_counter()
    replica.apply_delta(delta)
    t_apply = time.perf_counter() - t0
    assert replica == dense
    rows.append(
        (
            "delta after 1k removes + 1k adds",
            f"{len(delta):,} B",
            f"take {t_take * 1e3:.2f} ms, apply {t_apply * 1e3:.2f} ms",
        )
    )

    def churn() -> None:
        for i in range(1000):
            dense.add(f"x{i}")
        for i in range(1000):
            dense.remove(f"x{i}")

    t_add = median_s(churn, 5)
    rows.append(("owner add + remove (scalar)", f"{t_add / 1000 * 1e6:.1f} µs/pair", "load 0.9"))


def bench_fan_out(rows: list[Row], n_nodes: int, keys_per_node: int, n_channels: int) -> None:
    channels = [f"/feed/timeline/{i}" for i in range(n_channels)]
    table = RoutingTable()
    for node in range(n_nodes):
        own = channels[node::n_nodes]  # each fan-out channel has a subscriber on exactly one node
        other = [f"/chat/n{node}/{i}" for i in range(keys_per_node - len(own) - 1000)]
        users = [f"user:{node}:{i}" for i in range(1000)]
        table.set_node(f"node{node}", CuckooFilter.build(own + other + users))
    sample = table.get("node0")
    assert sample is not None
    t_wall = median_s(lambda: table.nodes_for_channels(channels), 15)
    c0 = time.process_time()
    for _ in range(10):
        routed = table.nodes_for_channels(channels)
    t_cpu = (time.process_time() - c0) / 10
    sent = sum(map(len, routed.values()))
    rows.append(
        (
            f"route {n_channels:,} channels, {n_nodes} replicas",
            f"{t_wall * 1e3:.2f} ms wall, {t_cpu * 1e3:.2f} ms CPU",
            f"{len(routed)} messages, {sent:,} channel entries ({sent - n_channels} false positives)",
        )
    )
    rows.append(
        (
            "  per replica",
            f"{keys_per_node:,} keys",
            f"{sample.bucket_count:,} buckets, load {sample.load_factor:.2f}",
        )
    )
    user_keys = [f"user:{i % n_nodes}:{i}" for i in range(n_channels)]
    t_users = median_s(lambda: table.nodes_for(user_keys), 15)
    rows.append(
        (
            f"route {n_channels:,} user keys, {n_nodes} replicas",
            f"{t_users * 1e3:.2f} ms wall",
            "nodes_for(keys)",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tenfold smaller sizes (smoke run)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    rows: list[Row] = []
    bench_lookups(rows, (1 << 18) >> (3 if args.quick else 0))
    bench_serialisation(rows, 1_000_000 // scale)
    bench_fan_out(rows, 10, 50_000 // scale, 10_000 // scale)
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, width, strict=True)).rstrip())


if __name__ == "__main__":
    main()
