'use strict';
// A stand-in server that does as little as a server can, to find the load generator's own ceiling
// (`python -m benchmarks --calibrate`). It answers the Socket.IO handshake and `join` just enough for the
// load generator (no auth, one room), and on POST /api/channel writes the encoded `new_msg` frame to
// every socket. BLAST_BATCH_MS=0 writes each frame at once, one write per socket per push, as the real
// servers do; BLAST_BATCH_MS=N gathers the frames of N milliseconds into one write per socket.
//
// Environment: PORT (required), PUSH_HOST (default 127.0.0.1), BLAST_BATCH_MS (default 0).

const http = require('node:http');
const { WebSocketServer } = require('ws');

const HOST = process.env.PUSH_HOST || '127.0.0.1';
const PORT = Number(process.env.PORT);
const BATCH_MS = Number(process.env.BLAST_BATCH_MS || 0);

const members = new Set();
let pending = [];
let flushTimer = null;

function wsHeader(length) {
  if (length < 126) return Buffer.from([0x81, length]);
  if (length < 65536) return Buffer.from([0x81, 126, length >> 8, length & 0xff]);
  throw new Error('frame too large for the blaster');
}

function flush() {
  flushTimer = null;
  const bytes = Buffer.concat(pending);
  pending = [];
  for (const ws of members) ws._socket.write(bytes); // ws has no public way to write raw bytes
}

function broadcast(text) {
  if (BATCH_MS <= 0) {
    for (const ws of members) ws.send(text);
    return;
  }
  const payload = Buffer.from(text);
  pending.push(wsHeader(payload.length), payload);
  if (flushTimer === null) flushTimer = setTimeout(flush, BATCH_MS);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/api/health') {
    res.end('{"status":200}');
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const { token: _key, ...message } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    broadcast(`42${JSON.stringify(['new_msg', message])}`);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":200}');
  });
});

const wss = new WebSocketServer({ server, path: '/socket.io/', perMessageDeflate: false });
let nextSid = 0;
wss.on('connection', (ws) => {
  nextSid += 1;
  ws.send(`0${JSON.stringify({ sid: `e${nextSid}`, upgrades: [], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1e6 })}`);
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('420')) {
      members.add(ws);
      ws.send(`430${JSON.stringify([{ ok: true, room: JSON.parse(text.slice(3))[1] }])}`);
    } else if (text.startsWith('40')) {
      ws.send(`40${JSON.stringify({ sid: `s${nextSid}` })}`);
    }
  });
  ws.on('close', () => members.delete(ws));
});

server.listen(PORT, HOST);
process.on('SIGTERM', () => process.exit(0));
