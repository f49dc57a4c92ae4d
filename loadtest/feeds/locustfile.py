"""Stream's feed benchmark mix against this server: 90% timeline reads (limit 25, hydrated), 10%
activity writes, over the dataset from dataset.py (app key ``bench-key``).

Rate = users x FEEDS_RATE_PER_USER requests/s (constant throughput per user), e.g. 1500 req/s:

    python3 loadtest/feeds/serve.py --db feeds-bench.db --port 8100 &
    FEEDS_USERS=100000 locust -f loadtest/feeds/locustfile.py --headless -H http://127.0.0.1:8100 \\
        -u 150 -r 50 -t 60s --csv loadtest/results/feeds-1500

Read and write p50/p99 and the failure count are Locust's per-name statistics ("read", "write").
"""

from __future__ import annotations

import os
import random

import jwt
from locust import FastHttpUser, constant_throughput, task

USERS = int(os.environ.get("FEEDS_USERS", "100000"))
API_KEY = os.environ.get("FEEDS_API_KEY", "bench-key")
API_SECRET = os.environ.get("FEEDS_API_SECRET", "bench-secret-" + "x" * 32)
RATE = float(os.environ.get("FEEDS_RATE_PER_USER", "10"))
# A server-side token, as Stream's server clients send: every resource, action and feed.
TOKEN = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, API_SECRET, algorithm="HS256")
HEADERS = {"Authorization": TOKEN, "stream-auth-type": "jwt", "Content-Type": "application/json"}


class FeedClient(FastHttpUser):  # geventhttpclient: the generator must not be the bottleneck
    wait_time = constant_throughput(RATE)

    @task(9)
    def read(self) -> None:
        user = random.randrange(USERS)
        self.client.get(
            f"/api/v1.0/feed/timeline/{user}/?api_key={API_KEY}&limit=25", headers=HEADERS, name="read"
        )

    @task(1)
    def write(self) -> None:
        user = random.randrange(USERS)
        body = {"actor": f"user:{user}", "verb": "post", "object": f"post:{random.getrandbits(48)}"}
        self.client.post(
            f"/api/v1.0/feed/user/{user}/?api_key={API_KEY}", json=body, headers=HEADERS, name="write"
        )
