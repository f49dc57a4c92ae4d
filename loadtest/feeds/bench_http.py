"""Stream's benchmark mix against a real node: locust at several offered rates, one run each.

The node (``realtime serve``, the product as shipped: Bayeux, the feed API and the live-update
notifier) serves a dataset from ``dataset.py`` on one pinned core; locust (``locustfile.py``,
90 % timeline reads of 25 hydrated activities, 10 % writes) runs on the other.  For every rate it
reports what the load generator saw (requests/s served, read and write p50/p99, failures) and what
the server spent: CPU-seconds per request, read from /proc, which is the figure that survives a
noisy machine.  Before the first rate it waits while ``/health`` says the feed store is still loading
its page cache (``feeds_prewarm``, stores of 1 GiB or more that fit ``feeds_cache_mb``), and
prints how long.  ``--generator locust`` (the locustfile, the issue's instrument) or ``mix`` (mix.py,
open loop, sub-millisecond floor: locust's own floor is p50 6 ms / p99 15 ms here), or ``both``.

    python3 loadtest/feeds/bench_http.py --db /path/feeds-bench.db --users 10000 --rates 500,1000,1500

The dataset is served in place (the writes add activities to it); pass ``--copy`` to serve a copy of
a SQLite file.  ``--store redis://127.0.0.1:6379/3`` serves a Redis dataset made with
``dataset.py --redis redis://127.0.0.1:6379/3 --prefix feeds:`` (the node's key prefix).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dataset import APP

HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the node did not become healthy")


def wait_loaded(port: int, deadline_s: float) -> float:
    """Wait while ``/health`` says the feed store is still loading its page cache
    (``feeds_prewarm``): runs measure the node as it serves once started, not its first minute.
    Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            if "feeds_cache" not in json.loads(reply.read()):
                return time.monotonic() - started
        time.sleep(1.0)
    raise RuntimeError("the node's feed store did not finish loading its page cache")


def start_node(store: str, port: int, core: str, config: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REALTIME_FEEDS_STORE": store, "REALTIME_LOG_LEVEL": "warning"}
    app = f"{APP.app_id}:{APP.api_key}:{APP.api_secret}"
    cmd = ["taskset", "-c", core, sys.executable, "-c", "from realtime.cli import main; main()", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--app", app]
    if config:
        cmd += ["--config", config]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def run_locust(
    port: int, users: int, rate: int, seconds: int, core: str, out: Path
) -> dict[str, dict[str, str]]:
    per_user = 10  # locustfile: constant_throughput(FEEDS_RATE_PER_USER), 10 by default
    clients = max(1, rate // per_user)
    env = {**os.environ, "FEEDS_USERS": str(users), "FEEDS_RATE_PER_USER": str(rate / clients)}
    cmd = ["taskset", "-c", core, sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py")]
    cmd += ["--headless", "-H", f"http://127.0.0.1:{port}", "-u", str(clients), "-r", str(clients)]
    cmd += ["-t", f"{seconds}s", "--csv", str(out), "--only-summary"]
    subprocess.run(
        cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60
    )
    with open(f"{out}_stats.csv", newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def run_mix(port: int, users: int, rate: int, seconds: int, core: str) -> dict[str, object]:
    cmd = ["taskset", "-c", core, sys.executable, str(HERE / "mix.py"), "--port", str(port)]
    cmd += ["--users", str(users), "--rate", str(rate), "--seconds", str(seconds)]
    done = subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 180)
    row: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return row


def from_locust(stats: dict[str, dict[str, str]]) -> dict[str, object]:
    total = stats["Aggregated"]
    served, failed = int(total["Request Count"]), int(total["Failure Count"])
    row: dict[str, object] = {
        "served_rps": round(float(total["Requests/s"]), 1),
        "failures": failed,
        "success_rate": round(1 - failed / max(served, 1), 5),
        "requests": served,
    }
    for name in ("read", "write"):
        if name in stats:
            row[f"{name}_p50_ms"] = float(stats[name]["50%"])
            row[f"{name}_p99_ms"] = float(stats[name]["99%"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="a SQLite dataset file")
    where.add_argument("--store", help="a feed store URL instead, e.g. a Redis dataset (prefix feeds:)")
    parser.add_argument("--users", type=int, default=100_000, help="users in the dataset")
    parser.add_argument("--rates", default="500,1000,1500")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--port", type=int, default=8120)
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--copy", action="store_true", help="serve a copy of --db")
    parser.add_argument("--generator", choices=["mix", "locust", "both"], default="both")
    parser.add_argument("--config", help="node config file (e.g. [feeds.fanout] settings)")
    parser.add_argument(
        "--settle",
        type=float,
        default=13.0,
        help="seconds to wait after each run before reading the server's CPU, so work it deferred "
        "(the SQLite store merges pending pushes within 10 s) is charged to that run",
    )
    args = parser.parse_args()
    if args.generator in ("locust", "both") and importlib.util.find_spec("locust") is None:
        # checked first: locust's absence otherwise showed only as its missing CSV, after the copy
        # and the node's start
        parser.error("--generator locust needs locust installed (pip install locust)")
    with tempfile.TemporaryDirectory(prefix="feeds-http-") as tmp:
        store = args.store or f"sqlite:{args.db}"
        if args.copy and args.db:
            store = f"sqlite:{Path(tmp) / 'feeds.db'}"
            shutil.copyfile(args.db, store.removeprefix("sqlite:"))
        node = start_node(store, args.port, args.server_core, args.config)
        try:
            wait_healthy(args.port, 60)
            print(json.dumps({"cache_loaded_after_s": round(wait_loaded(args.port, 900), 1)}), flush=True)
            generators = ["mix", "locust"] if args.generator == "both" else [args.generator]
            for rate in (int(r) for r in args.rates.split(",")):
                for generator in generators:
                    before, started = cpu_seconds(node.pid), time.monotonic()
                    if generator == "locust":
                        out = Path(tmp) / f"r{rate}"
                        row = from_locust(
                            run_locust(args.port, args.users, rate, args.seconds, args.client_core, out)
                        )
                    else:
                        row = run_mix(args.port, args.users, rate, args.seconds, args.client_core)
                        row["requests"] = round(float(str(row["served_rps"])) * args.seconds)
                    wall = time.monotonic() - started
                    time.sleep(args.settle)
                    spent = cpu_seconds(node.pid) - before
                    served = int(str(row.pop("requests")))
                    row = {"generator": generator, "offered_rps": rate, **row}
                    row["server_cpu_ms_per_request"] = round(spent * 1000 / max(served, 1), 3)
                    # wall: the generator's start-up and drain too; spent: the settle time too
                    row["server_core_busy"] = round(spent / wall, 2)
                    print(json.dumps(row), flush=True)
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


if __name__ == "__main__":
    main()
