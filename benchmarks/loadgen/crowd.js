'use strict';
// The crowd scenarios: many sockets in ONE room (room:<channel>), as a community room is.
//   bigroom  N sockets join, `concurrency` handshakes in flight: rate, join-ack times, presence bytes
//   storm    N joined sockets drop at once and reconnect (with recovery) while pushes flow
//   drain    M sockets on one server, which the harness stops (SIGTERM); they move to the other
//   soak     S sockets for T seconds with pushes and K connects and K disconnects a second
// Reconnects follow socket.io-client's defaults: the first after 1 s +- 50%, then doubling up to 5 s.

const { performance } = require('node:perf_hooks');
const { Tally } = require('./client');
const { PayloadFactory, Pusher, epochMs } = require('./push');
const {
  cfg, Meter, makeClients, connectAll, waitQuiet, waitDeliveries, checks, percentile, checkpoint, remainingS, note,
  sleep, backoffMs, refusedByAdmission, connectRetrying,
} = require('./common');

function stats(values, prefix) {
  const sorted = Float64Array.from(values).sort();
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    [`${prefix}_p50`]: percentile(sorted, 0.5),
    [`${prefix}_p99`]: percentile(sorted, 0.99),
    [`${prefix}_max`]: sorted.length ? sorted[sorted.length - 1] : NaN,
    [`${prefix}_mean`]: sorted.length ? sum / sorted.length : NaN,
  };
}

/** Reconnects dropped clients the way socket.io-client does, asking for recovery; counts how it went. */
class Reconnector {
  constructor(url, giveUpMs) {
    this.url = url; // where to reconnect (the drain scenario points it at the other server)
    this.giveUpAt = performance.now() + giveUpMs;
    this.dropped = 0;
    this.back = 0;
    this.failed = 0;
    this.attempts = 0;
    this.refusals = 0; // attempts refused by the server's admission (503), tried again like the others
    this.errors = {};
    this.handshakes = []; // ms from a successful attempt's start to the socket being back
    this.backTimes = []; // performance.now() of each socket's return
    this.dropTimes = [];
    this.pending = 0;
    this.onAllBack = null;
  }

  watch(clients) {
    for (const c of clients) c.onDrop = (client) => this.reconnect(client);
  }

  async reconnect(client) {
    this.dropped += 1;
    this.pending += 1;
    this.dropTimes.push(performance.now());
    for (let attempt = 0; performance.now() < this.giveUpAt; attempt += 1) {
      await sleep(backoffMs(attempt));
      this.attempts += 1;
      client.url = this.url;
      const t0 = performance.now();
      try {
        await client.connect(cfg.connect_timeout_s * 1000, { recover: true });
        const now = performance.now();
        this.handshakes.push(now - t0);
        this.backTimes.push(now);
        this.back += 1;
        this.settle();
        return;
      } catch (err) {
        if (refusedByAdmission(err)) this.refusals += 1;
        const key = String(err && err.message).slice(0, 80);
        this.errors[key] = (this.errors[key] || 0) + 1;
      }
    }
    this.failed += 1;
    this.settle();
  }

  settle() {
    this.pending -= 1;
    if (this.pending === 0 && this.onAllBack) this.onAllBack();
  }

  /** Resolves once every dropped client is back or has given up. */
  allBack() {
    return new Promise((resolve) => {
      if (this.pending === 0) resolve();
      else this.onAllBack = resolve;
    });
  }

  /** The most sockets that came back within any one second. */
  peakPerSecond() {
    const t = [...this.backTimes].sort((a, b) => a - b);
    let best = 0;
    let lo = 0;
    for (let hi = 0; hi < t.length; hi += 1) {
      while (t[hi] - t[lo] > 1000) lo += 1;
      best = Math.max(best, hi - lo + 1);
    }
    return best;
  }

  result(startAt) {
    const last = this.backTimes.length ? Math.max(...this.backTimes) : NaN;
    return {
      dropped: this.dropped,
      back: this.back,
      reconnect_failures: this.failed,
      reconnect_attempts: this.attempts,
      reconnect_errors: this.errors,
      reconnect_refusals: this.refusals,
      all_back_s: (last - startAt) / 1000,
      drops_spread_s: this.dropTimes.length ? (Math.max(...this.dropTimes) - Math.min(...this.dropTimes)) / 1000 : 0,
      peak_reconnects_per_s: this.peakPerSecond(),
      ...stats(this.handshakes, 'handshake_ms'),
    };
  }
}

