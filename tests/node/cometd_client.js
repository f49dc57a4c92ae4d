'use strict';
// Drives the real `cometd` npm client (adapted to Node by cometd-nodejs-client, which supplies
// XMLHttpRequest and a `ws`-based WebSocket) against a Bayeux endpoint.
//   node cometd_client.js <scenario> <url> [--transport=websocket|long-polling]
// websocket keeps CometD's default transport order (WebSocket first, handshake included);
// long-polling unregisters the websocket transport. CometD's long-polling appends the message
// type to the URL (/bayeux/handshake, /bayeux/connect), which the server must accept.
const { emit, run, waitFor, args } = require('./lib');

const opts = args(process.argv.slice(2));
const [scenario, url] = opts._;
const transport = opts.transport || 'websocket';
const WAIT_MS = 5000;

async function makeClient(name) {
  const { adapt } = await import('cometd-nodejs-client');
  const { CometD } = await import('cometd');
  adapt();
  const cometd = new CometD(name);
  if (transport === 'long-polling') cometd.unregisterTransport('websocket');
  cometd.configure({ url, logLevel: 'warn', maxNetworkDelay: 5000 });
  const t = { name, cometd, outgoing: [], incoming: [] };
  cometd.registerExtension('record', {
    outgoing(message) { t.outgoing.push(message); return message; },
    incoming(message) { t.incoming.push(message); return message; },
  });
  return t;
}

function call(fn, label) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + label)), WAIT_MS);
    fn((reply) => { clearTimeout(timer); resolve(reply); });
  });
}

const connectTypes = (t) => [...new Set(t.outgoing.filter((m) => m.channel === '/meta/connect')
  .map((m) => m.connectionType))].sort();

async function handshake(t) {
  const reply = await call((cb) => t.cometd.handshake(cb), 'handshake');
  await waitFor(() => t.cometd.getStatus() === 'connected', WAIT_MS, t.name + ' connected');
  return reply;
}

const scenarios = {
  // Handshake, subscribe, publish from a second client, receive, unsubscribe, disconnect.
  async roundtrip() {
    const sub = await makeClient('sub'), pub = await makeClient('pub');
    const started = Date.now();
    const hs = await handshake(sub);
    emit('handshake', { reply: hs, connected_after_ms: Date.now() - started });
    await handshake(pub);
    const got = [];
    let handle = null;
    const subReply = await call((cb) => { handle = sub.cometd.subscribe('/cometd/room', (m) => got.push(m), cb); },
      'subscribe');
    emit('subscribe', { reply: subReply });
    const pubReply = await call((cb) => pub.cometd.publish('/cometd/room', { text: 'hi', n: 1 }, cb), 'publish');
    emit('publish', { reply: pubReply });
    await waitFor(() => got.length >= 1, WAIT_MS, 'delivery');
    emit('received', { message: got[0] });
    const badReply = await call((cb) => pub.cometd.publish('/cometd/*', { n: 2 }, cb), 'wildcard publish');
    emit('bad_publish', { reply: badReply });
    const transports = [sub, pub].map((t) => (t.cometd.getTransport() ? t.cometd.getTransport().type : null));
    const unsubReply = await call((cb) => sub.cometd.unsubscribe(handle, cb), 'unsubscribe');
    emit('unsubscribe', { reply: unsubReply });
    for (const t of [sub, pub]) {
      const reply = await call((cb) => t.cometd.disconnect(cb), 'disconnect');
      emit('disconnect', { name: t.name, reply });
    }
    emit('clients', { clients: [sub, pub].map((t, i) => ({ name: t.name, connection_types: connectTypes(t),
      transport: transports[i] })) });
  },
};

if (!scenarios[scenario] || !url) {
  process.stderr.write('usage: cometd_client.js <' + Object.keys(scenarios).join('|') + '> <url> [--transport=...]\n');
  process.exit(64);
}
run(scenarios[scenario], Number(opts['deadline-ms'] || 30000));
