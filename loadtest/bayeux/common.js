'use strict';
// Shared pieces of the Bayeux load generator: /proc sampling of the server under test, pacing,
// percentiles and a keep-alive HTTP agent. Everything here is transport-agnostic.
const fs = require('fs');

const CLK_TCK = 100; // USER_HZ on every Linux we run on; /proc/<pid>/stat counts in these ticks.

function readStat(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch (_err) {
    return null;
  }
}

// The server and any processes it forked (workers, a shell wrapper): their CPU all counts.
function processTree(rootPid) {
  const children = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const st = readStat(name);
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push(Number(name));
  }
  const out = [rootPid];
  for (let i = 0; i < out.length && out.length < 1000; i++) out.push(...(children.get(out[i]) || []));
  return out;
}

function serverCpuSeconds(rootPid) {
  let ticks = 0;
  for (const pid of processTree(rootPid)) {
    const st = readStat(pid);
    if (st) ticks += st.ticks;
  }
  return ticks / CLK_TCK;
}

/**
 * CPU-seconds one core spent on tasks (user + nice + system), on interrupts (irq + softirq: on
 * loopback that is mostly the TCP stack, charged to no process) and stolen by the hypervisor.
 */
function coreTimes(core) {
  if (core === null || core === undefined) return { task: 0, irq: 0, steal: 0 };
  const line = fs
    .readFileSync('/proc/stat', 'latin1')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { task: 0, irq: 0, steal: 0 };
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { task: (f[0] + f[1] + f[2]) / CLK_TCK, irq: (f[5] + f[6]) / CLK_TCK, steal: (f[7] || 0) / CLK_TCK };
}

function serverRssKb(rootPid) {
  let kb = 0;
  for (const pid of processTree(rootPid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'));
      if (m) kb += Number(m[1]);
    } catch (_err) {
      // the process ended between the listing and the read
    }
  }
  return kb;
}

function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A measurement window: server CPU, generator CPU and wall time between start() and stop(). */
class Window {
  constructor(serverPid, serverCore = null) {
    this.serverPid = serverPid;
    this.serverCore = serverCore;
  }
  start() {
    this.t0 = nowUs();
    this.core0 = coreTimes(this.serverCore);
    this.cpu0 = serverCpuSeconds(this.serverPid);
    this.gen0 = process.cpuUsage();
    return this;
  }
  stop() {
    const wall = (nowUs() - this.t0) / 1e6;
    const gen = process.cpuUsage(this.gen0);
    this.wall_s = wall;
    this.server_cpu_s = serverCpuSeconds(this.serverPid) - this.cpu0;
    this.gen_cpu_s = (gen.user + gen.system) / 1e6;
    const core = coreTimes(this.serverCore);
    const pinned = this.serverCore !== null;
    return {
      wall_s: round(wall, 3),
      server_cpu_s: round(this.server_cpu_s, 3),
      server_cpu_share: round(this.server_cpu_s / wall, 3),
      gen_cpu_share: round(this.gen_cpu_s / wall, 3),
      // What else the server's core did in the window: the machine may be shared.
      server_core_other_share: pinned
        ? round(Math.max(0, core.task - this.core0.task - this.server_cpu_s) / wall, 3)
        : null,
      server_core_steal_share: pinned ? round((core.steal - this.core0.steal) / wall, 3) : null,
      server_core_irq_share: pinned ? round((core.irq - this.core0.irq) / wall, 3) : null,
    };
  }
}

/** Calls fn() `rate` times per second for `seconds`, catching up after timer slips. */
async function pace(rate, seconds, fn) {
  const start = nowUs();
  const total = Math.round(rate * seconds);
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((nowUs() - start) / 1e6) * rate) + 1);
    while (sent < due) {
      fn(sent);
      sent++;
    }
    await sleep(1);
  }
  return sent;
}

/** Runs worker(i) for i in [0, n) with at most `width` running at once. */
async function pool(n, width, worker) {
  let next = 0;
  const lanes = [];
  for (let k = 0; k < Math.min(width, n); k++) {
    lanes.push(
      (async () => {
        while (next < n) await worker(next++);
      })(),
    );
  }
  await Promise.all(lanes);
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** POSTs a Bayeux batch on a RawHttpConnection and resolves with the parsed reply array. */
async function postBatch(conn, messages) {
  return JSON.parse(await conn.post(JSON.stringify(messages)));
}

/** A data payload whose JSON is `bytes` long, carrying the publish time for latency. */
function payload(bytes, seq) {
  const head = { ts: nowUs(), seq, pad: '' };
  const fill = bytes - JSON.stringify(head).length;
  head.pad = 'x'.repeat(Math.max(0, fill));
  return head;
}

function log(...args) {
  process.stderr.write(`[gen] ${args.join(' ')}\n`);
}

module.exports = {
  Window,
  log,
  nowUs,
  pace,
  payload,
  percentile,
  pool,
  postBatch,
  round,
  serverCpuSeconds,
  serverRssKb,
  sleep,
};
