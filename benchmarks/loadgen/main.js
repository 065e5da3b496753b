'use strict';
// The load generator: one Node process holding every client socket and sending the pushes, so that
// push and delivery are timed on one clock. It runs one scenario, given as a JSON argument, and talks to
// the harness in JSON lines on stdout:
//   {"event":"window_start"} / {"event":"window_end"}   the measured window (the harness samples the
//                                                       server's CPU time at both)
//   {"event":"checkpoint","name":...}                   memory scenario: measure now (the baseline,
//                                                       then with every socket joined and idle); the
//                                                       harness answers with a line on stdin
//   {"event":"result", ...}                             the figures, the checks and our own CPU time
//   {"event":"error", "message": ...}                   then exit 1

const { performance } = require('node:perf_hooks');
const readline = require('node:readline');
const jwt = require('jsonwebtoken');
const { RawClient, Tally } = require('./client');
const { PayloadFactory, Pusher, epochMs } = require('./push');
const { pacer } = require('./wsframe');

const DEFAULTS = {
  host: '127.0.0.1',
  channel: 'bench',
  sockets: 100,
  concurrency: 64, // handshakes in flight while connecting
  room_size: 0, // clients per room; 0: all in one room
  pushes: 10,
  push_concurrency: 4, // POSTs in flight during a burst
  rate: 20, // pushes per second (latency; it sends `pushes` of them)
  payload_bytes: 500,
  read_pace_ms: 0, // fan-out: read each socket at most once per this many ms (0: as data comes)
  warmup_sockets: 100, // memory: connected and closed before the baseline
  connect_timeout_s: 30,
  idle_timeout_s: 15, // give up waiting for deliveries after this long without one
  quiet_ms: 300, // the sockets are settled when nothing arrived for this long
  quiet_max_s: 240,
  deadline_s: 300, // hard bound on the whole process
};

const cfg = { ...DEFAULTS, ...JSON.parse(process.argv[2] || '{}') };

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function die(message) {
  emit({ event: 'error', message });
  process.exit(1);
}

setTimeout(() => die(`deadline of ${cfg.deadline_s}s reached`), cfg.deadline_s * 1000).unref();

/** CPU and event-loop use of this process over a window: shows whether the generator kept up. */
class Meter {
  start() {
    this.cpu = process.cpuUsage();
    this.elu = performance.eventLoopUtilization();
    this.t0 = performance.now();
    emit({ event: 'window_start' });
  }

  stop(endAt = performance.now()) {
    emit({ event: 'window_end' });
    const cpu = process.cpuUsage(this.cpu);
    const wallS = (endAt - this.t0) / 1000;
    const cpuS = (cpu.user + cpu.system) / 1e6;
    return {
      wall_s: wallS,
      cpu_s: cpuS,
      user_s: cpu.user / 1e6,
      sys_s: cpu.system / 1e6,
      cpu_pct: wallS > 0 ? (100 * cpuS) / wallS : 0,
      event_loop_utilization: performance.eventLoopUtilization(this.elu).utilization,
    };
  }
}

/**
 * Mints a token for each client. With `room_size` 0 every client joins room:lobby:<channel>; otherwise
 * they fill rooms room:lobby:<channel>-<n> of `room_size` clients each.
 */
function makeClients(tally, count, prefix = 'bench') {
  const url = `ws://${cfg.host}:${cfg.port}/socket.io/?EIO=4&transport=websocket`;
  const roomOf = (i) => (cfg.room_size > 0 ? `room:lobby:${cfg.channel}-${Math.floor(i / cfg.room_size)}` : `room:lobby:${cfg.channel}`);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const clients = [];
  for (let i = 0; i < count; i += 1) {
    const token = jwt.sign({ sub: `${prefix}-${i}`, exp, rooms: ['room:lobby:*'] }, cfg.secret, { algorithm: 'HS256' });
    clients.push(new RawClient(i, url, token, roomOf(i), tally, cfg.channel));
  }
  return clients;
}

/** Connects every client with at most `concurrency` handshakes in flight. */
async function connectAll(clients) {
  let next = 0;
  let failures = 0;
  const errors = {};
  const worker = async () => {
    while (next < clients.length) {
      const client = clients[next];
      next += 1;
      try {
        await client.connect(cfg.connect_timeout_s * 1000);
      } catch (err) {
        failures += 1;
        const key = String(err && err.message).slice(0, 80);
        errors[key] = (errors[key] || 0) + 1;
      }
    }
  };
  const workers = [];
  for (let i = 0; i < Math.min(cfg.concurrency, clients.length); i += 1) workers.push(worker());
  await Promise.all(workers);
  return { connected: clients.length - failures, connect_failures: failures, connect_errors: errors };
}

