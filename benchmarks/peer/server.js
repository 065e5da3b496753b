'use strict';
// The Node peer of sio-push: a plain socket.io 4.8 server keeping the same contract for the parts the
// benchmarks use (JWT connect, auto-joined user room, `join`, POST /api/channel, GET /api/health).
// It is written the way a Node developer would write it: default socket.io settings (no connection
// state recovery, perMessageDeflate off, polling and websocket), one process, no tuning, unless told
// otherwise for a scenario that needs it:
//
// Environment: PORT (required), PUSH_HOST (default 127.0.0.1), PUSH_SERVICE_KEY, PUSH_JWT_SECRET;
//   PEER_PROCESSES   N > 1: node's cluster module forks N workers sharing the port (the load generator's
//                    clients are websocket-only, so no sticky sessions are needed: each connection
//                    stays on the worker that accepted it)
//   PEER_ADAPTER     none (default) | cluster (@socket.io/cluster-adapter, through the primary) |
//                    redis-streams (@socket.io/redis-streams-adapter on PEER_REDIS_URL)
//   PEER_RECOVERY_SECONDS  > 0: socket.io's connectionStateRecovery with that maxDisconnectionDuration

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const http = require('node:http');
const jwt = require('jsonwebtoken');
const { Server } = require('socket.io');

const HOST = process.env.PUSH_HOST || '127.0.0.1';
const PORT = Number(process.env.PORT);
const SERVICE_KEY = process.env.PUSH_SERVICE_KEY || '';
const JWT_SECRET = process.env.PUSH_JWT_SECRET || '';
const MAX_BODY_BYTES = 1024 * 1024;
const PROCESSES = Number(process.env.PEER_PROCESSES || 1);
const ADAPTER = process.env.PEER_ADAPTER || 'none';
const REDIS_URL = process.env.PEER_REDIS_URL || '';
const RECOVERY_SECONDS = Number(process.env.PEER_RECOVERY_SECONDS || 0);

const problems = [];
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) problems.push('PORT must be a port number');
if (SERVICE_KEY.length < 32) problems.push('PUSH_SERVICE_KEY must be at least 32 characters');
if (JWT_SECRET.length < 32) problems.push('PUSH_JWT_SECRET must be at least 32 characters');
if (!Number.isInteger(PROCESSES) || PROCESSES < 1) problems.push('PEER_PROCESSES must be a positive integer');
if (!['none', 'cluster', 'redis-streams'].includes(ADAPTER)) problems.push('PEER_ADAPTER: none, cluster or redis-streams');
if (ADAPTER === 'redis-streams' && !REDIS_URL) problems.push('PEER_ADAPTER=redis-streams needs PEER_REDIS_URL');
if (ADAPTER === 'cluster' && PROCESSES < 2) problems.push('PEER_ADAPTER=cluster needs PEER_PROCESSES of 2 or more');
if (problems.length) {
  console.error(`peer: bad configuration:\n  ${problems.join('\n  ')}`);
  process.exit(2);
}

const ID = '[A-Za-z0-9_.-]{1,128}';
const ID_RE = new RegExp(`^${ID}$`);
const ROOM_RE = new RegExp(`^(?:room:lobby:${ID}|room:topic:${ID}|room:(?!lobby$|topic$)${ID}|user:${ID})$`);

// fnmatch on the whole name, as the `rooms` claim is read by sio-push: `*` any run, `?` one character.
function globToRegExp(pattern) {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

function mayJoin(user, room) {
  if (room.startsWith('user:')) return room === `user:${user.sub}`;
  return user.rooms.some((re) => re.test(room));
}

function verifyToken(token) {
  let claims;
  try {
    claims = jwt.verify(token, JWT_SECRET, { algorithms: ['HS256'] });
  } catch (err) {
    return { code: err instanceof jwt.TokenExpiredError ? 'token_expired' : 'token_invalid' };
  }
  if (typeof claims.sub !== 'string' || !ID_RE.test(claims.sub) || typeof claims.exp !== 'number') {
    return { code: 'token_invalid' };
  }
  const patterns = Array.isArray(claims.rooms) ? claims.rooms.filter((p) => typeof p === 'string') : [];
  return { user: { sub: claims.sub, rooms: patterns.map(globToRegExp) } };
}

function roomOf(payload) {
  if (typeof payload === 'string') return payload;
  if (payload && typeof payload === 'object' && typeof payload.room === 'string') return payload.room;
  return null;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function keyMatches(given) {
  if (typeof given !== 'string') return false;
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(SERVICE_KEY).digest();
  return crypto.timingSafeEqual(a, b);
}

function readBody(req, callback) {
  const chunks = [];
  let size = 0;
  let tooLarge = Number(req.headers['content-length'] || 0) > MAX_BODY_BYTES;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) tooLarge = true;
    else if (!tooLarge) chunks.push(chunk);
  });
  req.on('end', () => callback(tooLarge, Buffer.concat(chunks)));
}

// POST /api/channel emits to room:lobby:<channel_id>, POST /api/community to room:<community_id>.
const PUSH_ROUTES = { '/api/channel': ['channel_id', 'room:lobby:'], '/api/community': ['community_id', 'room:'] };

