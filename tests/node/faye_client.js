'use strict';
// Drives the real `faye` npm client against a Bayeux endpoint.
//   node faye_client.js <scenario> <url> [--transport=websocket|long-polling] [--stall-ms=N]
// --transport=long-polling forces HTTP with client.disable('websocket'). Every client records,
// through its own extension, what crossed the wire: the connectionType of each /meta/connect, its
// clientIds, meta replies, and each delivered message exactly as received (before the client's
// local fan-out to matching subscriptions), so tests can count copies per client.
const faye = require('faye');
const { emit, run, waitFor, sleep, settle, args } = require('./lib');

const opts = args(process.argv.slice(2));
const [scenario, url] = opts._;
const transport = opts.transport || 'websocket';
const WAIT_MS = 5000;

function makeClient(name) {
  const client = new faye.Client(url, { retry: 1 });
  if (transport === 'long-polling') client.disable('websocket');
  const t = { name, client, connectionTypes: new Set(), clientIds: [], meta: [], delivered: [], hooks: [] };
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/connect') t.connectionTypes.add(message.connectionType);
      for (const hook of t.hooks) if (hook(message, callback)) return;
      callback(message);
    },
    incoming(message, callback) {
      if (message.channel.startsWith('/meta/')) {
        t.meta.push(message);
        if (message.channel === '/meta/handshake' && message.successful) t.clientIds.push(message.clientId);
      } else if (!('successful' in message)) {
        t.delivered.push(message);
      }
      callback(message);
    },
  });
  return t;
}

const copies = (t, channel) => t.delivered.filter((m) => m.channel === channel).length;
const summary = (t) => ({ name: t.name, connection_types: [...t.connectionTypes].sort(), client_ids: t.clientIds });

async function subscribe(t, channel, onMessage) {
  const res = await settle(t.client.subscribe(channel, onMessage || (() => {})), WAIT_MS, 'subscribe ' + channel);
  if (!res.ok) throw new Error('subscribe ' + channel + ' failed: ' + JSON.stringify(res.error));
}

async function publish(t, channel, data) {
  const res = await settle(t.client.publish(channel, data), WAIT_MS, 'publish ' + channel);
  if (!res.ok) throw new Error('publish ' + channel + ' failed: ' + JSON.stringify(res.error));
}

async function close(...clients) {
  for (const t of clients) await settle(t.client.disconnect() || Promise.resolve(), WAIT_MS, 'disconnect');
}

