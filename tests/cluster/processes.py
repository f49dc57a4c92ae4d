"""Real node processes and a real Faye driver for the multi-process cluster tests.

``NodeProcess`` runs ``python -m realtime serve --broker <redis url> --node-id <id>`` on a free
port, waits (bounded) for ``/health``, and is stopped by its PID (SIGTERM, SIGKILL after a grace
period) unless a test kills it first. ``FayeDriver`` runs ``tests/node/cluster_faye.js`` and
collects its JSON events in the background.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from helpers.net import free_port

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
STARTUP_S = 20.0
STOP_S = 10.0


class NodeProcess:
    def __init__(
        self, broker_url: str, node_id: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.node_id = node_id
        self.port = free_port()
        self.log_path = log_dir / f"node-{node_id}.log"
        cmd = [sys.executable, "-m", "realtime", "serve", "--port", str(self.port)]
        cmd += ["--broker", broker_url, "--node-id", node_id, "--timeout", "5", *extra]
        with open(self.log_path, "wb") as log:
            # Each node keeps its feed store under the test's directory, not the repository.
            store = {"REALTIME_FEEDS_STORE": f"sqlite:{log_dir}/feeds-{node_id}.sqlite3"}
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **store, **(env or {})},
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bayeux"

    def wait_ready(self) -> NodeProcess:
        deadline = time.monotonic() + STARTUP_S
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node {self.node_id} exited:\n{self.log()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.node_id} did not start:\n{self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class FayeDriver:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, deadline_s: float = 60.0) -> FayeDriver:
        exe = shutil.which("node")
        if exe is None:
            raise RuntimeError("node is not installed: the multi-process cluster tests need Node.js")
        if not (NODE_DIR / "node_modules" / "faye").is_dir():
            raise RuntimeError("tests/node/node_modules lacks faye: run npm ci in tests/node")
        proc = await asyncio.create_subprocess_exec(
            exe,
            "cluster_faye.js",
            f"--deadline-ms={int(deadline_s * 1000)}",
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.startswith(b"{"):
                self.events.append(json.loads(line))

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            errors = [e for e in self.events if e["event"] in ("error", "timeout")]
            if errors:
                raise AssertionError(f"faye driver failed: {errors}")
            found = [e for e in self.events if predicate(e)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or self._reader.done():
                raise AssertionError(f"waited {timeout_s} s for {count} events; last: {self.events[-5:]}")
            await asyncio.sleep(0.01)

    def messages(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "message" and e["name"] == name]

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                self.send(cmd="exit")
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