function handlePush(req, res, [field, prefix]) {
  readBody(req, (tooLarge, raw) => {
    if (tooLarge) return sendJson(res, 413, { status: 413, error: 'body_too_large' });
    let body = null;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      body = null;
    }
    const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
    const key = body && typeof body === 'object' && typeof body.token === 'string' ? body.token : bearer;
    if (!keyMatches(key)) return sendJson(res, 401, { status: 401, error: 'unauthorized' });
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      return sendJson(res, 400, { status: 400, error: 'invalid_json' });
    }
    if (typeof body[field] !== 'string' || !ID_RE.test(body[field])) {
      return sendJson(res, 400, { status: 400, errors: { [field]: ['invalid or missing'] } });
    }
    const { token: _key, ...message } = body;
    io.to(`${prefix}${body[field]}`).emit('new_msg', message);
    return sendJson(res, 200, { status: 200 });
  });
}

// Set once every worker listens (the primary says so): until then /api/health answers 503, so the harness
// starts measuring only when every process takes connections.
let ready = PROCESSES === 1;
let io = null;

async function makeAdapter() {
  if (ADAPTER === 'cluster') return require('@socket.io/cluster-adapter').createAdapter();
  if (ADAPTER === 'redis-streams') {
    const { createClient } = require('redis');
    const client = createClient({ url: REDIS_URL });
    client.on('error', (err) => console.error(`peer: redis: ${err.message}`));
    await client.connect();
    return require('@socket.io/redis-streams-adapter').createAdapter(client);
  }
  return undefined;
}

async function startServer() {
  const options = {};
  const adapter = await makeAdapter();
  if (adapter) options.adapter = adapter;
  if (RECOVERY_SECONDS > 0) options.connectionStateRecovery = { maxDisconnectionDuration: RECOVERY_SECONDS * 1000 };
  const httpServer = http.createServer((req, res) => {
    const path = (req.url || '').split('?')[0];
    if (req.method === 'GET' && path === '/api/health') return sendJson(res, ready ? 200 : 503, { status: ready ? 200 : 503 });
    if (req.method === 'POST' && PUSH_ROUTES[path]) return handlePush(req, res, PUSH_ROUTES[path]);
    return sendJson(res, 404, { status: 404, error: 'not_found' });
  });
  io = new Server(httpServer, options);
  setUpSockets(io);
  httpServer.listen(PORT, HOST, () => {
    const version = require('socket.io/package.json').version;
    console.log(`peer: socket.io ${version} (pid ${process.pid}, adapter ${ADAPTER}) listening on ${HOST}:${PORT}`);
    if (process.send) process.send({ peer: 'listening' });
  });
  process.on('message', (msg) => {
    if (msg && msg.peer === 'ready') ready = true;
  });
  const shutdown = () => {
    io.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** The primary of a multi-process peer: forks the workers, tells them when all of them listen. */
function startPrimary() {
  if (ADAPTER === 'cluster') require('@socket.io/cluster-adapter').setupPrimary();
  let listening = 0;
  for (let i = 0; i < PROCESSES; i += 1) {
    const worker = cluster.fork();
    worker.on('message', (msg) => {
      if (msg && msg.peer === 'listening') {
        listening += 1;
        if (listening === PROCESSES) for (const w of Object.values(cluster.workers)) w.send({ peer: 'ready' });
      }
    });
  }
  cluster.on('exit', (worker, code) => {
    console.error(`peer: worker ${worker.process.pid} exited with ${code}`);
    process.exit(1);
  });
  const shutdown = () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** The contract's socket side: JWT at connect, the user's room, join and leave with acks. */
function setUpSockets(io) {
  io.use((socket, next) => {
    const { auth, query } = socket.handshake;
    const token = (auth && typeof auth.token === 'string' && auth.token) || (typeof query.token === 'string' && query.token);
    const refuse = (code) => {
      const err = new Error(code);
      err.data = { code };
      next(err);
    };
    if (!token) return refuse('token_missing');
    const { user, code } = verifyToken(token);
    if (!user) return refuse(code);
    socket.data.user = user;
    return next();
  });
  
  io.on('connection', (socket) => {
    const { user } = socket.data;
    socket.join(`user:${user.sub}`);
  
    const onRoomEvent = (action) => (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : () => {};
      const room = roomOf(args[0]);
      if (room === null || !ROOM_RE.test(room)) return ack({ ok: false, error: 'invalid_room' });
      if (action === 'join') {
        if (!mayJoin(user, room)) return ack({ ok: false, error: 'unauthorized' });
        socket.join(room);
      } else {
        socket.leave(room);
      }
      return ack({ ok: true, room });
    };
    socket.on('join', onRoomEvent('join'));
    socket.on('leave', onRoomEvent('leave'));
  });
}

if (PROCESSES > 1 && cluster.isPrimary) {
  startPrimary();
} else {
  startServer().catch((err) => {
    console.error(`peer: ${err.stack || err}`);
    process.exit(1);
  });
}
