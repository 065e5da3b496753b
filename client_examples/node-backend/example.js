#!/usr/bin/env node
// What Linen's backend does after saving a new thread: push it, tell the community, notify a mention.
//
//   PUSH_SERVICE_URL=http://localhost:4000 PUSH_SERVICE_KEY=... node example.js CHANNEL THREAD COMMUNITY USER
"use strict";
const crypto = require("node:crypto");
const { push, pushCommunity, pushUserMention, PushError } = require("./push");

async function main([channelId, threadId, communityId, userId]) {
  if (!userId) {
    console.error("usage: node example.js CHANNEL THREAD COMMUNITY USER");
    process.exit(2);
  }
  const messageId = crypto.randomUUID();
  const message = { id: messageId, body: `hello @${userId}`, threadId, sentAt: Date.now() };
  const thread = { id: threadId, channelId, messages: [message] };
  const answers = [
    await push({
      channelId,
      threadId,
      messageId,
      imitationId: crypto.randomUUID(), // the optimistic copy the sender's page shows; it drops it on arrival
      isThread: true,
      isReply: false,
      message: JSON.stringify(message),
      thread: JSON.stringify(thread),
    }),
    await pushCommunity({ communityId, threadId, kind: "new_thread" }),
    await pushUserMention({ userId, threadId, channelId, mentionType: "user" }),
  ];
  for (const answer of answers) console.log(JSON.stringify(answer));
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof PushError ? `${err.message} ${JSON.stringify(err.body)}` : err);
  process.exit(1);
});
