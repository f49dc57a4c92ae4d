"""Fixtures that run the real server as a child process and drive it from outside.

``server_factory(timeout_s=..., args=[...], env={...})`` starts ``python -m realtime serve`` on a
free 127.0.0.1 port, waits (bounded) for ``GET /health``, and stops it by PID at teardown:
SIGTERM, then SIGKILL if it has not exited in time. ``server`` is one instance shared by the
whole run (tests that need other settings, or stop it, start their own) with a 3 s timeout, so a
held connect is distinguishable from an immediate one and nothing sleeps long. ``node`` runs a
driver script from ``tests/node`` and parses its JSON-line output.

To check the tests themselves against another Bayeux server (Faye 1.4.3, say), set
``REALTIME_IT_SERVER_CMD`` to a command template with ``{port}`` and ``{timeout}`` placeholders;
that server must answer ``GET /health`` and mount Bayeux at ``/bayeux``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.net import free_port

from .bayeux_wire import Wire

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
STARTUP_S = 20.0
STOP_S = 10.0
MODULE_TIMEOUT_S = 3.0


@dataclass
class Server:
    """A running server process and the URLs to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    timeout_s: float
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/bayeux"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/bayeux"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def is_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = STOP_S) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        return self.proc.returncode


def _command(port: int, timeout_s: float, args: Sequence[str]) -> list[str]:
    template = os.environ.get("REALTIME_IT_SERVER_CMD")
    if template:
        return shlex.split(template.format(port=port, timeout=timeout_s))
    return [
        sys.executable,
        "-m",
        "realtime",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout",
        f"{timeout_s:g}",
        *args,
    ]


def start_server(
    log_dir: Path, timeout_s: float, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Server:
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    # Each server keeps its feed store under the test's own directory, not the repository.
    child_env = {
        **os.environ,
        "REALTIME_FEEDS_STORE": f"sqlite:{log_dir}/feeds-{port}.sqlite3",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _command(port, timeout_s, args),
            cwd=REPO,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Server(proc, port, timeout_s, log_path)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} before /health answered:\n{server.log()}")
        if server.is_healthy():
            return server
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"server did not answer /health within {STARTUP_S} s:\n{server.log()}")


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def factory(
        timeout_s: float = MODULE_TIMEOUT_S, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> Server:
        srv = start_server(tmp_path, timeout_s, args, env)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Every test handshakes from 127.0.0.1; the per-address handshake rate (a production
    # default) is tested on servers of its own, not by accident here.
    srv = start_server(
        tmp_path_factory.mktemp("server"), MODULE_TIMEOUT_S, env={"REALTIME_HANDSHAKES_PER_IP_PER_S": "0"}
    )
    yield srv
    code = srv.stop()
    assert code in (0, -signal.SIGTERM), f"server exited with {code} on SIGTERM:\n{srv.log()}"


@dataclass
class NodeRun:
    """The outcome of one driver script: exit code, parsed JSON lines, stderr."""

    args: list[str]
    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str = field(repr=False)

    def explain(self) -> str:
        return (
            f"node {' '.join(self.args)} exited {self.returncode}\n--- stdout\n{self.stdout[-6000:]}"
            f"\n--- stderr\n{self.stderr[-3000:]}"
        )

    def check(self) -> NodeRun:
        assert self.returncode == 0 and self.events and self.events[-1]["event"] == "done", self.explain()
        return self

    def all(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.all(name)
        assert len(found) == 1, f"expected one {name!r} event, got {len(found)}\n{self.explain()}"
        return found[0]


NodeRunner = Callable[..., NodeRun]


@pytest.fixture(scope="session")
def node() -> NodeRunner:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed: the npm-client tests need Node.js on PATH")
    missing = [
        p
        for p in ("faye", "cometd", "cometd-nodejs-client", "ws", "getstream")
        if not (NODE_DIR / "node_modules" / p).is_dir()
    ]
    if missing:
        pytest.fail(f"tests/node/node_modules lacks {missing}: run scripts/bootstrap.sh")

    def run(script: str, *args: str, timeout_s: float = 45.0) -> NodeRun:
        argv = [script, *args]
        try:
            done = subprocess.run(
                [exe, *argv],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            pytest.fail(f"node {' '.join(argv)} ran over {timeout_s} s\n{out}")
        events = []
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return NodeRun(argv, done.returncode, events, done.stdout, done.stderr)

    return run


@pytest.fixture
async def wire(server: Server) -> AsyncIterator[Wire]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as client:
        yield Wire(client, server.url, server.timeout_s)