/** Sends one push every 1/rate s to room:<room> through POST /api/community until stopped. */
class Stream {
  constructor(port, room, rate, onSend) {
    this.pusher = new Pusher(port, cfg.key, 8);
    this.factory = new PayloadFactory(cfg.channel, cfg.payload_bytes);
    this.room = room;
    this.rate = rate;
    this.onSend = onSend || (() => {});
    this.sent = 0;
    this.posts = [];
    this.timer = null;
  }

  start() {
    const t0 = performance.now();
    const interval = 1000 / this.rate;
    const tick = () => {
      // Every push due by now goes out (none is skipped when a timer fires late).
      while (performance.now() >= t0 + this.sent * interval) {
        const seq = this.sent;
        this.sent += 1;
        this.onSend(seq, performance.now());
        const body = this.factory.request(cfg.key, seq, epochMs(), { community_id: this.room });
        this.posts.push(this.pusher.post('/api/community', body));
      }
      this.timer = setTimeout(tick, Math.max(0, t0 + this.sent * interval - performance.now()));
    };
    tick();
  }

  async stop() {
    clearTimeout(this.timer);
    await Promise.all(this.posts);
  }
}

/**
 * Sets the crowd up: connects, then waits for presence traffic to die down, for at most a quarter of the
 * time left (a server with full presence in a room of thousands may not get there at all).
 */
async function crowdSetUp(tally, clients) {
  note(`connecting ${clients.length} sockets, ${cfg.concurrency} in flight`);
  const conn = await connectAll(clients);
  note(`connected ${conn.connected}, ${conn.connect_failures} failures; waiting for quiet`);
  const settled = await waitQuiet(tally, Math.min(cfg.quiet_max_s, remainingS() / 4));
  note(settled ? 'quiet' : 'not quiet, going on');
  return { ...conn, setup_quiet: settled };
}

/** How long dropped sockets may try to come back: what is left, less the tail and the final wait. */
function giveUpMs() {
  return Math.max(5, Math.min(cfg.give_up_s, remainingS() - cfg.tail_s - 25)) * 1000;
}

/** Lost and doubled deliveries over the clients, given how many pushes each should have received. */
function exactness(clients, sent) {
  let lost = 0;
  let worst = 0;
  let socketsWithLoss = 0;
  const examples = []; // a few (socket, seq) lost, and when that socket came back, to look into
  for (const c of clients) {
    let missing = 0;
    for (let seq = 0; seq < sent; seq += 1) {
      if (c.seen[seq] !== 0) continue;
      missing += 1;
      if (examples.length < 10) examples.push({ socket: c.index, seq, recovered: c.wasRecovered, offset: c.offset });
    }
    lost += missing;
    worst = Math.max(worst, missing);
    if (missing) socketsWithLoss += 1;
  }
  return { lost, sockets_with_loss: socketsWithLoss, max_lost_per_socket: worst, lost_examples: examples };
}

async function runBigroom(tally) {
  const clients = makeClients(tally, cfg.sockets, 'crowd', { room: () => `room:${cfg.channel}` });
  const meter = new Meter();
  meter.start();
  const conn = await connectAll(clients);
  const loadgen = meter.stop();
  const quietFrom = performance.now();
  const settled = await waitQuiet(tally);
  const joined = clients.filter((c) => c.state === 'joined');
  const result = {
    ...conn,
    ...checks(tally, clients, 0, null),
    value: conn.connected / loadgen.wall_s,
    presence_settled: settled,
    presence_settle_s: (performance.now() - quietFrom) / 1000,
    ...stats(joined.map((c) => c.joinedAt - c.joinSentAt), 'join_ack_ms'),
    ...stats(joined.map((c) => c.joinedAt - c.startedAt), 'connect_ms'),
    ...stats(joined.map((c) => c.presenceBytes), 'presence_bytes'),
    ...stats(joined.map((c) => c.stateBytes), 'state_bytes'),
    // What joining a large room cost each joiner in presence: everything but the once-a-second counts.
    ...stats(joined.filter((c) => c.joinedLarge).map((c) => c.presenceBytes - c.countBytes), 'large_join_bytes'),
    joined_large: joined.filter((c) => c.joinedLarge).length,
    loadgen,
  };
  for (const c of clients) c.close();
  return result;
}

