'use strict';
// A minimal websocket client over a plain TCP socket (RFC 6455, client side, no extensions). The load
// generator holds thousands of sockets that each receive hundreds of small frames a second; going
// through `net` directly skips the per-frame stream machinery of a general websocket library, which
// would otherwise make the generator, not the server, the bottleneck. Frames from the server are
// handed over as Buffer views without copying; frames to the server are masked as the RFC requires.

const crypto = require('node:crypto');
const net = require('node:net');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HANDSHAKE_BYTES = 16 * 1024;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

// Every socket reads into this one buffer (`onread`), which skips a Buffer and a stream 'data' event per
// read. It is safe because each read is parsed at once, before the next can happen; whatever must
// outlive the callback (an incomplete frame, fragments) is copied out of it.
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function maskedFrame(opcode, payload) {
  const len = payload.length;
  const extra = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const frame = Buffer.allocUnsafe(2 + extra + 4 + len);
  frame[0] = 0x80 | opcode;
  if (extra === 0) {
    frame[1] = 0x80 | len;
  } else if (extra === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  const maskAt = 2 + extra;
  crypto.randomFillSync(frame, maskAt, 4);
  for (let i = 0; i < len; i += 1) frame[maskAt + 4 + i] = payload[i] ^ frame[maskAt + (i & 3)];
  return frame;
}

/**
 * Paced reading, for throughput runs: after each read a socket stops reading until the next tick of
 * `periodMs`, so that what arrives meanwhile is read in one go. Far fewer reads, wake-ups and ACKs per
 * message; a delivery is seen at most one period late.
 */
class Pacer {
  constructor() {
    this.periodMs = 0;
    this.held = [];
    this.timer = null;
  }

  start(periodMs) {
    this.stop();
    if (periodMs <= 0) return;
    this.periodMs = periodMs;
    this.timer = setInterval(() => this.release(), periodMs);
  }

  /** Back to reading everything as it comes. */
  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.periodMs = 0;
    this.release();
  }

  hold(client) {
    if (this.periodMs > 0 && !client.held && !client.closed) {
      client.held = true;
      client.socket.pause();
      this.held.push(client);
    }
  }

  release() {
    const held = this.held;
    this.held = [];
    for (const client of held) {
      client.held = false;
      if (!client.closed) client.socket.resume();
    }
  }
}

const pacer = new Pacer();

class WsClient {
  /**
   * @param {{host: string, port: number, path: string}} target
   * @param {{onOpen: () => void, onMessage: (buf: Buffer, binary: boolean) => void,
   *          onClose: (reason: string) => void}} handlers
   */
  constructor(target, handlers) {
    this.handlers = handlers;
    this.open = false;
    this.closed = false;
    this.pending = null; // bytes of an incomplete frame (or of the handshake answer)
    this.fragments = null; // payloads of a fragmented message, rare
    this.fragmentOp = 0;
    this.held = false; // paused by the pacer
    this.key = crypto.randomBytes(16).toString('base64');
    const socket = net.connect({
      host: target.host,
      port: target.port,
      onread: {
        buffer: READ_BUFFER,
        callback: (nread, buf) => {
          const chunk = buf.subarray(0, nread);
          if (this.open) {
            this.onData(chunk);
            pacer.hold(this);
          } else {
            this.onHandshakeData(chunk);
          }
        },
      },
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      socket.write(
        `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('error', (err) => this.shutdown(`error: ${err.code || err.message}`));
    socket.on('close', () => this.shutdown('closed'));
  }

  onHandshakeData(chunk) {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = data.indexOf(HEADER_END);
    if (end < 0) {
      this.pending = Buffer.from(data);
      if (data.length > MAX_HANDSHAKE_BYTES) this.shutdown('handshake too long');
      return;
    }
    this.pending = null;
    const head = data.toString('latin1', 0, end);
    const accept = crypto.createHash('sha1').update(this.key + GUID).digest('base64');
    if (!/^HTTP\/1\.1 101 /.test(head) || !head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
      this.shutdown(`handshake refused: ${head.split('\r\n')[0]}`);
      return;
    }
    this.open = true;
    this.handlers.onOpen();
    if (data.length > end + 4) this.onData(data.subarray(end + 4));
  }

  onData(chunk) {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let at = 0;
    while (!this.closed) {
      const avail = buf.length - at;
      if (avail < 2) break;
      const b0 = buf[at];
      const b1 = buf[at + 1];
      if (b1 & 0x80) {
        this.shutdown('masked frame from server');
        return;
      }
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (avail < 4) break;
        len = buf.readUInt16BE(at + 2);
        head = 4;
      } else if (len === 127) {
        if (avail < 10) break;
        len = Number(buf.readBigUInt64BE(at + 2));
        head = 10;
        if (len > MAX_FRAME_BYTES) {
          this.shutdown('frame too large');
          return;
        }
      }
      if (avail < head + len) break;
      this.onFrame(b0, buf.subarray(at + head, at + head + len));
      at += head + len;
    }
    if (at < buf.length && !this.closed) this.pending = Buffer.from(buf.subarray(at));
  }

  onFrame(b0, payload) {
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (fin) {
        this.handlers.onMessage(payload, opcode === OP_BINARY);
      } else {
        this.fragments = [Buffer.from(payload)];
        this.fragmentOp = opcode;
      }
    } else if (opcode === OP_CONTINUATION && this.fragments !== null) {
      this.fragments.push(Buffer.from(payload));
      if (fin) {
        const whole = Buffer.concat(this.fragments);
        this.fragments = null;
        this.handlers.onMessage(whole, this.fragmentOp === OP_BINARY);
      }
    } else if (opcode === OP_PING) {
      this.socket.write(maskedFrame(0xa, payload));
    } else if (opcode === OP_CLOSE) {
      this.socket.end(maskedFrame(OP_CLOSE, Buffer.alloc(0)));
      this.shutdown('close frame');
    }
  }

  /** Sends one text message. */
  send(text) {
    if (this.open && !this.closed) this.socket.write(maskedFrame(OP_TEXT, Buffer.from(text)));
  }

  /** Drops the connection at once (no closing handshake: the benchmark is over). */
  terminate() {
    this.socket.destroy();
    this.shutdown('terminated');
  }

  shutdown(reason) {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.socket.destroy();
    this.handlers.onClose(reason);
  }
}

module.exports = { WsClient, pacer };
