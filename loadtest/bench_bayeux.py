"""Bayeux benchmark: Faye 1.4.3 against this server, one after the other, on the same pinned core.

Each (scenario, repetition, server) gets a fresh server process pinned to one core and a fresh
load-generator process (Node.js, ``bayeux/run.js``) pinned to the other. The generator samples the
server's CPU (utime + stime) and RSS from /proc and prints one JSON line; this script takes medians
over the repetitions, prints ratios ours / Faye and writes everything to ``results/``.

Usage: python3 loadtest/bench_bayeux.py [--servers faye,realtime] [--scenario fanout,idle]
       [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SERVER_CORE = "0"
GEN_CORE = "1"

SCENARIOS = ["fanout", "saturation", "longpoll", "handshake_lp", "handshake_ws", "idle"]

# Short windows for a smoke run: every scenario, roughly a minute per server.
QUICK_OPTIONS: dict[str, Any] = {
    "warmupS": 1,
    "seconds": 3,
    "stepS": 1.5,
    "sessions": 2000,
    "settleS": 1,
}


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    better: str  # "lower", "higher" or "" (context, not a goal)


METRICS = [
    Metric("fanout", "cpu_us_per_delivery", "fan-out 20k/s: server CPU us per delivery", "lower"),
    Metric("fanout", "latency_p50_ms", "fan-out 20k/s: latency p50 ms", "lower"),
    Metric("fanout", "latency_p99_ms", "fan-out 20k/s: latency p99 ms", "lower"),
    Metric("fanout", "delivered_fraction", "fan-out 20k/s: delivered / expected", ""),
    Metric("fanout", "gen_cpu_share", "fan-out 20k/s: generator CPU share", ""),
    Metric("fanout", "server_core_other_share", "fan-out 20k/s: others' CPU share on server core", ""),
    Metric("saturation", "max_deliveries_per_s", "saturation: deliveries/s reached", "higher"),
    Metric("saturation", "deliveries_per_cpu_s", "saturation: deliveries per server CPU-s", "higher"),
    Metric("saturation", "cpu_us_per_delivery", "saturation: server CPU us per delivery", "lower"),
    Metric("saturation", "server_cpu_share", "saturation: server CPU share at top step", ""),
    Metric("saturation", "gen_cpu_share", "saturation: generator CPU share at top step", ""),
    Metric("saturation", "server_core_other_share", "saturation: others' CPU share on server core", ""),
    Metric("longpoll", "cpu_us_per_delivery", "long-poll: server CPU us per delivery", "lower"),
    Metric("longpoll", "delivered_fraction", "long-poll: delivered / expected", ""),
    Metric("longpoll", "gen_cpu_share", "long-poll: generator CPU share", ""),
    Metric("handshake_lp", "cycles_per_cpu_s", "handshake cycles per CPU-s, long-polling", "higher"),
    Metric("handshake_lp", "cycles_per_s", "handshake cycles per s, long-polling", "higher"),
    Metric("handshake_lp", "gen_cpu_share", "handshake long-polling: generator CPU share", ""),
    Metric("handshake_lp", "server_core_other_share", "handshake long-polling: others' share on core", ""),
    Metric("handshake_ws", "cycles_per_cpu_s", "handshake cycles per CPU-s, WebSocket", "higher"),
    Metric("handshake_ws", "cycles_per_s", "handshake cycles per s, WebSocket", "higher"),
    Metric("handshake_ws", "gen_cpu_share", "handshake WebSocket: generator CPU share", ""),
    Metric("handshake_ws", "server_core_other_share", "handshake WebSocket: others' share on core", ""),
    Metric("idle", "rss_kb_per_session", "idle WebSocket session: RSS KB each", "lower"),
    Metric("idle", "alive", "idle: sessions alive at the end", ""),
]


# Ours guards each client IP with rate and count limits; here every connection comes from 127.0.0.1
# and Faye has no such limits, so the comparison lifts them (0 means no limit).
UNLIMITED_SETTINGS = (
    "max_sessions_per_ip",
    "max_connections_per_ip",
    "handshakes_per_ip_per_s",
    "publishes_per_client_per_s",
    "publishes_per_ip_per_s",
)


def server_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    if name != "realtime":
        return env
    try:
        from realtime.settings import Settings
    except ImportError:
        return env
    known = {f.name for f in dataclasses.fields(Settings)}
    # Only settings this version knows: an unknown REALTIME_* variable stops the server.
    env.update({f"REALTIME_{key.upper()}": "0" for key in UNLIMITED_SETTINGS if key in known})
    return env


def server_command(name: str, port: int) -> list[str]:
    if name == "faye":
        return ["node", str(HERE / "peers" / "faye_server.js"), str(port)]
    if name == "realtime":
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
            "45",
        ]
    raise SystemExit(f"unknown server {name!r} (known: faye, realtime)")


def pinned(core: str, command: list[str]) -> list[str]:
    # taskset execs the command, so the PID we get is the server's own.
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def ensure_node_modules() -> None:
    if (HERE / "node_modules" / "faye").is_dir() and (HERE / "node_modules" / "ws").is_dir():
        return
    print("installing loadtest npm dependencies ...", flush=True)
    subprocess.run(
        ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300
    )


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class Server:
    """One server process under test; started pinned, waited for on /health, stopped by PID."""

    def __init__(self, name: str, port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            pinned(SERVER_CORE, server_command(name, port)),
            cwd=ROOT,
            env=server_env(name),
            stdout=self.log,
            stderr=self.log,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready on port {self.port} after {timeout_s}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def run_generator(scenario: str, server: Server, options: dict[str, Any], log_path: Path) -> dict[str, Any]:
    run_js = HERE / "bayeux" / "run.js"
    max_run_s = int(options.get("maxRunS", 300))
    command = [
        "node",
        str(run_js),
        scenario,
        "--port",
        str(server.port),
        "--pid",
        str(server.proc.pid),
        "--options",
        json.dumps(options),
    ]
    with log_path.open("ab") as log:
        done = subprocess.run(
            pinned(GEN_CORE, command), stdout=subprocess.PIPE, stderr=log, timeout=max_run_s + 30, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"generator exited with {done.returncode} (see {log_path})")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def measure(name: str, scenario: str, port: int, options: dict[str, Any], log_path: Path) -> dict[str, Any]:
    server = Server(name, port, log_path)
    try:
        server.wait_ready()
        time.sleep(0.5)
        return run_generator(scenario, server, options, log_path)
    finally:
        server.stop()


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def spread_of(runs: list[dict[str, Any]], key: str) -> list[float] | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return [min(values), max(values)] if values else None


def summarize(servers: list[str], runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for m in METRICS:
        if m.scenario not in runs:
            continue
        medians = {s: median_of(runs[m.scenario].get(s, []), m.key) for s in servers}
        spreads = {s: spread_of(runs[m.scenario].get(s, []), m.key) for s in servers}
        ours, faye = medians.get("realtime"), medians.get("faye")
        ratio = ours / faye if ours is not None and faye else None
        rows.append(
            {
                "scenario": m.scenario,
                "metric": m.key,
                "label": m.label,
                "better": m.better,
                "medians": medians,
                "min_max": spreads,
                "ratio_ours_over_faye": ratio,
            }
        )
    return rows


def print_table(servers: list[str], rows: list[dict[str, Any]]) -> None:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:,.2f}" if abs(x) < 1000 else f"{x:,.0f}"

    head = f"{'metric':<48}" + "".join(f"{s:>14}" for s in servers) + f"{'ours/faye':>11}  better"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r["ratio_ours_over_faye"]
        cells = "".join(f"{fmt(r['medians'][s]):>14}" for s in servers)
        ratio_cell = "-" if ratio is None else f"{ratio:.2f}"
        print(f"{r['label']:<48}{cells}{ratio_cell:>11}  {r['better']}")


def warnings_for(result: dict[str, Any]) -> list[str]:
    """What makes a run's numbers doubtful: refused or failed requests, lost messages, dead sessions."""
    out = []
    for key in ("errors", "failures"):
        if result.get(key):
            out.append(f"{result[key]} {key} (last: {result.get('last_error')})")
    if result.get("delivered_fraction", 1) < 0.99:
        out.append(f"only {result['delivered_fraction']:.1%} of expected deliveries")
    if "alive" in result and result["alive"] < result.get("sessions", 0):
        out.append(f"{result['sessions'] - result['alive']} sessions died")
    if result.get("gen_cpu_share", 0) >= 0.9:
        out.append("the generator was CPU-bound")
    return out


