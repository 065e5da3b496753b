'use strict';
// The backend's side: POST /api/channel over keep-alive HTTP, with a Linen-like payload that carries a
// sequence number (first field, so clients find it at once) and its send time.

const http = require('node:http');
const { performance } = require('node:perf_hooks');

const FILLER = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore. ';

function uuid(n) {
  const hex = n.toString(16).padStart(12, '0');
  return `5f0c2a1e-7b3d-4c8e-9a61-${hex}`;
}

/** Builds push bodies of about `targetBytes` (the JSON clients receive, i.e. without `token`). */
class PayloadFactory {
  constructor(channel, targetBytes) {
    this.channel = channel;
    const probe = JSON.stringify(this.build(100, epochMs(), ''));
    const room = Math.max(0, targetBytes - probe.length);
    this.body = FILLER.repeat(Math.ceil(room / FILLER.length) + 1).slice(0, room);
    this.bytes = JSON.stringify(this.build(100, epochMs(), this.body)).length;
  }

  build(seq, sentAt, body) {
    const message = {
      id: uuid(seq + 1),
      body,
      sentAt: '2024-05-01T12:00:00.000Z',
      usersId: 'user-0001',
      mentions: [],
      attachments: [],
    };
    return {
      seq,
      sent_at: sentAt,
      channel_id: this.channel,
      thread_id: uuid(seq + 2),
      message_id: uuid(seq + 1),
      imitation_id: uuid(seq + 3),
      is_thread: true,
      is_reply: false,
      message: JSON.stringify(message),
    };
  }

  /** The request body for push `seq`: the service key first, then the payload (and `extra` fields). */
  request(key, seq, sentAt, extra = null) {
    return JSON.stringify({ token: key, ...this.build(seq, sentAt, this.body), ...extra });
  }
}

class Pusher {
  constructor(port, key, maxSockets) {
    this.port = port;
    this.key = key;
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
    this.sent = 0;
    this.failed = 0;
    this.statuses = {};
  }

  /** POSTs one body; resolves with the HTTP status (0 on a transport error), never rejects. */
  post(path, body) {
    this.sent += 1;
    return new Promise((resolve) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => this.done(res.statusCode, resolve));
        },
      );
      req.setTimeout(30000, () => req.destroy(new Error('push timeout')));
      req.on('error', () => this.done(0, resolve));
      req.end(body);
    });
  }

  done(status, resolve) {
    this.statuses[status] = (this.statuses[status] || 0) + 1;
    if (status !== 200) this.failed += 1;
    resolve(status);
  }

  close() {
    this.agent.destroy();
  }
}

/** Wall-clock milliseconds since the epoch with sub-millisecond precision, for the payload's sent_at. */
function epochMs() {
  return performance.timeOrigin + performance.now();
}

module.exports = { PayloadFactory, Pusher, epochMs };