const scenarios = {
  // Subscribe on one client, publish five messages in order from another.
  async roundtrip() {
    const sub = makeClient('sub'), pub = makeClient('pub');
    const got = [];
    await subscribe(sub, '/chat/room', (data) => got.push(data));
    for (let n = 1; n <= 5; n++) await publish(pub, '/chat/room', { text: 'hello', n });
    await waitFor(() => got.length >= 5, WAIT_MS, 'five messages');
    await sleep(100);
    emit('received', { data: got });
    emit('clients', { clients: [summary(sub), summary(pub)] });
    await close(sub, pub);
  },

  // A has three overlapping subscriptions, B only /wc/**, C only /wc/*; the wire must carry one
  // copy of each matching message per client. The last publish matches everyone and is the fence.
  async wildcards() {
    const a = makeClient('a'), b = makeClient('b'), c = makeClient('c'), pub = makeClient('pub');
    for (const ch of ['/wc/*', '/wc/**', '/wc/x']) await subscribe(a, ch);
    await subscribe(b, '/wc/**');
    await subscribe(c, '/wc/*');
    await publish(pub, '/wc/x/deep', { n: 1 });
    await publish(pub, '/wc/x', { n: 2 });
    await publish(pub, '/other', { n: 3 });
    await publish(pub, '/wc/end', { n: 4 });
    await waitFor(() => [a, b, c].every((t) => copies(t, '/wc/end') >= 1), WAIT_MS, 'fence message');
    await sleep(100);
    const counts = {};
    for (const t of [a, b, c]) {
      counts[t.name] = {};
      for (const m of t.delivered) counts[t.name][m.channel] = (counts[t.name][m.channel] || 0) + 1;
    }
    emit('copies', { counts });
    emit('clients', { clients: [summary(a), summary(b), summary(c), summary(pub)] });
    await close(a, b, c, pub);
  },

  // Rejected publishes and subscribes reach the caller as Faye errors with a numeric code.
  async errors() {
    const t = makeClient('c');
    const cases = [
      ['publish', '/wc/*'], ['publish', '/wc/**'], ['publish', '/bad channel'], ['publish', '/meta/foo'],
      ['publish', '/service/ok'], ['subscribe', '/meta/foo'], ['subscribe', '/service/x'],
      ['subscribe', '/service/**'], ['subscribe', '/a/*/b'],
    ];
    for (const [op, channel] of cases) {
      const p = op === 'publish' ? t.client.publish(channel, { x: 1 }) : t.client.subscribe(channel, () => {});
      const res = await settle(p, WAIT_MS, op + ' ' + channel);
      emit('result', { op, channel, ok: res.ok, code: res.error && res.error.code,
                       message: res.error && res.error.message, params: res.error && res.error.params });
    }
    emit('clients', { clients: [summary(t)] });
    await close(t);
  },

  // The publisher's own extension adds ext; the subscriber must see it, and nothing of the
  // publisher's session (clientId) may be forwarded.
  async ext() {
    const sub = makeClient('sub'), pub = makeClient('pub');
    pub.hooks.push((message, callback) => {
      if (message.channel === '/ext/ch') {
        message.ext = { trace: 'abc', nested: { n: 1 } };
        callback(message);
        return true;
      }
      return false;
    });
    await subscribe(sub, '/ext/ch');
    await publish(pub, '/ext/ch', { hello: 'world' });
    await waitFor(() => copies(sub, '/ext/ch') >= 1, WAIT_MS, 'message with ext');
    emit('delivered', { message: sub.delivered[0] });
    emit('clients', { clients: [summary(sub), summary(pub)] });
    await close(sub, pub);
  },

  // After subscribing, hold back the next /meta/connect long enough for the server to expire the
  // session. The server must then answer 401 with advice {reconnect: handshake}; the client
  // re-handshakes, re-subscribes on its own, and receives what is published afterwards.
  async rehandshake() {
    const stallMs = Number(opts['stall-ms'] || 6000);
    const sub = makeClient('sub'), pub = makeClient('pub');
    const got = [];
    await subscribe(sub, '/rh/ch', (data) => got.push(data));
    let stalled = false;
    sub.hooks.push((message, callback) => {
      if (message.channel !== '/meta/connect' || stalled) return false;
      stalled = true;
      emit('stalling', { client_id: message.clientId, ms: stallMs });
      setTimeout(() => callback(message), stallMs);
      return true;
    });
    await waitFor(() => stalled, WAIT_MS + 2000, 'the next connect');
    const resubscribed = () => sub.meta.some((m) => m.channel === '/meta/subscribe' && m.successful &&
      sub.clientIds.length >= 2 && m.clientId === sub.clientIds[sub.clientIds.length - 1]);
    await waitFor(resubscribed, stallMs + 10000, 're-handshake and re-subscribe');
    const rejected = sub.meta.filter((m) => m.channel === '/meta/connect' && !m.successful);
    emit('rejected_connects', { replies: rejected });
    await publish(pub, '/rh/ch', { after: 'rehandshake' });
    await waitFor(() => got.length >= 1, WAIT_MS, 'message after re-handshake');
    emit('received', { data: got });
    emit('clients', { clients: [summary(sub), summary(pub)] });
    await close(sub, pub);
  },

  // Unsubscribed channels stop delivering; the still-subscribed one is the fence.
  async unsubscribe() {
    const sub = makeClient('sub'), pub = makeClient('pub');
    await subscribe(sub, '/u/a');
    await subscribe(sub, '/u/b');
    await publish(pub, '/u/a', { n: 1 });
    await waitFor(() => copies(sub, '/u/a') >= 1, WAIT_MS, 'first message');
    sub.client.unsubscribe('/u/a');
    await waitFor(() => sub.meta.some((m) => m.channel === '/meta/unsubscribe'), WAIT_MS, 'unsubscribe reply');
    emit('unsubscribe_reply', { reply: sub.meta.find((m) => m.channel === '/meta/unsubscribe') });
    await publish(pub, '/u/a', { n: 2 });
    await publish(pub, '/u/b', { n: 3 });
    await waitFor(() => copies(sub, '/u/b') >= 1, WAIT_MS, 'fence message');
    await sleep(100);
    emit('copies', { a: copies(sub, '/u/a'), b: copies(sub, '/u/b') });
    emit('clients', { clients: [summary(sub), summary(pub)] });
    await close(sub, pub);
  },

  // disconnect() resolves; the test then checks over raw HTTP that the session is gone.
  async disconnect() {
    const t = makeClient('c');
    await subscribe(t, '/d/ch');
    const res = await settle(t.client.disconnect(), WAIT_MS, 'disconnect');
    emit('disconnected', { ok: res.ok, error: res.error });
    emit('disconnect_reply', { reply: t.meta.find((m) => m.channel === '/meta/disconnect') || null });
    emit('clients', { clients: [summary(t)] });
  },
};

if (!scenarios[scenario] || !url) {
  process.stderr.write('usage: faye_client.js <' + Object.keys(scenarios).join('|') + '> <url> [--transport=...]\n');
  process.exit(64);
}
run(scenarios[scenario], Number(opts['deadline-ms'] || 30000));