/** Resolves once no frame arrived for `quiet_ms` (bounded by `quiet_max_s`): setup traffic is over. */
function waitQuiet(tally) {
  return new Promise((resolve) => {
    const started = performance.now();
    let last = tally.frames;
    const timer = setInterval(() => {
      const quiet = tally.frames === last;
      if (quiet || performance.now() - started > cfg.quiet_max_s * 1000) {
        clearInterval(timer);
        resolve(quiet);
      }
      last = tally.frames;
    }, cfg.quiet_ms);
  });
}

/** Connects every client, then waits for the traffic this caused (presence, say) to die down. */
async function setUp(tally, clients) {
  const t0 = performance.now();
  const conn = await connectAll(clients);
  const connectedAt = performance.now();
  const settled = await waitQuiet(tally);
  return {
    ...conn,
    setup_connect_s: (connectedAt - t0) / 1000,
    setup_s: (performance.now() - t0) / 1000,
    setup_settled: settled,
    setup_frames: tally.frames,
  };
}

/**
 * Resolves when `expected` deliveries arrived, or after `idle_timeout_s` without progress (the
 * figures then show what was lost), or at `maxS`.
 */
function waitDeliveries(tally, expected, maxS) {
  return new Promise((resolve) => {
    if (tally.delivered >= expected) {
      resolve();
      return;
    }
    const started = performance.now();
    let last = tally.delivered;
    let lastChange = started;
    const finish = () => {
      clearInterval(timer);
      tally.onComplete = null;
      resolve();
    };
    tally.onComplete = finish;
    const timer = setInterval(() => {
      const now = performance.now();
      if (tally.delivered !== last) {
        last = tally.delivered;
        lastChange = now;
      }
      if (now - lastChange > cfg.idle_timeout_s * 1000 || now - started > maxS * 1000) finish();
    }, 100);
  });
}

function checks(tally, clients, expected, pusher) {
  return {
    expected,
    delivered: tally.delivered,
    lost: expected - tally.delivered,
    duplicates: tally.duplicates,
    unknown_seq: tally.unknownSeq,
    malformed: tally.malformed,
    unexpected_closes: tally.unexpectedCloses,
    other_events: tally.otherEvents,
    other_event_names: tally.otherEventNames,
    pings_answered: tally.pings,
    push_failures: pusher ? pusher.failed : 0,
    push_statuses: pusher ? pusher.statuses : {},
    sockets: clients.length,
  };
}

async function runConnect(tally) {
  const clients = makeClients(tally, cfg.sockets);
  const meter = new Meter();
  meter.start();
  const conn = await connectAll(clients);
  const loadgen = meter.stop();
  await waitQuiet(tally);
  for (const c of clients) c.close();
  return {
    ...conn,
    ...checks(tally, clients, 0, null),
    value: conn.connected / loadgen.wall_s,
    unit: 'connects/s',
    loadgen,
  };
}

/** Emits a checkpoint and waits for the harness to answer with a line on stdin (it measures then). */
function checkpoint(lines, name, extra) {
  emit({ event: 'checkpoint', name, ...extra });
  return lines.next();
}

async function runMemory(tally) {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  // A few sockets come and go first, so that what a server sets up lazily on its first connections is
  // in the baseline and not counted as per-socket memory.
  const warmup = makeClients(new Tally(0), Math.min(cfg.warmup_sockets, cfg.sockets), 'warmup');
  const warm = await connectAll(warmup);
  for (const c of warmup) c.close();
  await checkpoint(lines, 'baseline', { warmup_connected: warm.connected });
  const clients = makeClients(tally, cfg.sockets);
  const conn = await setUp(tally, clients);
  await checkpoint(lines, 'loaded', { connected: conn.connected });
  const result = { ...conn, ...checks(tally, clients, 0, null), warmup_failures: warm.connect_failures };
  for (const c of clients) c.close();
  return result;
}

