'use strict';
// The reference peer: stock Faye 1.4.3 on its default (in-memory) engine, mounted like ours.
// Usage: node peers/faye_server.js [port]   (or PORT=... in the environment)
const http = require('http');
const faye = require('faye');

const port = Number(process.argv[2] || process.env.PORT || 8000);
const host = process.env.HOST || '127.0.0.1';

const bayeux = new faye.NodeAdapter({ mount: '/bayeux', timeout: 45 });
// Requests outside the mount fall through to this listener; /health lets the runner wait uniformly.
const server = http.createServer((req, res) => {
  const ok = req.url === '/health';
  res.writeHead(ok ? 200 : 404, { 'Content-Type': 'text/plain' });
  res.end(ok ? 'ok' : 'not found');
});
bayeux.attach(server);
server.listen(port, host);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Held long-polls and sockets keep close() waiting; never outlive the runner's patience.
process.on('SIGTERM', () => setTimeout(() => process.exit(0), 1000).unref());