def _stop_on_signal(signum: int, _frame: object) -> None:
    # Unwinds through measure()'s finally (stops the server) and subprocess.run (kills the generator).
    raise SystemExit(128 + signum)


def git_revision() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=False)
    return done.stdout.decode().strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default="faye,realtime", help="comma list of: faye, realtime")
    parser.add_argument(
        "--scenario", default=",".join(SCENARIOS), help="comma list of: " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per scenario and server")
    parser.add_argument(
        "--quick", action="store_true", help="short windows, 2k idle sessions, one repetition"
    )
    parser.add_argument("--port", type=int, default=18400, help="first port; each server gets its own")
    parser.add_argument(
        "--options", default="{}", help="JSON overrides for the generator (see bayeux/run.js)"
    )
    args = parser.parse_args()

    servers = [s for s in args.servers.split(",") if s]
    scenarios = [s for s in args.scenario.split(",") if s]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {SCENARIOS}")
    options: dict[str, Any] = dict(QUICK_OPTIONS) if args.quick else {}
    if shutil.which("taskset"):
        options["serverCore"] = int(SERVER_CORE)
    options.update(json.loads(args.options))
    repeat = 1 if args.quick and "--repeat" not in sys.argv else args.repeat

    signal.signal(signal.SIGTERM, _stop_on_signal)
    ensure_node_modules()
    fd_limit = raise_fd_limit()
    sessions = int(options.get("sessions", 10000))
    if fd_limit < sessions + 1000:
        options["sessions"] = max(100, fd_limit - 1000)
        print(f"fd limit {fd_limit}: idle scenario reduced to {options['sessions']} sessions", flush=True)

    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    log_path = RESULTS / f"bayeux-{stamp}.log"
    ports = {name: args.port + i for i, name in enumerate(servers)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: list[str] = []
    warnings: list[str] = []
    revision = git_revision()  # at the start: others may commit to a shared tree during the run
    load_before = os.getloadavg()
    started = time.time()
    for scenario in scenarios:
        runs[scenario] = {s: [] for s in servers}
        for rep in range(repeat):
            # Alternate who goes first so slow drift in the machine's load hits both alike.
            order = servers if rep % 2 == 0 else list(reversed(servers))
            for name in order:
                print(f"[{time.strftime('%H:%M:%S')}] {scenario} #{rep + 1} {name} ...", end=" ", flush=True)
                try:
                    result = measure(name, scenario, ports[name], options, log_path)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    errors.append(f"{scenario} #{rep + 1} {name}: {exc}")
                    print(f"FAILED: {exc}", flush=True)
                    continue
                runs[scenario][name].append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "steps"}), flush=True)
                warnings.extend(f"{scenario} #{rep + 1} {name}: {w}" for w in warnings_for(result))

    rows = summarize(servers, runs)
    print()
    print_table(servers, rows)
    load_after = os.getloadavg()
    print(
        f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({os.cpu_count()} CPUs; the machine may be shared)"
    )
    for name, results in runs.get("saturation", {}).items():
        limits = ", ".join(str(r.get("limited_by")) for r in results)
        print(f"saturation, {name}: top step limited by {limits}")
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    report = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_revision": revision,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "fd_limit": fd_limit,
            "node": subprocess.run(["node", "--version"], capture_output=True, check=False)
            .stdout.decode()
            .strip(),
        },
        "pinning": {
            "server_core": SERVER_CORE,
            "generator_core": GEN_CORE,
            "taskset": bool(shutil.which("taskset")),
        },
        "options": options,
        "repeat": repeat,
        "summary": rows,
        "runs": runs,
        "warnings": warnings,
        "errors": errors,
    }
    out = RESULTS / f"bayeux-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out.relative_to(ROOT)}  (server and generator logs: {log_path.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