async function runFanout(tally) {
  const clients = makeClients(tally, cfg.sockets);
  const conn = await setUp(tally, clients);
  const factory = new PayloadFactory(cfg.channel, cfg.payload_bytes);
  const pusher = new Pusher(cfg.port, cfg.key, cfg.push_concurrency);
  const expected = conn.connected * cfg.pushes;
  let lastDeliveryAt = 0;
  tally.onDelivery = () => {
    lastDeliveryAt = performance.now();
    if (tally.delivered === expected && tally.onComplete) tally.onComplete();
  };
  const meter = new Meter();
  pacer.start(cfg.read_pace_ms);
  meter.start();
  const firstPostAt = performance.now();
  let nextSeq = 0;
  const worker = async () => {
    while (nextSeq < cfg.pushes) {
      const seq = nextSeq;
      nextSeq += 1;
      await pusher.post('/api/channel', factory.request(cfg.key, seq, epochMs()));
    }
  };
  const workers = [];
  for (let i = 0; i < Math.min(cfg.push_concurrency, cfg.pushes); i += 1) workers.push(worker());
  await Promise.all(workers);
  const postsDoneAt = performance.now();
  pacer.stop(); // the server has taken every push: from now on read what comes at once
  await waitDeliveries(tally, expected, cfg.deadline_s);
  const endAt = Math.max(lastDeliveryAt, postsDoneAt);
  const loadgen = meter.stop(endAt);
  const elapsed = (endAt - firstPostAt) / 1000;
  const result = {
    ...conn,
    ...checks(tally, clients, expected, pusher),
    value: tally.delivered / elapsed,
    unit: 'deliveries/s',
    elapsed_s: elapsed,
    posts_s: (postsDoneAt - firstPostAt) / 1000,
    payload_bytes: factory.bytes,
    loadgen,
  };
  pusher.close();
  for (const c of clients) c.close();
  return result;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

async function runLatency(tally) {
  const clients = makeClients(tally, cfg.sockets);
  const conn = await setUp(tally, clients);
  const factory = new PayloadFactory(cfg.channel, cfg.payload_bytes);
  const pushes = cfg.pushes;
  const pusher = new Pusher(cfg.port, cfg.key, 16);
  const sentAt = new Float64Array(pushes);
  const latency = new Float64Array(clients.length * pushes).fill(NaN);
  const expected = conn.connected * pushes;
  tally.onDelivery = (index, seq) => {
    latency[index * pushes + seq] = performance.now() - sentAt[seq];
    if (tally.delivered === expected && tally.onComplete) tally.onComplete();
  };
  const meter = new Meter();
  meter.start();
  const t0 = performance.now();
  const intervalMs = 1000 / cfg.rate;
  const posts = [];
  await new Promise((resolve) => {
    let seq = 0;
    const tick = () => {
      // Every push due by now goes out (none is skipped if a timer fires late), then wait for the next.
      while (seq < pushes && performance.now() >= t0 + seq * intervalMs) {
        sentAt[seq] = performance.now();
        posts.push(pusher.post('/api/channel', factory.request(cfg.key, seq, epochMs())));
        seq += 1;
      }
      if (seq >= pushes) resolve();
      else setTimeout(tick, Math.max(0, t0 + seq * intervalMs - performance.now()));
    };
    tick();
  });
  await Promise.all(posts);
  await waitDeliveries(tally, expected, cfg.deadline_s);
  const loadgen = meter.stop();
  const values = latency.filter((v) => !Number.isNaN(v)).sort();
  const result = {
    ...conn,
    ...checks(tally, clients, expected, pusher),
    value: percentile(values, 0.99),
    unit: 'ms',
    p50_ms: percentile(values, 0.5),
    p90_ms: percentile(values, 0.9),
    p99_ms: percentile(values, 0.99),
    max_ms: values.length ? values[values.length - 1] : NaN,
    payload_bytes: factory.bytes,
    loadgen,
  };
  pusher.close();
  for (const c of clients) c.close();
  return result;
}

const SCENARIOS = { connect: runConnect, memory: runMemory, fanout: runFanout, latency: runLatency };

async function main() {
  const run = SCENARIOS[cfg.scenario];
  if (!run) die(`unknown scenario ${cfg.scenario}`);
  if (!Number.isInteger(cfg.port) || !cfg.secret || !cfg.key) die('port, secret and key are required');
  const tally = new Tally(cfg.scenario === 'fanout' || cfg.scenario === 'latency' ? cfg.pushes : 0);
  const result = await run(tally);
  emit({ event: 'result', scenario: cfg.scenario, ...result });
  process.exit(0);
}

main().catch((err) => die(String((err && err.stack) || err)));
