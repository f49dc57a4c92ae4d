'use strict';
// Bare-socket WebSocket and HTTP/1.1 clients. The `ws` package and Node's `http` cost the generator
// 15-20 us per frame or request, enough to saturate the generator's core before a fast server's;
// these do only what the benchmark needs (text frames, keep-alive POSTs) and nothing else.
const EventEmitter = require('events');
const net = require('net');

const HEADER_END = Buffer.from('\r\n\r\n');
// The server never checks that keys are random; a zero mask leaves the payload bytes as they are.
const WS_KEY = 'YmF5ZXV4LWJlbmNobWFyaw==';

/** A client WebSocket with the slice of the `ws` API the generator uses; emits strings. */
class RawWebSocket extends EventEmitter {
  constructor(url, { handshakeTimeout = 20000 } = {}) {
    super();
    const u = new URL(url);
    this.buf = null;
    this.upgraded = false;
    this.fragments = null;
    this.sock = net.connect({ host: u.hostname, port: Number(u.port) });
    this.sock.setNoDelay(true);
    this.sock.setTimeout(handshakeTimeout, () => {
      if (!this.upgraded) this.sock.destroy(new Error('WebSocket opening handshake timed out'));
    });
    this.sock.on('connect', () => {
      this.sock.write(
        `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.sock.on('data', (chunk) => this._onData(chunk));
    this.sock.on('error', (err) => this.emit('error', err));
    this.sock.on('close', () => this.emit('close'));
  }

  _onData(chunk) {
    let buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.upgraded) {
      const end = buf.indexOf(HEADER_END);
      if (end === -1) {
        this.buf = buf;
        return;
      }
      const status = buf.toString('latin1', 0, Math.min(end, 64));
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        this.sock.destroy(new Error(`upgrade refused: ${status.split('\r\n')[0]}`));
        return;
      }
      this.upgraded = true;
      this.sock.setTimeout(0);
      buf = buf.subarray(end + 4);
      this.emit('open');
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at];
      const b1 = buf[at + 1];
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        head = 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        len = buf.readUInt32BE(at + 2) * 2 ** 32 + buf.readUInt32BE(at + 6);
        head = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const start = at + head + (masked ? 4 : 0);
      if (buf.length < start + len) break;
      let payload = buf.subarray(start, start + len);
      if (masked) {
        const key = buf.subarray(at + head, at + head + 4);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      }
      this._onFrame(b0 & 0x80, b0 & 0x0f, payload);
      at = start + len;
    }
    this.buf = at < buf.length ? Buffer.from(buf.subarray(at)) : null;
  }

  _onFrame(fin, opcode, payload) {
    if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
      if (!fin || this.fragments) {
        this.fragments = this.fragments || [];
        this.fragments.push(payload);
        if (!fin) return;
        payload = Buffer.concat(this.fragments);
        this.fragments = null;
      }
      this.emit('message', payload.toString());
    } else if (opcode === 0x9) {
      this._write(0xa, payload);
    } else if (opcode === 0x8) {
      this.sock.end();
    }
  }

  _write(opcode, payload) {
    const len = payload.length;
    const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(head + 4 + len);
    frame[0] = 0x80 | opcode;
    if (head === 2) frame[1] = 0x80 | len;
    else if (head === 4) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(len, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
      frame.writeUInt32BE(len >>> 0, 6);
    }
    frame.writeUInt32BE(0, head);
    payload.copy(frame, head + 4);
    this.sock.write(frame);
  }

  send(text) {
    this._write(0x1, Buffer.from(text));
  }

  terminate() {
    this.sock.destroy();
  }
}

/** One keep-alive HTTP/1.1 connection, one request in flight; reconnects after the server closes. */
class RawHttpConnection {
  constructor(url, { timeoutMs = 60000 } = {}) {
    const u = new URL(url);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.path = u.pathname;
    this.hostHeader = u.host;
    this.timeoutMs = timeoutMs;
    this.sock = null;
    this.waiter = null;
  }

  _connect() {
    const sock = net.connect({ host: this.host, port: this.port });
    sock.setNoDelay(true);
    sock.on('data', (chunk) => this._onData(chunk));
    const fail = (err) => {
      if (this.sock === sock) this.sock = null;
      if (this.waiter) this._settle(err || new Error('connection closed'));
    };
    sock.on('error', fail);
    sock.on('close', () => fail(null));
    this.sock = sock;
    this.buf = null;
  }

  /** POSTs `body` (a JSON string) and resolves with the response body text; rejects on non-200. */
  post(body) {
    if (this.waiter) return Promise.reject(new Error('request already in flight'));
    if (!this.sock) this._connect();
    const bytes = Buffer.from(body);
    const req =
      `POST ${this.path} HTTP/1.1\r\nHost: ${this.hostHeader}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${bytes.length}\r\n\r\n`;
    this.sock.write(Buffer.concat([Buffer.from(req, 'latin1'), bytes]));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject, timer: setTimeout(() => this._timeout(), this.timeoutMs) };
    });
  }

  _timeout() {
    const sock = this.sock;
    this._settle(new Error('HTTP request timed out'));
    if (sock) sock.destroy();
  }

  _settle(err, text) {
    const w = this.waiter;
    this.waiter = null;
    this.buf = null;
    clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve(text);
  }

  _onData(chunk) {
    if (!this.waiter) return; // stray bytes after a timeout: the socket is being destroyed anyway
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = buf;
    const end = buf.indexOf(HEADER_END);
    if (end === -1) return;
    const head = buf.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    const body = buf.subarray(end + 4);
    const lenMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let text;
    if (lenMatch) {
      const len = Number(lenMatch[1]);
      if (body.length < len) return;
      text = body.toString('utf8', 0, len);
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      text = decodeChunked(body);
      if (text === null) return;
    } else {
      this._settle(new Error('response without a length'));
      return;
    }
    const closing = /\r\nconnection:\s*close/i.test(head);
    if (closing && this.sock) {
      const sock = this.sock;
      this.sock = null;
      sock.end();
    }
    if (status !== 200) this._settle(new Error(`HTTP ${status}: ${text.slice(0, 200)}`));
    else this._settle(null, text);
  }

  close() {
    if (this.sock) this.sock.destroy();
    this.sock = null;
  }
}

/** The decoded body, or null while the terminating zero-length chunk has not arrived. */
function decodeChunked(body) {
  const parts = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol === -1) return null;
    const size = parseInt(body.toString('latin1', at, eol), 16);
    if (size === 0) return Buffer.concat(parts).toString();
    if (body.length < eol + 2 + size + 2) return null;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

module.exports = { RawHttpConnection, RawWebSocket };
