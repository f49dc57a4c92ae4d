'use strict';
// Interactive driver of several real `faye` clients, each connected to a chosen cluster node.
//   node cluster_faye.js [--deadline-ms=N]
// Reads one JSON command per line on stdin and prints JSON events (lib.js conventions):
//   {"cmd":"client","name":"c1","url":"http://127.0.0.1:8001/bayeux","transport":"websocket"}
//   {"cmd":"subscribe","name":"c1","channel":"/a/*"}     -> {"event":"subscribed",...}
//   {"cmd":"publish","name":"c2","channel":"/a/b","data":{...}} -> {"event":"published",...}
//   {"cmd":"lag","sub":"c1","pub":"c2","samples":50,"prefix":"/lag"} -> {"event":"lag","ms":[...]}
//   {"cmd":"exit"}
// Every message a client receives on the wire (before Faye's local fan-out, so duplicates show)
// is reported as {"event":"message","name":..,"channel":..,"data":..}. Errors are events too;
// the deadline ends the process whatever happens.
const readline = require('readline');
const faye = require('faye');
const { emit, describe, args, settle, sleep } = require('./lib');

const opts = args(process.argv.slice(2));
const DEADLINE_MS = Number(opts['deadline-ms'] || 60000);
const WAIT_MS = 5000;
const clients = new Map();

setTimeout(() => { emit('timeout', { after_ms: DEADLINE_MS }); process.exit(2); }, DEADLINE_MS).unref();

function makeClient(name, url, transport) {
  const client = new faye.Client(url, { retry: 0.5 });
  if (transport === 'long-polling') client.disable('websocket');
  const t = { name, client, watchers: [] };
  client.addExtension({
    incoming(message, callback) {
      if (!message.channel.startsWith('/meta/') && !('successful' in message)) {
        emit('message', { name, channel: message.channel, data: message.data });
        for (const w of t.watchers) w(message);
      }
      callback(message);
    },
  });
  clients.set(name, t);
  return t;
}

async function must(thenable, label) {
  const res = await settle(thenable, WAIT_MS, label);
  if (!res.ok) throw new Error(label + ' failed: ' + JSON.stringify(res.error));
}

// Subscribe-to-routable lag: after the subscribe is acknowledged by the subscriber's node, the
// other client publishes every 2 ms (to its own node) until the first copy arrives.
async function lag(cmd) {
  const sub = clients.get(cmd.sub);
  const pub = clients.get(cmd.pub);
  const out = [];
  for (let i = 0; i < cmd.samples; i++) {
    const channel = cmd.prefix + '/s' + i;
    let got = 0;
    const watcher = (m) => { if (m.channel === channel && !got) got = Date.now(); };
    sub.watchers.push(watcher);
    const subscription = sub.client.subscribe(channel, () => {});
    await must(subscription, 'subscribe ' + channel);
    const acked = Date.now();
    const until = acked + 2000;
    while (!got && Date.now() < until) {
      pub.client.publish(channel, { i });
      await sleep(2);
    }
    sub.watchers.splice(sub.watchers.indexOf(watcher), 1);
    out.push(got ? got - acked : null);
    subscription.cancel();  // Faye sends the /meta/unsubscribe on its own; nothing to await
  }
  emit('lag', { ms: out });
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'client':
      makeClient(cmd.name, cmd.url, cmd.transport || 'websocket');
      emit('client', { name: cmd.name });
      break;
    case 'subscribe':
      await must(clients.get(cmd.name).client.subscribe(cmd.channel, () => {}), 'subscribe ' + cmd.channel);
      emit('subscribed', { name: cmd.name, channel: cmd.channel });
      break;
    case 'publish':
      await must(clients.get(cmd.name).client.publish(cmd.channel, cmd.data), 'publish ' + cmd.channel);
      emit('published', { name: cmd.name, channel: cmd.channel });
      break;
    case 'lag':
      await lag(cmd);
      break;
    case 'exit':
      for (const t of clients.values()) t.client.disconnect();
      await sleep(50);
      emit('done');
      process.exit(0);
      break;
    default:
      throw new Error('unknown command ' + cmd.cmd);
  }
}

let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  chain = chain.then(() => handle(cmd)).catch((err) => emit('error', Object.assign({ cmd: cmd.cmd }, describe(err))));
});
process.stdin.on('end', () => { chain.then(() => process.exit(0)); });
