'use strict';
// Fan-out over WebSocket: N subscribers on one channel, one publisher on its own socket.
// `fixed` publishes at a set rate and measures CPU per delivery plus publish->receive latency;
// `saturation` ramps the rate until deliveries per second stop growing.
const { Window, log, nowUs, pace, payload, percentile, pool, round, sleep } = require('./common');
const { readySession } = require('./ws_client');

const CHANNEL = '/bench/fanout';

class Receiver {
  constructor(capacity) {
    this.count = 0;
    this.recording = false;
    this.samples = new Float64Array(capacity);
    this.nSamples = 0;
    this.onDeliveries = (n, stamps) => {
      this.count += n;
      if (!this.recording) return;
      const now = nowUs();
      for (const ts of stamps) {
        if (this.nSamples < this.samples.length) this.samples[this.nSamples++] = now - ts;
      }
    };
  }
}

async function setup(o, receiver) {
  const t0 = Date.now();
  const subs = new Array(o.subscribers);
  await pool(o.subscribers, 100, async (i) => {
    subs[i] = await readySession(o.wsUrl, CHANNEL, { onDeliveries: receiver.onDeliveries });
  });
  const pub = await readySession(o.wsUrl, null, {});
  log(`${o.subscribers} subscribers ready in ${Date.now() - t0} ms`);
  return { subs, pub };
}

function teardown({ subs, pub }) {
  for (const s of subs) s.close();
  pub.close();
}

/** Waits until `receiver.count` reaches `target` or stops moving for `quietMs`. */
async function drain(receiver, target, quietMs = 500, maxMs = 5000) {
  const until = Date.now() + maxMs;
  let last = -1;
  let lastChange = Date.now();
  while (receiver.count < target && Date.now() < until) {
    if (receiver.count !== last) {
      last = receiver.count;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > quietMs) break;
    await sleep(20);
  }
}

async function fixed(o) {
  const rate = o.deliveriesPerS / o.subscribers; // publishes per second
  const receiver = new Receiver(Math.ceil(o.deliveriesPerS * o.seconds * 1.2) + 1000);
  const peers = await setup(o, receiver);
  try {
    let seq = 0;
    const publish = () => peers.pub.publish(CHANNEL, payload(o.messageBytes, seq++));
    await pace(rate, o.warmupS, publish);
    await drain(receiver, Math.round(rate * o.warmupS) * o.subscribers);
    const base = receiver.count;
    receiver.recording = true;
    const win = new Window(o.pid, o.serverCore).start();
    const published = await pace(rate, o.seconds, publish);
    const expected = published * o.subscribers;
    await drain(receiver, base + expected);
    const w = win.stop();
    receiver.recording = false;
    const delivered = receiver.count - base;
    const lat = Array.from(receiver.samples.subarray(0, receiver.nSamples)).sort((a, b) => a - b);
    return {
      ...w,
      subscribers: o.subscribers,
      publishes: published,
      delivered,
      delivered_fraction: round(delivered / expected, 4),
      deliveries_per_s: round(delivered / w.wall_s, 1),
      cpu_us_per_delivery: round((win.server_cpu_s / delivered) * 1e6, 2),
      latency_p50_ms: round(percentile(lat, 0.5) / 1000, 2),
      latency_p99_ms: round(percentile(lat, 0.99) / 1000, 2),
      latency_max_ms: round(lat[lat.length - 1] / 1000, 2),
      latency_samples: lat.length,
    };
  } finally {
    teardown(peers);
  }
}

/** Who ran out of CPU at the top step: the server's core (shared or not) or the generator. */
function limitedBy(step) {
  // The loopback TCP stack runs in interrupt context on the sender's core, so irq time counts as busy.
  const own = step.server_cpu_share + step.server_core_irq_share;
  if (step.gen_cpu_share >= 0.9) return 'generator';
  if (own >= 0.85 && step.server_core_other_share < 0.1) return 'server';
  if (own + step.server_core_other_share >= 0.85) return 'server core shared with other processes';
  return 'unclear';
}

async function saturation(o) {
  const receiver = new Receiver(0);
  const peers = await setup(o, receiver);
  const steps = [];
  try {
    let seq = 0;
    const publish = () => peers.pub.publish(CHANNEL, payload(o.messageBytes, seq++));
    await pace(20, 1, publish);
    await drain(receiver, 20 * o.subscribers);
    let best = null;
    let behindSteps = 0;
    for (const rate of o.rampPublishesPerS) {
      const base = receiver.count;
      const win = new Window(o.pid, o.serverCore).start();
      const published = await pace(rate, o.stepS, publish);
      const w = win.stop();
      const delivered = receiver.count - base;
      const step = {
        offered_per_s: rate * o.subscribers,
        deliveries_per_s: round(delivered / w.wall_s, 1),
        cpu_us_per_delivery: round((win.server_cpu_s / Math.max(1, delivered)) * 1e6, 2),
        server_cpu_share: w.server_cpu_share,
        gen_cpu_share: w.gen_cpu_share,
        server_core_other_share: w.server_core_other_share,
        server_core_irq_share: w.server_core_irq_share,
        published,
      };
      steps.push(step);
      log(`ramp ${JSON.stringify(step)}`);
      if (!best || step.deliveries_per_s > best.deliveries_per_s) best = step;
      // Behind the offered rate by >10% means the server (or we) can no longer keep up. One more
      // step confirms it: on a shared core a passing slump must not end the ramp early.
      const behind = step.deliveries_per_s < 0.9 * step.offered_per_s;
      behindSteps = behind ? behindSteps + 1 : 0;
      if (behindSteps >= 2) break;
    }
    return {
      subscribers: o.subscribers,
      max_deliveries_per_s: best.deliveries_per_s,
      cpu_us_per_delivery: best.cpu_us_per_delivery,
      // Robust to other load on the server's core: what one full core would deliver at this cost.
      deliveries_per_cpu_s: round(1e6 / best.cpu_us_per_delivery, 0),
      server_cpu_share: best.server_cpu_share,
      gen_cpu_share: best.gen_cpu_share,
      server_core_other_share: best.server_core_other_share,
      limited_by: limitedBy(best),
      steps,
    };
  } finally {
    teardown(peers);
  }
}

module.exports = { fixed, saturation };
