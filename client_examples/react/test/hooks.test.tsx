// The hooks in Node with react-test-renderer against a live sio-push (run by tests/test_examples_react.py):
//   node build/test/hooks.test.js URL SERVICE_KEY TOKEN_OF_RAE TOKEN_OF_SAM recovered|fresh
// Four views on one page share one socket; presence shows one socket for the user; typing goes both
// ways; a dropped connection recovers (or, with recovery off, rejoins and asks to refetch); unmounting
// releases rooms, and the last one closes the socket. Prints one JSON line a step; exits 1 on a failure.
import assert from "node:assert/strict";
import React from "react";
import TestRenderer, { act, ReactTestRenderer } from "react-test-renderer";
import { io } from "socket.io-client";
import { useWebSockets, usePresence, useTyping } from "../hooks";
import { configurePush, Payload, PresenceState, pushSocket, socketsOpened } from "../push";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
const [url, key, tokenRae, tokenSam, mode] = process.argv.slice(2);
const step = (name: string, extra: object = {}) => console.log(JSON.stringify({ step: name, ...extra }));

const received: Record<string, unknown[]> = {};
const refetched: string[] = [];
const connected: Record<string, boolean> = {};
let communityPresence: PresenceState = {};
let typing: { typists: string[]; keyDown: () => void } = { typists: [], keyDown: () => undefined };

function View({ name, room }: { name: string; room: string }) {
  const state = useWebSockets({
    room,
    token: tokenRae,
    permissions: { chat: true },
    onNewMessage: (payload: Payload) => (received[name] ??= []).push(payload.message_id),
    onRefetch: () => refetched.push(name),
  });
  connected[name] = state.connected;
  return null;
}

function Thread({ room }: { room: string }) {
  typing = useTyping(room, "rae", "Rae");
  return <View name="thread" room={room} />;
}

function Community({ room }: { room: string }) {
  communityPresence = usePresence(room);
  return null;
}

function Page({ show }: { show: string[] }) {
  return (
    <>
      {show.includes("c1") && <View name="c1" room="room:lobby:c1" />}
      {show.includes("c1-again") && <View name="c1-again" room="room:lobby:c1" />}
      {show.includes("thread") && <Thread room="room:topic:t1" />}
      {show.includes("community") && <Community room="room:k1" />}
    </>
  );
}

async function waitFor(what: string, predicate: () => boolean, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await act(() => new Promise((resolve) => setTimeout(resolve, 20)));
  }
}

async function push(route: string, body: object): Promise<void> {
  const answer = await fetch(url + route, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  assert.equal(answer.status, 200);
}

async function main(): Promise<void> {
  configurePush({ url, token: () => tokenRae });
  // Sam, another user with a plain socket.io-client, watches the rooms from outside.
  const sam = io(url, { auth: { token: tokenSam }, transports: ["websocket"] });
  const seen: Array<[string, any]> = [];
  sam.onAny((event: string, data: unknown) => seen.push([event, data]));
  for (const room of ["room:lobby:c1", "room:topic:t1"]) {
    const ack = await sam.timeout(5000).emitWithAck("join", room);
    assert.equal(ack.ok, true);
  }

  const all = ["c1", "c1-again", "thread", "community"];
  let page: ReactTestRenderer | undefined;
  await act(async () => {
    page = TestRenderer.create(<Page show={all} />);
  });
  const render = (show: string[]) => act(async () => page!.update(<Page show={show} />));
  await waitFor("every view joined", () => all.filter((v) => v !== "community").every((v) => connected[v]));
  const shared = pushSocket();
  assert.equal(socketsOpened(), 1);
  assert.deepEqual(shared.held(), { "room:lobby:c1": 2, "room:topic:t1": 2, "room:k1": 1 });
  await waitFor("presence", () => communityPresence.rae?.metas.length === 1);
  step("one socket for four views", { held: shared.held() });

  await push("/api/channel", { channel_id: "c1", message_id: "m1" });
  await push("/api/message", { thread_id: "t1", message_id: "m2" });
  await waitFor("m1 and m2", () => received.c1?.length === 1 && received["c1-again"]?.length === 1);
  await waitFor("m2", () => received.thread?.length === 1);
  assert.deepEqual([received.c1, received["c1-again"], received.thread], [["m1"], ["m1"], ["m2"]]);
  step("messages routed to their views");

  sam.emit("user:typing", { room: "room:topic:t1", typing: true, username: "Sam" });
  await waitFor("Sam typing", () => typing.typists.join() === "Sam");
  await act(async () => typing.keyDown());
  const raeTyping = ([event, data]: [string, any]) =>
    event === "presence_diff" && data.joins.rae?.metas.some((m: { typing?: boolean }) => m.typing);
  await waitFor("Rae typing, seen by Sam", () => seen.some(raeTyping));
  step("typing both ways");

  shared.socket.io.reconnectionDelay(1000);
  shared.socket.io.randomizationFactor(0);
  shared.socket.io.engine.close();
  await waitFor("the drop", () => !connected.c1);
  await push("/api/channel", { channel_id: "c1", message_id: "m3" }); // while away
  await waitFor("reconnected", () => connected.c1 && connected["c1-again"] && connected.thread);
  if (mode === "recovered") {
    assert.equal(shared.socket.recovered, true);
    await waitFor("m3 recovered", () => received.c1.length === 2);
    assert.deepEqual(received.c1, ["m1", "m3"]);
    assert.deepEqual(refetched, []);
  } else {
    assert.notEqual(shared.socket.recovered, true);
    await waitFor("refetch", () => refetched.length === 3);
    assert.deepEqual([...refetched].sort(), ["c1", "c1-again", "thread"]);
    await push("/api/channel", { channel_id: "c1", message_id: "m4" }); // rejoined: delivered again
    await waitFor("m4", () => received.c1.length === 2);
    assert.deepEqual(received.c1, ["m1", "m4"]);
  }
  assert.equal(socketsOpened(), 1);
  step("reconnected", { recovered: shared.socket.recovered ?? null, refetched });

  const raeLeft = (room: string) => ([event, data]: [string, any]) =>
    event === "presence_diff" && data.room === room && "rae" in data.leaves && !("rae" in data.joins);
  seen.length = 0; // only what comes from here on (the drop made Rae leave and come back too)
  await render(["c1", "thread", "community"]);
  assert.deepEqual(shared.held(), { "room:lobby:c1": 1, "room:topic:t1": 2, "room:k1": 1 });
  await render(["thread", "community"]);
  assert.deepEqual(shared.held(), { "room:topic:t1": 2, "room:k1": 1 });
  await waitFor("Rae left room:lobby:c1", () => seen.some(raeLeft("room:lobby:c1")));
  assert.equal(seen.some(raeLeft("room:topic:t1")), false);
  step("a room is left when its last view unmounts");

  await act(async () => page!.unmount());
  assert.deepEqual(shared.held(), {});
  await waitFor("Rae gone from room:topic:t1", () => seen.some(raeLeft("room:topic:t1")));
  assert.equal(shared.socket.connected, false);
  step("the socket closes with the last view");
  sam.disconnect();
}

main().then(
  () => {
    step("done");
    process.exit(0);
  },
  (err) => {
    console.log(JSON.stringify({ step: "failed", error: String(err?.stack ?? err) }));
    process.exit(1);
  },
);
