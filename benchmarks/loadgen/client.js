'use strict';
// One raw Socket.IO client: a websocket (wsframe.js) speaking Engine.IO v4 + Socket.IO v5 text framing by
// hand, so that thousands of them cost the load generator little. Only what the benchmarks need: open,
// CONNECT with auth, one `join` with ack, ping/pong, and counting `new_msg` deliveries without parsing
// the whole JSON of each (the sequence number is read in place from the raw bytes). For the crowd
// scenarios it also does Socket.IO connection state recovery as socket.io-client does: it keeps the `pid`
// of the CONNECT reply and the last string argument of each `new_msg` (the offset), and sends both in
// the CONNECT of a reconnect; the session is recovered when the reply carries the same pid.

const { performance } = require('node:perf_hooks');
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
    this.frames = 0; // every frame received but pings, for telling when the sockets have gone quiet
    this.onDelivery = null; // (clientIndex, seq) => void, set by a scenario
    this.onComplete = null; // set while a scenario waits for its last delivery
    this.trackOffsets = false; // keep each socket's last offset (recovery)
    this.countOnly = false; // count new_msg frames without checking sequence numbers (soak)
    this.recovered = 0; // reconnects whose session was recovered
    this.notRecovered = 0; // reconnects that asked for recovery and got a fresh session
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
/** The last argument of a `42["new_msg",{...},"offset"]` frame when it is a string, else null. */
function lastStringArg(buf) {
  const n = buf.length;
  if (n < 6 || buf[n - 1] !== 0x5d || buf[n - 2] !== 0x22) return null;
  const open = buf.lastIndexOf(0x22, n - 3);
  if (open < 3 || buf[open - 1] !== 0x2c || buf[open - 2] !== 0x7d) return null;
  return buf.toString('utf8', open + 1, n - 2);
}

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
    this.pid = null; // recovery: the session's private id, from the CONNECT reply
    this.offset = null; // recovery: the last offset received
    this.recover = false; // send pid and offset in the next CONNECT
    this.onDrop = null; // (client, reason) => void: the connection of a joined client went away
    this.startedAt = 0; // performance.now() of the last connect(), its join request and its join ack
    this.joinSentAt = 0;
    this.joinedAt = 0;
    this.presenceBytes = 0; // bytes of presence_* frames received, and of presence_state alone
    this.stateBytes = 0;
    this.countBytes = 0; // of presence_count alone (sent at most once a second to a large room's members)
    this.joinedLarge = null; // whether the first presence_state said the room was large (null: none came)
  }

  /**
   * Opens, authenticates and joins; resolves when the join is acknowledged with ok, or at once when the
   * session was recovered (its rooms come back with it, so there is nothing to join).
   */
  connect(timeoutMs, { recover = false } = {}) {
    this.recover = recover;
    this.closing = false;
    this.startedAt = performance.now();
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
          const dropped = this.state === 'joined' && !this.closing;
          if (dropped && this.onDrop === null) this.tally.unexpectedCloses += 1;
          this.fail(new Error(`${reason} in state ${this.state}`));
          this.state = 'closed';
          if (dropped && this.onDrop !== null) this.onDrop(this, reason);
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
    if (!isBinary && buf.length === 1 && buf[0] === CH_2) {
      // A ping: answered, and not counted as traffic (with thousands of sockets pings never stop, and
      // the sockets must still count as quiet).
      this.tally.pings += 1;
      this.ws.send('3');
      return;
    }
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
    this.onControl(buf.toString('utf8'));
  }

  onNewMsg(buf) {
    const keyAt = buf.indexOf(SEQ_KEY, NEW_MSG_PREFIX.length);
    const seq = keyAt < 0 ? -1 : readUint(buf, keyAt + SEQ_KEY.length);
    if (seq < 0) {
      this.tally.malformed += 1;
      return;
    }
    if (this.tally.trackOffsets) {
      const offset = lastStringArg(buf);
      if (offset !== null) this.offset = offset;
    }
    if (this.tally.countOnly) {
      this.tally.delivered += 1;
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
    if (name.startsWith('presence')) {
      this.presenceBytes += buf.length;
      if (name === 'presence_count') this.countBytes += buf.length;
      if (name === 'presence_state') {
        if (this.joinedLarge === null) this.joinedLarge = buf.includes('"large":true');
        this.stateBytes += buf.length;
      }
    }
    this.tally.otherEventNames[name] = (this.tally.otherEventNames[name] || 0) + 1;
  }

  joined() {
    this.state = 'joined';
    this.joinedAt = performance.now();
    const { resolve } = this.settle || {};
    this.settle = null;
    if (resolve) resolve();
  }

  onControl(text) {
    if (text[0] === '0' && this.state === 'opening') {
      this.state = 'authenticating';
      const auth = { token: this.token };
      if (this.recover && this.pid !== null) auth.pid = this.pid;
      if (this.recover && this.pid !== null && this.offset !== null) auth.offset = this.offset;
      this.ws.send(`40${JSON.stringify(auth)}`);
    } else if (text.startsWith('40') && this.state === 'authenticating') {
      let reply = {};
      try {
        reply = JSON.parse(text.slice(2)) || {};
      } catch {
        reply = {};
      }
      if (this.recover) {
        const recovered = this.pid !== null && reply.pid === this.pid;
        this.wasRecovered = recovered;
        if (recovered) this.tally.recovered += 1;
        else this.tally.notRecovered += 1;
        if (recovered) {
          this.joined();
          return;
        }
      }
      this.pid = typeof reply.pid === 'string' ? reply.pid : null;
      this.state = 'joining';
      this.joinSentAt = performance.now();
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
        this.joined();
      } else {
        this.fail(new Error(`join refused: ${JSON.stringify(ack)}`));
      }
    } else if (text[0] === '1' || text.startsWith('41')) {
      this.fail(new Error('closed by server'));
      if (this.state === 'joined' && this.ws) this.ws.terminate(); // a drop, as far as onDrop is concerned
    } else if (text !== '3') {
      this.tally.malformed += 1;
    }
  }
}

module.exports = { RawClient, Tally, readUint, checkNewMsgFrame, lastStringArg };
