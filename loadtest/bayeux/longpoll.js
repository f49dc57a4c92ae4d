'use strict';
// Long-poll delivery: N long-polling clients sit in /meta/connect on one channel; a WebSocket
// publisher publishes at a low rate; every delivery answers a held poll and the client polls again.
const { Window, log, pace, payload, pool, postBatch, round, sleep } = require('./common');
const { RawHttpConnection } = require('./raw');
const { readySession } = require('./ws_client');

const CHANNEL = '/bench/longpoll';

class PollingClient {
  constructor(url, stats) {
    // One socket per client, like a browser's dedicated long-poll connection.
    this.conn = new RawHttpConnection(url);
    this.stats = stats;
    this.running = false;
  }

  async start() {
    const [hs] = await postBatch(this.conn, [
      { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] },
    ]);
    if (!hs.successful) throw new Error(`handshake failed: ${hs.error}`);
    this.clientId = hs.clientId;
    const [sub] = await postBatch(this.conn, [
      { channel: '/meta/subscribe', clientId: this.clientId, subscription: CHANNEL },
    ]);
    if (!sub.successful) throw new Error(`subscribe failed: ${sub.error}`);
    this.running = true;
    this.loop = this._poll();
  }

  async _poll() {
    while (this.running) {
      let replies;
      try {
        replies = await postBatch(this.conn, [
          { channel: '/meta/connect', clientId: this.clientId, connectionType: 'long-polling' },
        ]);
      } catch (err) {
        if (this.running) this.stats.errors++;
        return;
      }
      this.stats.polls++;
      for (const m of replies) {
        if (m.channel === CHANNEL && m.data) this.stats.delivered++;
        else if (m.channel === '/meta/connect' && !m.successful) {
          this.stats.errors++;
          this.running = false;
        }
      }
    }
  }

  stop() {
    this.running = false;
    this.conn.close();
  }
}

async function longpoll(o) {
  const stats = { delivered: 0, polls: 0, errors: 0 };
  const clients = Array.from({ length: o.clients }, () => new PollingClient(o.httpUrl, stats));
  await pool(o.clients, 50, (i) => clients[i].start());
  const pub = await readySession(o.wsUrl, null, {});
  // Let every client settle into a held poll (ours answers the first connect at once).
  await sleep(1500);
  log(`${o.clients} long-polling clients held; polls so far ${stats.polls}`);
  try {
    let seq = 0;
    const publish = () => pub.publish(CHANNEL, payload(o.messageBytes, seq++));
    await pace(o.publishesPerS, 1, publish);
    await sleep(500);
    const base = { ...stats };
    const win = new Window(o.pid, o.serverCore).start();
    const published = await pace(o.publishesPerS, o.seconds, publish);
    // Wait for the last publishes to reach every client (bounded), so the window holds their cost.
    const expected = base.delivered + published * o.clients;
    for (let i = 0, last = -1; i < 50 && stats.delivered < expected && stats.delivered !== last; i++) {
      last = stats.delivered;
      await sleep(100);
    }
    const w = win.stop();
    const delivered = stats.delivered - base.delivered;
    return {
      ...w,
      clients: o.clients,
      publishes: published,
      delivered,
      delivered_fraction: round(delivered / (published * o.clients), 4),
      polls: stats.polls - base.polls,
      errors: stats.errors,
      deliveries_per_s: round(delivered / w.wall_s, 1),
      cpu_us_per_delivery: round((win.server_cpu_s / Math.max(1, delivered)) * 1e6, 2),
    };
  } finally {
    for (const c of clients) c.stop();
    pub.close();
  }
}

module.exports = { longpoll };
