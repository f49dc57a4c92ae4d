'use strict';
// Entry point of the load generator: runs one scenario against one server and prints one JSON line.
// Usage: node run.js <scenario> --port P --pid SERVER_PID [--options '{"seconds":5,...}']
// Scenarios: fanout, saturation, longpoll, handshake_lp, handshake_ws, idle.
const { fixed, saturation } = require('./fanout');
const { handshake } = require('./handshake');
const { idle } = require('./idle');
const { longpoll } = require('./longpoll');
const { setWsLibrary } = require('./ws_client');

const DEFAULTS = {
  host: '127.0.0.1',
  mount: '/bayeux',
  messageBytes: 200,
  subscribers: 1000,
  deliveriesPerS: 20000,
  warmupS: 2,
  seconds: 8,
  stepS: 3,
  rampPublishesPerS: [20, 40, 60, 80, 100, 130, 160, 200, 250, 320, 400, 500],
  clients: 500,
  publishesPerS: 5,
  concurrency: 16,
  sessions: 10000,
  settleS: 3,
  maxRunS: 300,
  wsLibrary: 'raw',
  serverCore: null,
};

const SCENARIOS = {
  fanout: fixed,
  saturation,
  longpoll,
  handshake_lp: (o) => handshake(o, 'long-polling'),
  handshake_ws: (o) => handshake(o, 'websocket'),
  idle,
};

function parseArgs(argv) {
  const args = { scenario: argv[0] };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const run = SCENARIOS[args.scenario];
  if (!run || !args.port || !args.pid) {
    process.stderr.write(`usage: run.js <${Object.keys(SCENARIOS).join('|')}> --port P --pid PID\n`);
    process.exit(2);
  }
  const o = { ...DEFAULTS, ...JSON.parse(args.options || '{}') };
  o.pid = Number(args.pid);
  setWsLibrary(o.wsLibrary);
  o.httpUrl = `http://${o.host}:${args.port}${o.mount}`;
  o.wsUrl = `ws://${o.host}:${args.port}${o.mount}`;
  // Never outlive the runner: a wedged server must not leave this process hanging.
  setTimeout(() => {
    process.stderr.write(`[gen] ${args.scenario} exceeded ${o.maxRunS}s, giving up\n`);
    process.exit(3);
  }, o.maxRunS * 1000).unref();
  const result = await run(o);
  process.stdout.write(`${JSON.stringify({ scenario: args.scenario, ...result })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`[gen] failed: ${err.stack || err}\n`);
  process.exit(1);
});
