'use strict';
// A minimal Bayeux-over-WebSocket session speaking raw JSON arrays (no Faye client library), so the
// generator stays cheap enough not to be the bottleneck at tens of thousands of deliveries a second.
const WebSocket = require('ws');
const { RawWebSocket } = require('./raw');

// 'raw' (default) or 'ws': the `ws` package cross-checks the bare client and costs more per frame.
let wsLibrary = 'raw';
function setWsLibrary(name) {
  if (name !== 'raw' && name !== 'ws') throw new Error(`unknown WebSocket library ${name}`);
  wsLibrary = name;
}

const TS_KEY = '"ts":';

/**
 * One socket, one session. Replies are matched by `id`; every frame that carries no meta reply
 * takes a fast path that only scans for the `"ts":` stamps of delivered messages, so it works
 * whether the server sends one message per frame (Faye) or batches several.
 *
 * Connects keep cycling: each connect reply (held by Faye, possibly answered at once by others)
 * immediately sends the next /meta/connect, so the session never expires mid-run.
 */
class WsSession {
  constructor(url, { onDeliveries = null } = {}) {
    this.url = url;
    this.onDeliveries = onDeliveries; // (count, stampsUs[]) per frame
    this.pending = new Map();
    this.nextId = 1;
    this.clientId = null;
    this.cycling = false;
    this.connectErrors = 0;
    this.closed = false;
  }

  open(timeoutMs = 20000) {
    return new Promise((resolve, reject) => {
      const ws =
        wsLibrary === 'ws'
          ? new WebSocket(this.url, { perMessageDeflate: false, handshakeTimeout: timeoutMs })
          : new RawWebSocket(this.url, { handshakeTimeout: timeoutMs });
      this.ws = ws;
      ws.on('open', resolve);
      ws.on('error', (err) => {
        this.closed = true;
        reject(err);
        this._failAll(err);
      });
      ws.on('close', () => {
        this.closed = true;
        reject(new Error('socket closed before the upgrade')); // no-op once open
        this._failAll(new Error('socket closed'));
      });
      ws.on('message', (data) => this._onFrame(data.toString()));
    });
  }

  _failAll(err) {
    for (const { reject } of this.pending.values()) reject(err);
    this.pending.clear();
  }

  _onFrame(text) {
    if (text.indexOf('"/meta/') === -1 && text.indexOf('"successful"') === -1) {
      this._scanDeliveries(text);
      return;
    }
    let messages;
    try {
      messages = JSON.parse(text);
    } catch (_err) {
      return;
    }
    if (!Array.isArray(messages)) messages = [messages];
    let delivered = 0;
    const stamps = [];
    for (const msg of messages) {
      if (msg && 'successful' in msg) this._onReply(msg);
      else if (msg && msg.data && typeof msg.data.ts === 'number') {
        delivered++;
        stamps.push(msg.data.ts);
      }
    }
    if (delivered && this.onDeliveries) this.onDeliveries(delivered, stamps);
  }

  _scanDeliveries(text) {
    const stamps = [];
    let at = text.indexOf(TS_KEY);
    while (at !== -1) {
      let i = at + TS_KEY.length;
      while (text.charCodeAt(i) === 32) i++; // a server may pretty-print `"ts": 123`
      let v = 0;
      for (let c = text.charCodeAt(i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) v = v * 10 + (c - 48);
      stamps.push(v);
      at = text.indexOf(TS_KEY, i);
    }
    if (stamps.length && this.onDeliveries) this.onDeliveries(stamps.length, stamps);
  }

  _onReply(msg) {
    if (msg.channel === '/meta/connect' && this.cycling) {
      if (msg.successful) this._sendConnect();
      else {
        this.connectErrors++;
        this.cycling = false;
      }
    }
    const waiter = this.pending.get(msg.id);
    if (waiter) {
      this.pending.delete(msg.id);
      waiter.resolve(msg);
    }
  }

  send(message) {
    message.id = String(this.nextId++);
    this.ws.send(JSON.stringify([message]));
    return message.id;
  }

  request(message, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const id = this.send(message);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${message.channel} timed out`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async handshake() {
    const reply = await this.request({
      channel: '/meta/handshake',
      version: '1.0',
      supportedConnectionTypes: ['websocket'],
    });
    if (!reply.successful) throw new Error(`handshake failed: ${reply.error}`);
    this.clientId = reply.clientId;
    return reply;
  }

  /** Starts the connect cycle; the first reply may be immediate or held, either is fine. */
  startConnecting() {
    this.cycling = true;
    this._sendConnect();
  }

  _sendConnect() {
    if (this.closed) return;
    this.send({ channel: '/meta/connect', clientId: this.clientId, connectionType: 'websocket' });
  }

  async subscribe(subscription) {
    const reply = await this.request({ channel: '/meta/subscribe', clientId: this.clientId, subscription });
    if (!reply.successful) throw new Error(`subscribe failed: ${reply.error}`);
    return reply;
  }

  publish(channel, data) {
    this.send({ channel, data, clientId: this.clientId });
  }

  close() {
    this.cycling = false;
    this.closed = true;
    if (this.ws) this.ws.terminate();
  }
}

/** Opens, handshakes, starts connecting and optionally subscribes: a ready subscriber. */
async function readySession(url, subscription, opts) {
  const s = new WsSession(url, opts);
  await s.open();
  await s.handshake();
  s.startConnecting();
  if (subscription) await s.subscribe(subscription);
  return s;
}

module.exports = { WsSession, readySession, setWsLibrary };
