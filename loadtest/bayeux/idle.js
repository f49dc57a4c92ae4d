'use strict';
// Memory per idle WebSocket session: N sockets, each handshaken, in a connect cycle and subscribed
// to one shared channel. RSS is sampled before any session exists and after all are settled.
const { log, pool, round, serverRssKb, sleep } = require('./common');
const { readySession } = require('./ws_client');

async function idle(o) {
  await sleep(500);
  const before = serverRssKb(o.pid);
  const sessions = [];
  let failures = 0;
  let lastError = null;
  const t0 = Date.now();
  await pool(o.sessions, 100, async () => {
    try {
      sessions.push(await readySession(o.wsUrl, '/bench/idle', {}));
    } catch (err) {
      failures++;
      lastError = String(err.message || err);
    }
  });
  const setupMs = Date.now() - t0;
  log(`${sessions.length} idle sessions ready in ${setupMs} ms (${failures} failed)`);
  await sleep(o.settleS * 1000);
  const after = serverRssKb(o.pid);
  const alive = sessions.filter((s) => !s.closed && s.connectErrors === 0).length;
  for (const s of sessions) s.close();
  return {
    sessions: sessions.length,
    alive,
    failures,
    last_error: lastError,
    setup_s: round(setupMs / 1000, 2),
    rss_before_kb: before,
    rss_after_kb: after,
    rss_kb_per_session: round((after - before) / Math.max(1, sessions.length), 2),
  };
}

module.exports = { idle };
