'use strict';
// One raw Socket.IO client: a websocket (wsframe.js) speaking Engine.IO v4 + Socket.IO v5 text framing by
// hand, so that thousands of them cost the load generator little. Only what the benchmarks need: open,
// CONNECT with auth, one `join` with ack, ping/pong, and counting `new_msg` deliveries without parsing
// the whole JSON of each (the sequence number is read in place from the raw bytes).

const { WsClient } = require('./wsframe');

/** The websocket under each client: our lean one by default, the `ws` library to compare with. */
function openSocket(url, handlers) {
  const { hostname, port, pathname, search } = new URL(url);
  if (process.env.LOADGEN_WEBSOCKET !== 'ws') {
    return new WsClient({ host: hostname, port: Number(port), path: pathname + search }, handlers);
  }
  const WebSocket = require('ws');
  const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
  ws.on('open', handlers.onOpen);
  ws.on('message', handlers.onMessage);
  ws.on('error', (err) => handlers.onClose(`error: ${err.code || err.message}`));
  ws.on('close', () => handlers.onClose('closed'));
  return ws;
}

const NEW_MSG_PREFIX = Buffer.from('42["new_msg",');
const SEQ_KEY = Buffer.from('"seq":');
const CH_0 = 0x30; // '0'
const CH_2 = 0x32; // '2'
const CH_4 = 0x34; // '4'
const CH_SPACE = 0x20;

/** Shared tallies of every client of one run; per-socket state lives on the client. */
class Tally {
  constructor(pushes) {
    this.pushes = pushes;
    this.delivered = 0; // first receipt of (socket, seq)
    this.duplicates = 0;
    this.unknownSeq = 0;
    this.malformed = 0;
    this.otherEvents = 0; // events other than new_msg (e.g. presence), counted and ignored
    this.otherEventNames = {};
    this.unexpectedCloses = 0;
    this.pings = 0;
    this.frames = 0; // every frame received, for telling when the sockets have gone quiet
    this.onDelivery = null; // (clientIndex, seq) => void, set by a scenario
    this.onComplete = null; // set while a scenario waits for its last delivery
  }
}

/** Reads a non-negative integer written in ASCII at `buf[start..]`, skipping spaces; -1 if none. */
function readUint(buf, start) {
  let i = start;
  while (i < buf.length && buf[i] === CH_SPACE) i += 1;
  let value = -1;
  while (i < buf.length && buf[i] >= CH_0 && buf[i] <= CH_0 + 9) {
    value = (value < 0 ? 0 : value * 10) + (buf[i] - CH_0);
    i += 1;
  }
  return value;
}

/** Full check of one delivered frame (done once per socket): shape, no leaked key, optional offset. */
function checkNewMsgFrame(text, expectedChannel) {
  const packet = JSON.parse(text.slice(2));
  if (!Array.isArray(packet) || packet[0] !== 'new_msg' || packet.length < 2 || packet.length > 3) return false;
  const payload = packet[1];
  if (payload === null || typeof payload !== 'object' || 'token' in payload) return false;
  if (payload.channel_id !== expectedChannel || typeof payload.message !== 'string') return false;
  return packet.length === 2 || typeof packet[2] === 'string';
}

class RawClient {
  /**
   * @param {number} index position of this client in the run (its bitmap row)
   * @param {string} url ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket
   * @param {string} token JWT sent as auth.token
   * @param {string} room room joined after CONNECT
   * @param {Tally} tally shared counters
   * @param {string} channel channel_id expected in deliveries
   */
  constructor(index, url, token, room, tally, channel) {
    this.index = index;
    this.url = url;
    this.token = token;
    this.room = room;
    this.tally = tally;
    this.channel = channel;
    this.seen = tally.pushes > 0 ? new Uint8Array(tally.pushes) : null;
    this.checked = false;
    this.ws = null;
    this.state = 'new';
    this.closing = false;
    this.settle = null; // {resolve, reject} of the pending connect()
  }

