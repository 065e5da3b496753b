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
const { Tally } = require('./client');
const { PayloadFactory, Pusher, epochMs } = require('./push');
const { pacer } = require('./wsframe');
const {
  cfg, emit, die, Meter, makeClients, connectAll, waitQuiet, setUp, waitDeliveries, checks, percentile, checkpoint,
} = require('./common');
const crowd = require('./crowd');

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
async function runMemory(tally) {
  // A few sockets come and go first, so that what a server sets up lazily on its first connections is
  // in the baseline and not counted as per-socket memory.
  const warmup = makeClients(new Tally(0), Math.min(cfg.warmup_sockets, cfg.sockets), 'warmup');
  const warm = await connectAll(warmup);
  for (const c of warmup) c.close();
  await checkpoint('baseline', { warmup_connected: warm.connected });
  const clients = makeClients(tally, cfg.sockets);
  const conn = await setUp(tally, clients);
  await checkpoint('loaded', { connected: conn.connected });
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

const SCENARIOS = { connect: runConnect, memory: runMemory, fanout: runFanout, latency: runLatency, ...crowd };

async function main() {
  const run = SCENARIOS[cfg.scenario];
  if (!run) die(`unknown scenario ${cfg.scenario}`);
  if (!Number.isInteger(cfg.port) || !cfg.secret || !cfg.key) die('port, secret and key are required');
  // Room in each socket's bitmap for every push the scenario may send (a stream runs until the deadline).
  const streams = cfg.scenario === 'storm' || cfg.scenario === 'drain';
  const capacity = streams ? Math.ceil(cfg.rate * cfg.deadline_s) + 16 : cfg.pushes;
  const tally = new Tally(['fanout', 'latency', 'storm', 'drain'].includes(cfg.scenario) ? capacity : 0);
  const result = await run(tally);
  emit({ event: 'result', scenario: cfg.scenario, ...result });
  process.exit(0);
}

main().catch((err) => die(String((err && err.stack) || err)));
