'use strict';
// Session churn: handshake + connect + disconnect, over long-polling (three POSTs on keep-alive
// sockets) or over WebSocket (a fresh socket per cycle, as a reconnecting browser would open).
// The connect carries advice.timeout 0 so Faye answers it at once instead of holding it.
const { Window, nowUs, postBatch, round, sleep } = require('./common');
const { RawHttpConnection } = require('./raw');
const { WsSession } = require('./ws_client');

async function lpCycle(conn) {
  const [hs] = await postBatch(conn, [
    { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] },
  ]);
  if (!hs.successful) throw new Error(`handshake failed: ${hs.error}`);
  const clientId = hs.clientId;
  const [reply] = await postBatch(conn, [
    { channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 0 } },
  ]);
  if (!reply.successful) throw new Error(`connect failed: ${reply.error}`);
  const [disc] = await postBatch(conn, [{ channel: '/meta/disconnect', clientId }]);
  if (!disc.successful) throw new Error(`disconnect failed: ${disc.error}`);
}

async function wsCycle(url) {
  const s = new WsSession(url);
  try {
    await s.open();
    await s.handshake();
    const reply = await s.request({
      channel: '/meta/connect',
      clientId: s.clientId,
      connectionType: 'websocket',
      advice: { timeout: 0 },
    });
    if (!reply.successful) throw new Error(`connect failed: ${reply.error}`);
    const disc = await s.request({ channel: '/meta/disconnect', clientId: s.clientId });
    if (!disc.successful) throw new Error(`disconnect failed: ${disc.error}`);
  } finally {
    s.close();
  }
}

async function handshake(o, transport) {

  let done = 0;
  let errors = 0;
  let lastError = null;
  let counting = false;
  const stopAt = nowUs() + (o.warmupS + o.seconds) * 1e6 + 5e6;
  let stop = false;
  const worker = async () => {
    const conn = new RawHttpConnection(o.httpUrl);
    const cycle = transport === 'websocket' ? () => wsCycle(o.wsUrl) : () => lpCycle(conn);
    while (!stop && nowUs() < stopAt) {
      try {
        await cycle();
        if (counting) done++;
      } catch (err) {
        errors++;
        lastError = String(err.message || err);
        await sleep(10);
      }
    }
    conn.close();
  };
  const workers = Array.from({ length: o.concurrency }, worker);
  await sleep(o.warmupS * 1000);
  counting = true;
  const win = new Window(o.pid, o.serverCore).start();
  await sleep(o.seconds * 1000);
  counting = false;
  const w = win.stop();
  stop = true;
  await Promise.all(workers);
  return {
    ...w,
    transport,
    concurrency: o.concurrency,
    cycles: done,
    errors,
    last_error: lastError,
    cycles_per_s: round(done / w.wall_s, 1),
    cycles_per_cpu_s: round(done / Math.max(win.server_cpu_s, 0.01), 1),
    cpu_us_per_cycle: round((win.server_cpu_s / Math.max(1, done)) * 1e6, 1),
  };
}

module.exports = { handshake };
