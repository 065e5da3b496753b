// The Linen backend's push service calls (services/push/index.ts in the article), for sio-push:
// push, pushChannel, pushCommunity, pushUser and pushUserMention, on fetch (Node 18+), no dependency.
//
// The service key goes as `Authorization: Bearer` (sio-push also takes it as the body field `token`,
// as the original did, but a header keeps it out of anything that might log or forward the body).
// A 503 (the server drains for a deploy, or its Redis is away) and a refused connection are retried
// with exponential backoff, waiting what `Retry-After` says; nothing else is retried, so a push is never
// sent twice. Other failures reject with a PushError carrying `status` and the server's `body`.
"use strict";

const pushURL = (process.env.PUSH_SERVICE_URL || "http://localhost:4000").replace(/\/$/, "");
const token = process.env.PUSH_SERVICE_KEY;

class PushError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "PushError";
    this.status = status; // 400 (body.errors says which field), 401, 413, 503, or undefined: unreachable
    this.body = body;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Retry-After is either seconds or an HTTP date.
function retryAfterMs(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(when - Date.now(), 0);
}

function createPushClient({ url = pushURL, key = token, attempts = 4, backoffMs = 200, maxWaitMs = 30000 } = {}) {
  async function post(path, body) {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= attempts;
      let waitMs = null;
      try {
        const response = await fetch(url + path, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10000),
        });
        const answer = await response.json().catch(() => null);
        if (response.ok) return answer;
        if (response.status !== 503 || last) {
          throw new PushError(`POST ${path} answered ${response.status}`, response.status, answer);
        }
        waitMs = retryAfterMs(response.headers.get("Retry-After"));
      } catch (err) {
        if (err instanceof PushError) throw err;
        // fetch rejects with a TypeError whose cause is the socket error; only ECONNREFUSED is surely unsent
        if (last || err.cause?.code !== "ECONNREFUSED") {
          throw new PushError(`POST ${path} failed: ${err.cause?.code || err.message}`, undefined, null);
        }
      }
      const backoff = Math.min(backoffMs * 2 ** (attempt - 1), 5000) * (0.5 + Math.random() / 2);
      await sleep(Math.min(waitMs ?? backoff, maxWaitMs));
    }
  }

  // A new message or thread: to the channel's room:lobby and the thread's room:topic.
  const push = ({ channelId, threadId, messageId, imitationId, isThread, isReply, message, thread }) =>
    post("/api/message", {
      channel_id: channelId,
      thread_id: threadId,
      message_id: messageId,
      imitation_id: imitationId,
      is_thread: isThread,
      is_reply: isReply,
      message,
      thread,
    });

  // Something every member viewing the channel should see (an edit, a deleted thread...).
  const pushChannel = ({ channelId, ...rest }) => post("/api/channel", { channel_id: channelId, ...snake(rest) });

  // Community-wide: room:<communityId>.
  const pushCommunity = ({ communityId, ...rest }) =>
    post("/api/community", { community_id: communityId, ...snake(rest) });

  // One user's own room: user:<userId> (unread counts, DMs).
  const pushUser = ({ userId, ...rest }) => post("/api/user", { user_id: userId, ...snake(rest) });

  // A mention, as Linen sent it: mention_type is "user", "signal" or a channel mention.
  const pushUserMention = ({ userId, threadId, channelId, mentionType }) =>
    post("/api/user", {
      user_id: userId,
      thread_id: threadId,
      channel_id: channelId,
      is_mention: true,
      mention_type: mentionType,
    });

  return { push, pushChannel, pushCommunity, pushUser, pushUserMention };
}

// camelCase keys to the snake_case the push payloads use (messageId -> message_id).
function snake(fields) {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase()), v]));
}

module.exports = { createPushClient, PushError, ...createPushClient() };
