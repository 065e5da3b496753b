#!/usr/bin/env node
// Connects to sio-push with a token, joins rooms, and prints every event it receives as one JSON line.
//
//   node listen.js URL TOKEN [ROOM ...]
//   node listen.js http://localhost:4000 "$TOKEN" room:lobby:general
//
// It also reads JSON-line commands on stdin, which is how the tests drive it:
//   {"cmd": "join", "room": "room:topic:t1"}   {"cmd": "leave", "room": ...}
//   {"cmd": "typing", "room": ..., "typing": true, "username": "Ann"}
//   {"cmd": "drop"}  (closes the transport; the client reconnects by itself)
//   {"cmd": "exit"}
// With TOKEN_URL set, `auth` is a function that fetches a fresh token from that URL for every (re)connect,
// as an app whose tokens expire does.
"use strict";
const readline = require("node:readline");
const { io } = require("socket.io-client");

const [url, token, ...rooms] = process.argv.slice(2);
if (!url) {
  console.error("usage: node listen.js URL TOKEN [ROOM ...]");
  process.exit(2);
}

const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const fetchToken = (cb) =>
  fetch(process.env.TOKEN_URL)
    .then((res) => res.text())
    .then((fresh) => cb({ token: fresh }), () => cb({}));

const socket = io(url, {
  auth: process.env.TOKEN_URL ? fetchToken : token ? { token } : {},
  transports: (process.env.TRANSPORTS || "websocket,polling").split(","),
  reconnectionDelay: Number(process.env.RECONNECTION_DELAY || 1000),
  reconnectionDelayMax: Number(process.env.RECONNECTION_DELAY || 5000),
  randomizationFactor: process.env.RECONNECTION_DELAY ? 0 : 0.5,
});

const ack = (what, room) => (answer) => print({ event: "ack", what, room, answer });

socket.on("connect", () => {
  print({ event: "connect", id: socket.id, recovered: socket.recovered ?? null });
  if (!socket.recovered) {
    for (const room of rooms) socket.emit("join", room, ack("join", room));
  }
});
socket.on("connect_error", (err) => {
  print({ event: "connect_error", message: err.message, data: err.data ?? null });
  if (err.data && !process.env.KEEP_TRYING) process.exit(1);
});
socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
socket.onAny((event, ...args) => print({ event, args }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    return print({ event: "bad_command", line });
  }
  switch (command.cmd) {
    case "join":
    case "leave":
      return socket.emit(command.cmd, command.room, ack(command.cmd, command.room));
    case "typing":
      return socket.emit("user:typing", command, ack("typing", command.room));
    case "emit":
      return socket.emit(command.event, command.data, ack(command.event, null));
    case "drop":
      return socket.io.engine.close();
    case "exit":
      socket.disconnect();
      return process.exit(0);
    default:
      return print({ event: "bad_command", line });
  }
});
