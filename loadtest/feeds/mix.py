"""An open-loop generator for Stream's mix (90 % reads of 25, 10 % writes) with a sub-millisecond floor.

Locust measures its own scheduling too: against a server that answers instantly it reports p50 6 ms
and p99 15 ms at 500 requests/s here, so it cannot check a 2 ms budget.  This generator sends each
request at its scheduled time (uniform arrivals at ``--rate``) on one of ``--connections`` keep-alive
connections and measures from the *scheduled* time to the end of the response, so a stalled server
is charged for the requests that queue behind the stall (no coordinated omission).

    python3 loadtest/feeds/mix.py --port 8120 --users 10000 --rate 1000 --seconds 20

Prints one JSON line: served requests/s, read and write p50/p99 (ms), failures, success rate, and
the generator's own worst lateness (``generator_lag_max_ms``, and when): requests it sends late are
charged their lateness, so a stall of the generator itself (another process on its core, the host
taking the core) shows up there rather than passing for the server's.
``--samples FILE`` also writes every request as a CSV row (kind, user, scheduled second, latency ms,
status), e.g. to line write latency up against the author's follower count.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import random
import time
from dataclasses import dataclass, field

import jwt
import orjson
from dataset import APP

Sample = tuple[str, float, int, int, float]  # kind, latency s, status, user, scheduled at (s into the run)


@dataclass
class Mix:
    port: int
    users: int
    token: str = field(init=False)

    def __post_init__(self) -> None:
        claims = {"resource": "*", "action": "*", "feed_id": "*"}
        self.token = jwt.encode(claims, APP.api_secret, algorithm="HS256")

    def request(self, rng: random.Random) -> tuple[str, int, bytes]:
        user = rng.randrange(self.users)
        auth = f"Authorization: {self.token}\r\nstream-auth-type: jwt\r\nHost: 127.0.0.1:{self.port}\r\n"
        if rng.random() < 0.9:
            path = f"/api/v1.0/feed/timeline/{user}/?api_key={APP.api_key}&limit=25"
            return "read", user, f"GET {path} HTTP/1.1\r\n{auth}\r\n".encode()
        body = orjson.dumps(
            {"actor": f"user:{user}", "verb": "post", "object": f"post:{rng.getrandbits(48)}"}
        )
        head = f"POST /api/v1.0/feed/user/{user}/?api_key={APP.api_key} HTTP/1.1\r\n{auth}"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return "write", user, head.encode() + body


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(h.split(b":")[1]) for h in lines if h.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return status


Job = tuple[str, int, float, float, bytes]  # kind, user, due (perf_counter), due (s into the run), request


async def _connection(port: int, jobs: asyncio.Queue[Job | None], out: list[Sample]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (job := await jobs.get()) is not None:
            kind, user, scheduled, at, raw = job
            writer.write(raw)
            try:
                status = await _response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                out.append((kind, time.perf_counter() - scheduled, 0, user, at))
                return
            out.append((kind, time.perf_counter() - scheduled, status, user, at))
    finally:
        writer.close()


async def run(
    port: int, users: int, rate: float, seconds: float, connections: int, seed: int, samples: list[Sample]
) -> dict[str, object]:
    mix, rng = Mix(port, users), random.Random(seed)
    jobs: asyncio.Queue[Job | None] = asyncio.Queue()
    workers = [asyncio.create_task(_connection(port, jobs, samples)) for _ in range(connections)]
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    lag, lag_at = 0.0, 0.0  # the generator's own lateness: a stall here is not the server's
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > lag:
            lag, lag_at = -delay, i / rate
        kind, user, raw = mix.request(rng)
        jobs.put_nowait((kind, user, due, i / rate, raw))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), timeout=seconds + 120)
    elapsed = time.perf_counter() - start
    row: dict[str, object] = {"offered_rps": rate, "served_rps": round(len(samples) / elapsed, 1)}
    failures = sum(1 for s in samples if s[2] != 200) + (total - len(samples))
    row["generator_lag_max_ms"], row["generator_lag_at_s"] = round(lag * 1000, 1), round(lag_at, 1)
    row["failures"] = failures
    row["success_rate"] = round(1 - failures / max(total, 1), 5)
    for kind in ("read", "write"):
        lat = sorted(s[1] for s in samples if s[0] == kind and s[2] == 200)
        if lat:
            row[f"{kind}_p50_ms"] = round(lat[len(lat) // 2] * 1000, 2)
            row[f"{kind}_p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8120)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", help="write every request to this CSV file")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    samples: list[Sample] = []
    # The run's own garbage is freed by reference counting; a full collection of the growing list
    # of samples paused this generator for 15-30 ms, and every request due meanwhile was charged it.
    gc.disable()
    row = asyncio.run(
        run(args.port, args.users, args.rate, args.seconds, args.connections, args.seed, samples)
    )
    gc.enable()
    if args.samples:
        with open(args.samples, "w", newline="") as fh:
            rows = csv.writer(fh)
            rows.writerow(["kind", "user", "scheduled_s", "latency_ms", "status"])
            for kind, lat, status, user, at in samples:
                rows.writerow([kind, user, f"{at:.4f}", f"{lat * 1000:.3f}", status])
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
