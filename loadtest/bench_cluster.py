"""Cluster benchmark (not a test): filter routing against broadcast on four real nodes.

    python3 loadtest/bench_cluster.py [--quick] [--users N] [--json PATH]

Starts its own ``redis-server`` on a free port (stopped by PID at the end) and, once per routing
mode, four ``realtime serve`` nodes on it. ``--users`` WebSocket clients (a minimal Bayeux client
below) are spread round-robin over the nodes, each subscribed to its own ``/user/<i>``. Then:

1. **single updates**: a backend ``Publisher`` publishes to random online users one at a time
   (each awaited), so every update is its own routing decision;
2. **batched updates**: the same, 100 per ``publish_many`` (one frame per target node);
3. **client updates**: clients publish through their own node to another user's channel;
4. **fan-outs**: ``publish_many`` to 10k user channels (``/user/0`` .. ``/user/9999``; only
   ``--users`` of them online).

"Redis messages" are PUBLISH commands counted by Redis itself (``INFO commandstats``), bytes are
Redis's ``total_net_input_bytes``; "delivered" counts messages the clients received; false-positive
drops are the nodes' ``realtime_false_positives_total``. Then, in this process: the CPU cost of
routing a 10k-channel fan-out across 10 replicas (``Replicas.route``, the sender's call), and the
filter propagation lag (subscribe sent -> the backend publisher's replica routes the channel), and
node-to-node throughput through Redis (one broker process sending 200-byte publishes to another,
1, 10 or 100 publishes per event-loop turn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from cluster.processes import NodeProcess  # noqa: E402
from cluster.redis_server import RedisProcess  # noqa: E402

from realtime.bayeux.channels import expand  # noqa: E402
from realtime.broker.redis import RedisBroker  # noqa: E402
from realtime.broker.redis_routing import Replicas  # noqa: E402
from realtime.broker.redis_wire import KeySpace  # noqa: E402
from realtime.publisher import Publisher  # noqa: E402
from realtime.routing import CuckooFilter  # noqa: E402

NODES = 4
FANOUT = 10_000


class WsClient:
    """Just enough Bayeux over WebSocket: handshake, subscribe, keep a connect outstanding."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.received = 0
        self.client_id = ""
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None)
        await self.ws.send(
            orjson.dumps(
                [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]
            )
        )
        reply = orjson.loads(await self.ws.recv())[0]
        if not reply.get("successful"):
            raise RuntimeError(f"handshake refused: {reply}")
        self.client_id = reply["clientId"]
        await self.ws.send(
            orjson.dumps(
                [
                    {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": self.channel},
                    self._connect(),
                ]
            )
        )
        self.task = asyncio.create_task(self._read())

    def _connect(self) -> dict[str, Any]:
        return {"channel": "/meta/connect", "clientId": self.client_id, "connectionType": "websocket"}

    async def subscribe(self, channel: str) -> None:
        await self.ws.send(
            orjson.dumps(
                [{"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel}]
            )
        )

    async def publish(self, channel: str, data: Any) -> None:
        await self.ws.send(orjson.dumps([{"channel": channel, "clientId": self.client_id, "data": data}]))

    async def _read(self) -> None:
        try:
            await self._read_frames()
        except websockets.ConnectionClosed:
            self.closed = True

    async def _read_frames(self) -> None:
        async for frame in self.ws:
            for message in orjson.loads(frame):
                channel = message.get("channel")
                if channel == "/meta/connect":
                    await self.ws.send(orjson.dumps([self._connect()]))
                elif channel == "/meta/subscribe":
                    self.subscribed.set()
                elif "data" in message:
                    self.received += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.ws.close()


def publish_stats(client: redis.Redis) -> tuple[int, int]:
    """(PUBLISH commands, bytes received) as counted by Redis."""
    stats = client.info("commandstats").get("cmdstat_publish", {"calls": 0})
    net = client.info("stats")["total_net_input_bytes"]
    return int(stats["calls"]), int(net)


def false_positives(nodes: list[NodeProcess]) -> int:
    total = 0
    for node in nodes:
        text = httpx.get(f"http://127.0.0.1:{node.port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("realtime_false_positives_total "):
                total += int(float(line.split()[1]))
    return total


@contextmanager
def cluster(url: str, routing: str, log_dir: Path) -> Iterator[list[NodeProcess]]:
    # Every client of the benchmark comes from 127.0.0.1: lift the per-IP abuse limits.
    env = {
        "REALTIME_HANDSHAKES_PER_IP_PER_S": "1000000",
        "REALTIME_PUBLISHES_PER_IP_PER_S": "1000000",
        "REALTIME_MAX_SESSIONS_PER_IP": "1000000",
        "REALTIME_MAX_CONNECTIONS_PER_IP": "1000000",
        "REALTIME_LOG_LEVEL": "warning",
    }
    nodes = [NodeProcess(url, f"b{i}", log_dir, "--routing", routing, env=env) for i in range(NODES)]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def settle(clients: list[WsClient], expect: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while sum(c.received for c in clients) < expect and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # stragglers (and anything unexpected) arrive
    return sum(c.received for c in clients)


async def phase(
    name: str, rclient: redis.Redis, nodes: list[NodeProcess], clients: list[WsClient], expect: int, body: Any
) -> dict[str, Any]:
    calls0, bytes0 = publish_stats(rclient)
    fp0 = false_positives(nodes)
    got0 = sum(c.received for c in clients)
    t0 = time.perf_counter()
    updates = await body()
    delivered = await settle(clients, got0 + expect) - got0
    elapsed = time.perf_counter() - t0
    calls1, bytes1 = publish_stats(rclient)
    return {
        "phase": name,
        "updates": updates,
        "delivered": delivered,
        "redis_messages": calls1 - calls0,
        "redis_bytes": bytes1 - bytes0,
        "messages_per_delivered": round((calls1 - calls0) / max(delivered, 1), 4),
        "bytes_per_delivered": round((bytes1 - bytes0) / max(delivered, 1), 1),
        "false_positive_drops": false_positives(nodes) - fp0,
        "seconds": round(elapsed, 2),
    }


async def run_mode(
    redis_url: str, routing: str, users: int, updates: int, fanouts: int, log_dir: Path
) -> tuple[list[dict[str, Any]], list[float]]:
    rclient = redis.Redis.from_url(redis_url)
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    lags: list[float] = []
    with cluster(redis_url, routing, log_dir) as nodes:
        clients = [
            WsClient(f"ws://127.0.0.1:{nodes[i % NODES].port}/bayeux", f"/user/{i}") for i in range(users)
        ]
        for start in range(0, users, 200):
            await asyncio.gather(*(c.start() for c in clients[start : start + 200]))
        await asyncio.gather(*(asyncio.wait_for(c.subscribed.wait(), 20) for c in clients))
        pub = Publisher(redis_url, routing=routing)
        await pub.start()
        deadline = time.monotonic() + 10
        while len(pub.nodes) < NODES and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # every filter delta has landed everywhere

        async def single() -> int:
            for n in range(updates):
                await pub.publish(f"/user/{rng.randrange(users)}", {"n": n})
            return updates

        async def batched() -> int:
            for start in range(0, updates, 100):
                await pub.publish_many(
                    [(f"/user/{rng.randrange(users)}", {"n": n}) for n in range(start, start + 100)]
                )
            return updates

        async def from_clients() -> int:
            for n in range(updates):
                await clients[n % users].publish(f"/user/{rng.randrange(users)}", {"n": n})
                if n % 50 == 49:
                    await asyncio.sleep(0.005)
            return updates

        async def fanout() -> int:
            for f in range(fanouts):
                await pub.publish_many([(f"/user/{i}", {"f": f}) for i in range(FANOUT)])
                await asyncio.sleep(0.2)
            return fanouts * FANOUT

        rows.append(await phase("single updates (backend)", rclient, nodes, clients, updates, single))
        rows.append(await phase("batched updates x100 (backend)", rclient, nodes, clients, updates, batched))
        rows.append(
            await phase("single updates (client via node)", rclient, nodes, clients, updates, from_clients)
        )
        rows.append(
            await phase(
                f"fan-out to {FANOUT} channels", rclient, nodes, clients, fanouts * min(users, FANOUT), fanout
            )
        )
        if routing == "filter":
            lags = await propagation_lag(pub, clients, 100 if users >= 400 else 30)
        await pub.close()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    rclient.close()
    for row in rows:
        row["routing"] = routing
    return rows, lags


async def propagation_lag(pub: Publisher, clients: list[WsClient], samples: int) -> list[float]:
    """Subscribe sent by a client -> the publisher's replica of that client's node routes it
    (polled every 0.5 ms, so each figure is at most 0.5 ms late)."""

    def routable(key: str) -> bool:
        return any((r := pub.replicas.table.get(n)) is not None and r.contains(key) for n in pub.nodes)

    lags = []
    for i in range(samples):
        key = f"/lag/{i}"
        t0 = time.perf_counter()
        await clients[i % len(clients)].subscribe(key)
        deadline = t0 + 5
        while not routable(key):  # a timed poll is the measurement
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{key} not routable after 5 s")
            await asyncio.sleep(0.0005)
        lags.append((time.perf_counter() - t0) * 1000)
    return lags


def routing_cpu(replicas: int = 10, keys_per_node: int = 20_000, repeat: int = 9) -> dict[str, Any]:
    """CPU of ``Replicas.route`` for one 10k-channel fan-out batch across ``replicas`` nodes."""
    reps = Replicas(KeySpace("bench:"), None)
    for n in range(replicas):
        reps.table.set_node(
            f"r{n}",
            CuckooFilter.build(
                [f"/user/{n * keys_per_node + i}" for i in range(keys_per_node)] + ["/news/*"]
            ),
        )
    batch = [(expand(f"/user/{i * 37}"), b"/user/x\n{}") for i in range(FANOUT)]
    times = []
    for _ in range(repeat):
        reps._routes.clear()  # cold: a fan-out's channels are rarely all cached
        t0 = time.process_time()
        routed = reps.route(batch, None, broadcast=False)
        times.append(time.process_time() - t0)
    t0 = time.process_time()
    reps.route(batch, None, broadcast=False)
    warm_ms = (time.process_time() - t0) * 1000
    return {
        "replicas": replicas,
        "keys_per_replica": keys_per_node,
        "channels": FANOUT,
        "cpu_ms_median": round(statistics.median(times) * 1000, 2),
        "cpu_ms_min": round(min(times) * 1000, 2),
        "cpu_ms_cached": round(warm_ms, 2),
        "target_nodes": len(routed),
    }


def _receive(url: str, prefix: str, n: int, out: Any) -> None:
    """Child process: a broker holding ``/t`` that counts ``n`` envelopes (for ``throughput``)."""

    async def run() -> None:
        got = 0
        first = 0.0
        done = asyncio.Event()

        def deliver(_: bytes) -> None:
            nonlocal got, first
            if not got:
                first = time.perf_counter()
            got += 1
            if got >= n:
                done.set()

        broker = RedisBroker(url, "recv", key_prefix=prefix)
        await broker.start(deliver)
        broker.key_added("/t")
        out.put("ready")
        cpu0 = time.process_time()
        try:
            await asyncio.wait_for(done.wait(), 120)
        finally:
            out.put((got, time.perf_counter() - first, time.process_time() - cpu0, broker.frames_received))
            await broker.close()

    _install_uvloop()
    asyncio.run(run())


def _install_uvloop() -> None:
    """Nodes run on uvloop; so does this process where it is available."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


async def throughput(url: str, n: int, per_tick: int) -> dict[str, Any]:
    """Node-to-node envelopes per second through Redis: one broker process sends ``n`` 200-byte
    publishes, ``per_tick`` per event-loop turn, to another that holds the channel."""
    prefix = f"tput{per_tick}:"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_receive, args=(url, prefix, n, queue))
    child.start()
    try:
        await asyncio.to_thread(queue.get, True, 30)
        sender = RedisBroker(url, "send", key_prefix=prefix)
        await sender.start(lambda _: None)
        deadline = time.monotonic() + 10
        while not ((r := sender.replicas.table.get("recv")) is not None and r.contains("/t")):
            if time.monotonic() > deadline:
                raise RuntimeError("receiver not routable")
            await asyncio.sleep(0.01)
        keys, payload = expand("/t"), b"/t\n" + b"x" * 200
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(0, n, per_tick):
            for _ in range(per_tick):
                sender.publish(keys, payload)
            await asyncio.sleep(0)
            while len(sender._pending) > 20 * per_tick:  # noqa: ASYNC110 - bounded in-flight
                await asyncio.sleep(0.001)
        while sender._pending:  # noqa: ASYNC110 - drained by the sender task
            await asyncio.sleep(0.001)
        sent_s, sent_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        got, recv_s, recv_cpu, frames = await asyncio.to_thread(queue.get, True, 120)
        await sender.close()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    return {
        "per_tick": per_tick,
        "sent_per_s": round(n / sent_s),
        "send_cpu_us": round(sent_cpu / n * 1e6, 2),
        "received": got,
        "received_per_s": round(got / recv_s) if recv_s else 0,
        "recv_cpu_us": round(recv_cpu / max(got, 1) * 1e6, 2),
        "frames": frames,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test)")
    ap.add_argument("--users", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    users = args.users or (200 if args.quick else 1000)
    updates = 200 if args.quick else 1000
    fanouts = 2 if args.quick else 5
    server = RedisProcess().start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    print(f"node logs in {log_dir}", flush=True)
    results: dict[str, Any] = {"users": users, "nodes": NODES}
    try:
        rows: list[dict[str, Any]] = []
        lags: list[float] = []
        for routing in ("filter", "broadcast"):
            mode_rows, mode_lags = await run_mode(server.url, routing, users, updates, fanouts, log_dir)
            rows += mode_rows
            lags += mode_lags
        results["phases"] = rows
        results["propagation_lag_ms"] = {
            "samples": len(lags),
            "p50": pct(lags, 0.5),
            "p99": pct(lags, 0.99),
            "max": round(max(lags), 2),
        }
        results["routing_cpu"] = routing_cpu()
        n = 50_000 if args.quick else 200_000
        results["throughput"] = [await throughput(server.url, n, per_tick) for per_tick in (1, 10, 100)]
    finally:
        server.cleanup()
    print(
        f"{'routing':<10} {'phase':<34} {'updates':>8} {'delivered':>9} {'redis msgs':>10} "
        f"{'msgs/deliv':>10} {'bytes/deliv':>11} {'FP drops':>8}"
    )
    for r in results["phases"]:
        print(
            f"{r['routing']:<10} {r['phase']:<34} {r['updates']:>8} {r['delivered']:>9} "
            f"{r['redis_messages']:>10} "
            f"{r['messages_per_delivered']:>10} {r['bytes_per_delivered']:>11} {r['false_positive_drops']:>8}"
        )
    print(
        "filter propagation lag (subscribe sent -> routable at a publisher):", results["propagation_lag_ms"]
    )
    print("routing CPU, one fan-out batch:", results["routing_cpu"])
    for row in results["throughput"]:
        print("node-to-node throughput:", row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    _install_uvloop()
    asyncio.run(main())