/** Pushes sent at 20/s to a few sockets in their own room: latency by the phase each was sent in. */
function smallRoom(tally, phaseOf) {
  const sentAt = [];
  const latency = { quiet: [], storm: [], after: [] };
  tally.onDelivery = (_index, seq) => {
    latency[phaseOf(sentAt[seq])].push(performance.now() - sentAt[seq]);
  };
  const stream = new Stream(cfg.port, `${cfg.channel}-small`, cfg.small_rate, (seq, at) => { sentAt[seq] = at; });
  return { stream, latency };
}

async function runStorm(tally) {
  tally.trackOffsets = true;
  const capacity = Math.ceil(Math.max(cfg.rate, cfg.small_rate) * cfg.deadline_s) + 16;
  const small = new Tally(capacity);
  const big = makeClients(tally, cfg.sockets, 'crowd', { room: () => `room:${cfg.channel}` });
  const few = makeClients(small, cfg.small_sockets, 'small', { room: () => `room:${cfg.channel}-small` });
  const conn = await crowdSetUp(tally, [...big, ...few]);
  let dropAt = Infinity;
  let backAt = Infinity;
  const phases = smallRoom(small, (at) => (at < dropAt ? 'quiet' : at <= backAt ? 'storm' : 'after'));
  const stream = new Stream(cfg.port, cfg.channel, cfg.rate);
  stream.start();
  phases.stream.start();
  await sleep(cfg.quiet_s * 1000);
  const reconnector = new Reconnector(big[0].url, giveUpMs());
  const joined = big.filter((c) => c.state === 'joined');
  reconnector.watch(joined);
  const meter = new Meter();
  meter.start();
  dropAt = performance.now();
  note(`dropping ${joined.length} sockets`);
  for (const c of joined) c.ws.terminate(); // the network blips: every socket drops
  await reconnector.allBack();
  backAt = performance.now();
  note(`back: ${reconnector.back}, gave up: ${reconnector.failed}`);
  const loadgen = meter.stop();
  await sleep(cfg.tail_s * 1000);
  await Promise.all([stream.stop(), phases.stream.stop()]);
  const expected = joined.length * stream.sent;
  await waitDeliveries(tally, expected, Math.max(1, Math.min(60, remainingS() - 10)));
  await waitDeliveries(small, few.length * phases.stream.sent, Math.max(1, Math.min(10, remainingS() - 5)));
  const result = {
    ...conn,
    ...checks(tally, big, expected, stream.pusher),
    ...exactness(joined, stream.sent),
    pushes_sent: stream.sent,
    recovered: tally.recovered,
    not_recovered: tally.notRecovered,
    setup_quiet: conn.setup_quiet,
    ...reconnector.result(dropAt),
    ...stats(phases.latency.quiet, 'small_quiet_ms'),
    ...stats(phases.latency.storm, 'small_storm_ms'),
    small_sockets: few.length,
    small_lost: few.length * phases.stream.sent - small.delivered,
    small_duplicates: small.duplicates,
    storm_window_s: (backAt - dropAt) / 1000,
    loadgen,
  };
  for (const c of [...big, ...few]) c.close();
  return result;
}

async function runDrain(tally) {
  tally.trackOffsets = true;
  const clients = makeClients(tally, cfg.sockets, 'crowd', { room: () => `room:${cfg.channel}` });
  const conn = await crowdSetUp(tally, clients);
  // Pushes go to the server that stays, and reach the drained one's sockets through Redis.
  const stream = new Stream(cfg.port_b, cfg.channel, cfg.rate);
  stream.start();
  await sleep(cfg.quiet_s * 1000);
  const other = `ws://${cfg.host}:${cfg.port_b}/socket.io/?EIO=4&transport=websocket`;
  const reconnector = new Reconnector(other, giveUpMs());
  const joined = clients.filter((c) => c.state === 'joined');
  reconnector.watch(joined);
  const meter = new Meter();
  meter.start();
  const termAt = performance.now();
  note(`SIGTERM to the server holding ${joined.length} sockets`);
  await checkpoint('drain', { connected: conn.connected }); // the harness sends SIGTERM, then answers
  // Wait until every socket was dropped (bounded), then until every one is back.
  for (let i = 0; i < cfg.give_up_s * 10 && reconnector.dropped < joined.length; i += 1) await sleep(100);
  await reconnector.allBack();
  note(`back: ${reconnector.back}, gave up: ${reconnector.failed}`);
  const loadgen = meter.stop();
  await sleep(cfg.tail_s * 1000);
  await stream.stop();
  const expected = joined.length * stream.sent;
  await waitDeliveries(tally, expected, Math.max(1, Math.min(60, remainingS() - 10)));
  const result = {
    ...conn,
    ...checks(tally, clients, expected, stream.pusher),
    ...exactness(joined, stream.sent),
    not_dropped: joined.length - reconnector.dropped,
    pushes_sent: stream.sent,
    recovered: tally.recovered,
    not_recovered: tally.notRecovered,
    ...reconnector.result(termAt),
    first_drop_s: reconnector.dropTimes.length ? (Math.min(...reconnector.dropTimes) - termAt) / 1000 : NaN,
    loadgen,
  };
  for (const c of clients) c.close();
  return result;
}

