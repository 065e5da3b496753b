'use strict';
// What the load generator's scenarios share: the configuration (a JSON argument), the JSON lines to the
// harness, the CPU meter, making and connecting clients, waiting for quiet and for deliveries, checks.

const { performance } = require('node:perf_hooks');
const readline = require('node:readline');
const jwt = require('jsonwebtoken');
const { RawClient, Tally } = require('./client');

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
  admission_tries: 20, // a handshake refused with 503 (admission) is tried again this many times at most
  idle_timeout_s: 15, // give up waiting for deliveries after this long without one
  quiet_ms: 300, // the sockets are settled when nothing arrived for this long
  quiet_max_s: 240,
  deadline_s: 300, // hard bound on the whole process
  // crowd scenarios (crowd.js)
  small_sockets: 5, // storm: sockets in a small room of their own, for push latency during the storm
  small_rate: 20, // storm: pushes per second to the small room
  quiet_s: 5, // storm, drain: pushes flowing before the drop (the quiet latency is measured here)
  tail_s: 3, // storm, drain: pushes flowing on after every socket is back
  give_up_s: 120, // storm, drain: a dropped socket stops trying after this long
  port_b: 0, // drain: the server that stays
  churn: 50, // soak: connects and disconnects a second
  seconds: 600, // soak: how long
};

const cfg = { ...DEFAULTS, ...JSON.parse(process.argv[2] || '{}') };

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function die(message) {
  emit({ event: 'error', message });
  process.exit(1);
}

const startedAt = performance.now();
setTimeout(() => die(`deadline of ${cfg.deadline_s}s reached`), cfg.deadline_s * 1000).unref();

/** Seconds left before the deadline, so that a scenario can bound its phases and still report. */
function remainingS() {
  return cfg.deadline_s - (performance.now() - startedAt) / 1000;
}

/** A line in the load generator's log (stderr): where a long scenario is, for when it runs out of time. */
function note(text) {
  process.stderr.write(`${((performance.now() - startedAt) / 1000).toFixed(1)}s ${text}\n`);
}

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
 * they fill rooms room:lobby:<channel>-<n> of `room_size` clients each. `options.room(i)` picks another
 * room (the crowd scenarios use room:<channel>), `options.first` numbers the clients on from there.
 */
function makeClients(tally, count, prefix = 'bench', options = {}) {
  const url = `ws://${cfg.host}:${options.port || cfg.port}/socket.io/?EIO=4&transport=websocket`;
  const lobby = (i) => (cfg.room_size > 0 ? `room:lobby:${cfg.channel}-${Math.floor(i / cfg.room_size)}` : `room:lobby:${cfg.channel}`);
  const roomOf = options.room || lobby;
  const first = options.first || 0;
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const rooms = ['room:lobby:*', `room:${cfg.channel}*`];
  const clients = [];
  for (let i = first; i < first + count; i += 1) {
    const token = jwt.sign({ sub: `${prefix}-${i}`, exp, rooms }, cfg.secret, { algorithm: 'HS256' });
    clients.push(new RawClient(i - first, url, token, roomOf(i), tally, cfg.channel));
  }
  return clients;
}

/** Connects every client with at most `concurrency` handshakes in flight. */
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** socket.io-client's reconnection delay: min(1000 * 2^attempt, 5000) ms, then +- 50% at random. */
function backoffMs(attempt) {
  const ms = Math.min(1000 * 2 ** attempt, 5000);
  const deviation = Math.random() * 0.5 * ms;
  return Math.floor(Math.random() * 10) & 1 ? ms + deviation : ms - deviation;
}

/** Whether a connect failed because the server's admission refused the handshake (HTTP 503). */
const refusedByAdmission = (err) => /^handshake refused: HTTP\/1\.1 503 /.test(String(err && err.message));

/**
 * Connects one client; a handshake refused by admission (503) is tried again after socket.io-client's
 * delay, as that client does, at most `admission_tries` times. Resolves with the refusals met; rejects
 * with the last error when it never got in.
 */
async function connectRetrying(client) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await client.connect(cfg.connect_timeout_s * 1000);
      return attempt;
    } catch (err) {
      if (!refusedByAdmission(err) || attempt + 1 >= cfg.admission_tries) throw err;
      await sleep(backoffMs(attempt));
    }
  }
}

/** Connects `clients`, `concurrency` handshakes in flight, each as `connectRetrying` does. */
async function connectAll(clients) {
  let next = 0;
  let failures = 0;
  let refusals = 0;
  const errors = {};
  const worker = async () => {
    while (next < clients.length) {
      const client = clients[next];
      next += 1;
      try {
        refusals += await connectRetrying(client);
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
  return {
    connected: clients.length - failures, connect_failures: failures, connect_errors: errors, admission_refusals: refusals,
  };
}

/** Resolves once no frame arrived for `quiet_ms` (bounded by `quiet_max_s`): setup traffic is over. */
function waitQuiet(tally, maxS = cfg.quiet_max_s) {
  return new Promise((resolve) => {
    const started = performance.now();
    let last = tally.frames;
    const timer = setInterval(() => {
      const quiet = tally.frames === last;
      if (quiet || performance.now() - started > maxS * 1000) {
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


function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

let stdinLines = null;

/** Emits a checkpoint and waits for the harness to answer with a line on stdin (it measures then). */
function checkpoint(name, extra) {
  if (stdinLines === null) stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  emit({ event: 'checkpoint', name, ...extra });
  return stdinLines.next();
}

module.exports = {
  cfg, emit, die, Meter, makeClients, connectAll, waitQuiet, setUp, waitDeliveries, checks, percentile, checkpoint,
  remainingS, note, sleep, backoffMs, refusedByAdmission, connectRetrying,
};