  /** Opens, authenticates and joins; resolves when the join is acknowledged with ok. */
  connect(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`timeout in state ${this.state}`)), timeoutMs);
      this.settle = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      };
      this.state = 'opening';
      this.ws = openSocket(this.url, {
        onOpen: () => {},
        onMessage: (buf, isBinary) => this.onFrame(buf, isBinary),
        onClose: (reason) => {
          if (this.state === 'joined' && !this.closing) this.tally.unexpectedCloses += 1;
          this.fail(new Error(`${reason} in state ${this.state}`));
          this.state = 'closed';
        },
      });
    });
  }

  fail(err) {
    if (this.settle) {
      const { reject } = this.settle;
      this.settle = null;
      this.closing = true;
      if (this.ws) this.ws.terminate();
      reject(err);
    }
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.terminate();
  }

  onFrame(buf, isBinary) {
    this.tally.frames += 1;
    if (isBinary) {
      this.tally.malformed += 1;
      return;
    }
    const c0 = buf[0];
    if (c0 === CH_4 && buf[1] === CH_2) {
      if (buf.length > NEW_MSG_PREFIX.length && buf.compare(NEW_MSG_PREFIX, 0, NEW_MSG_PREFIX.length, 0, NEW_MSG_PREFIX.length) === 0) {
        this.onNewMsg(buf);
      } else {
        this.countOtherEvent(buf);
      }
      return;
    }
    if (c0 === CH_2 && buf.length === 1) {
      this.tally.pings += 1;
      this.ws.send('3');
      return;
    }
    this.onControl(buf.toString('utf8'));
  }

  onNewMsg(buf) {
    const keyAt = buf.indexOf(SEQ_KEY, NEW_MSG_PREFIX.length);
    const seq = keyAt < 0 ? -1 : readUint(buf, keyAt + SEQ_KEY.length);
    if (seq < 0) {
      this.tally.malformed += 1;
      return;
    }
    if (this.seen === null || seq >= this.seen.length) {
      this.tally.unknownSeq += 1;
      return;
    }
    if (this.seen[seq] !== 0) {
      this.tally.duplicates += 1;
      return;
    }
    if (!this.checked) {
      this.checked = true;
      if (!checkNewMsgFrame(buf.toString('utf8'), this.channel)) this.tally.malformed += 1;
    }
    this.seen[seq] = 1;
    this.tally.delivered += 1;
    if (this.tally.onDelivery !== null) this.tally.onDelivery(this.index, seq);
  }

  countOtherEvent(buf) {
    this.tally.otherEvents += 1;
    const end = buf.indexOf(0x22, 4); // closing quote of the event name in 42["name",...
    const name = end > 4 && buf[2] === 0x5b && buf[3] === 0x22 ? buf.toString('utf8', 4, end) : '?';
    this.tally.otherEventNames[name] = (this.tally.otherEventNames[name] || 0) + 1;
  }

  onControl(text) {
    if (text[0] === '0' && this.state === 'opening') {
      this.state = 'authenticating';
      this.ws.send(`40${JSON.stringify({ token: this.token })}`);
    } else if (text.startsWith('40') && this.state === 'authenticating') {
      this.state = 'joining';
      this.ws.send(`420${JSON.stringify(['join', this.room])}`);
    } else if (text.startsWith('44')) {
      let code = 'unknown';
      try {
        const body = JSON.parse(text.slice(2));
        code = (body.data && body.data.code) || body.message || code;
      } catch {
        // keep 'unknown'
      }
      this.fail(new Error(`connect refused: ${code}`));
    } else if (text.startsWith('430') && this.state === 'joining') {
      let ack = null;
      try {
        ack = JSON.parse(text.slice(3))[0];
      } catch {
        ack = null;
      }
      if (ack && ack.ok === true) {
        this.state = 'joined';
        const { resolve } = this.settle || {};
        this.settle = null;
        if (resolve) resolve();
      } else {
        this.fail(new Error(`join refused: ${JSON.stringify(ack)}`));
      }
    } else if (text[0] === '1' || text.startsWith('41')) {
      this.fail(new Error('closed by server'));
    } else if (text !== '3') {
      this.tally.malformed += 1;
    }
  }
}

module.exports = { RawClient, Tally, readUint, checkNewMsgFrame };