async function runSoak(tally) {
  tally.countOnly = true;
  const rooms = Math.max(1, Math.ceil(cfg.sockets / Math.max(1, cfg.room_size)));
  const roomOf = (i) => `room:lobby:${cfg.channel}-${i % rooms}`;
  let made = cfg.sockets;
  const live = makeClients(tally, cfg.sockets, 'soak', { room: roomOf });
  const conn = await connectAll(live);
  await waitQuiet(tally);
  const pusher = new Pusher(cfg.port, cfg.key, 8);
  const factory = new PayloadFactory(cfg.channel, cfg.payload_bytes);
  let pushes = 0;
  const churn = { connects: 0, connect_failures: 0, disconnects: 0, refusals: 0, errors: {} };
  const tickMs = 100;
  const perTick = cfg.churn / (1000 / tickMs);
  let owed = 0;
  await checkpoint('soak_start', { connected: conn.connected });
  const meter = new Meter();
  meter.start();
  const t0 = performance.now();
  const posts = new Set();
  let tick = 0;
  while (performance.now() - t0 < cfg.seconds * 1000) {
    tick += 1;
    // Pushes: `rate` a second, each to one of the rooms in turn.
    while (pushes < ((performance.now() - t0) / 1000) * cfg.rate) {
      const body = factory.request(cfg.key, pushes, epochMs(), { channel_id: `${cfg.channel}-${pushes % rooms}` });
      const post = pusher.post('/api/channel', body);
      posts.add(post);
      post.then(() => posts.delete(post));
      pushes += 1;
    }
    // Churn: close `churn` random joined sockets a second and open as many new ones. (A socket still
    // connecting is not picked: its failure would be ours, not the server's.)
    owed += perTick;
    for (; owed >= 1; owed -= 1) {
      let at = Math.floor(Math.random() * live.length);
      for (let tries = 0; tries < 20 && live[at].state !== 'joined'; tries += 1) at = Math.floor(Math.random() * live.length);
      live[at].close();
      churn.disconnects += 1;
      const [fresh] = makeClients(tally, 1, 'soak', { room: roomOf, first: made });
      made += 1;
      live[at] = fresh;
      connectRetrying(fresh).then(
        (refused) => { churn.connects += 1; churn.refusals += refused; },
        (err) => {
          churn.connect_failures += 1;
          const key = String(err && err.message).slice(0, 80);
          churn.errors[key] = (churn.errors[key] || 0) + 1;
        },
      );
    }
    await sleep(Math.max(0, t0 + tick * tickMs - performance.now()));
  }
  await Promise.all(posts);
  const loadgen = meter.stop();
  await checkpoint('soak_end', {});
  const result = {
    ...conn,
    ...checks(tally, live, 0, pusher),
    lost: 0, // not counted here: sockets come and go (the other scenarios check exactly-once delivery)
    pushes_sent: pushes,
    churn_connects: churn.connects,
    churn_connect_failures: churn.connect_failures,
    churn_disconnects: churn.disconnects,
    churn_refusals: churn.refusals, // handshakes refused by admission (503) and tried again, as socket.io-client does
    churn_errors: { ...churn.errors }, // as it was here: closing the sockets below fails those still connecting
    loadgen,
  };
  pusher.close();
  for (const c of live) c.close();
  return result;
}

module.exports = { bigroom: runBigroom, storm: runStorm, drain: runDrain, soak: runSoak };
