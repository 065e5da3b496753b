#!/usr/bin/env node
// The original Linen frontend's Phoenix Channels hook (useWebSockets), without React: connects to
// sio-push with the npm `phoenix` package, joins topics, and prints what it sees as JSON lines.
//
//   node phoenix-listen.js URL TOKEN [TOPIC ...]
//   node phoenix-listen.js http://localhost:4000 "$TOKEN" room:lobby:general
//
// URL is the service's base URL, as NEXT_PUBLIC_PUSH_SERVICE_URL was: the socket is URL + "/socket".
// Environment: VSN=1.0.0 (the v1 JSON serializer), AUTH_TOKEN=1 (phoenix 1.8's authToken instead of
// params), HEARTBEAT_MS (default 30000), PRESENCE=1 (a phoenix.js Presence per topic; onSync printed).
// Commands on stdin, one JSON object a line (how the tests drive it):
//   {"cmd": "join", "topic": ...}   {"cmd": "leave", "topic": ...}
//   {"cmd": "push", "topic": ..., "event": "user:typing", "payload": {"typing": true, "username": "Ann"}}
//   {"cmd": "exit"}
"use strict";
const readline = require("node:readline");
const { Socket, Presence } = require("phoenix");
const { WebSocket } = require("ws");

const [url, token, ...topics] = process.argv.slice(2);
if (!url) {
  console.error("usage: node phoenix-listen.js URL TOKEN [TOPIC ...]");
  process.exit(2);
}
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const v1 = process.env.VSN === "1.0.0";

const socket = new Socket(`${url.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  ...(process.env.AUTH_TOKEN ? { authToken: token } : { params: { token } }),
  heartbeatIntervalMs: Number(process.env.HEARTBEAT_MS || 30000),
  reconnectAfterMs: () => Number(process.env.RECONNECT_MS || 60000),
  rejoinAfterMs: () => 60000,
  ...(v1
    ? {
        vsn: "1.0.0",
        encode: (msg, callback) => callback(JSON.stringify(msg)),
        decode: (raw, callback) => callback(JSON.parse(raw)),
      }
    : {}),
});
socket.onOpen(() => print({ event: "open" }));
socket.onError(() => print({ event: "error" }));
socket.onClose((event) => print({ event: "close", code: event.code }));
socket.connect();

const channels = new Map();

function join(topic) {
  // As the hook: socket.channel(room).join().receive("ok" | "error"), then channel.on("new_msg").
  const channel = socket.channel(topic);
  channels.set(topic, channel);
  const onMessage = channel.onMessage.bind(channel);
  channel.onMessage = (event, payload, ref) => {
    const skip = ["phx_", "chan_reply_", "presence_", "new_msg"];
    if (!skip.some((prefix) => event.startsWith(prefix))) {
      print({ event: "message", topic, name: event, payload });
    }
    return onMessage(event, payload, ref);
  };
  if (process.env.PRESENCE) {
    const presence = new Presence(channel);
    presence.onSync(() => {
      const list = presence.list((id, { metas }) => ({ id, metas }));
      print({ event: "sync", topic, list });
    });
  }
  channel
    .join()
    .receive("ok", (response) => print({ event: "joined", topic, response }))
    .receive("error", (response) => print({ event: "join_error", topic, response }));
  channel.on("new_msg", (payload) => print({ event: "new_msg", topic, payload }));
}

for (const topic of topics) join(topic);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    return print({ event: "bad_command", line });
  }
  switch (command.cmd) {
    case "join":
      return join(command.topic);
    case "leave":
      return channels
        .get(command.topic)
        .leave()
        .receive("ok", () => print({ event: "left", topic: command.topic }));
    case "push":
      return channels
        .get(command.topic)
        .push(command.event, command.payload)
        .receive("ok", (response) => print({ event: "reply", status: "ok", response }))
        .receive("error", (response) => print({ event: "reply", status: "error", response }));
    case "exit":
      socket.disconnect();
      return process.exit(0);
    default:
      return print({ event: "bad_command", line });
  }
});
