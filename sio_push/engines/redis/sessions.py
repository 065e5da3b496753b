"""Recoverable sessions in Redis, so that a client whose process died recovers on another.

Each session is one key holding its JSON. Saving and ending compare the owner connection inside Redis
(a Lua script), so a late write of an old connection never overwrites a session a reconnect took over.
A live session's key lives `window + LIVE_SLACK` seconds and its process renews it; a session whose
process died ended at that process's last heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as redis

from ...errors import BackendUnavailable
from ...tasks import Periodic
from ..base import Session, SessionStore
from .errors import translated
from .nodes import Nodes

log = logging.getLogger(__name__)

LIVE_SLACK = 60.0
RENEW_EVERY = 20.0
SAVE_TRIES = 3  # a save that fails in a storm is tried again, so that no session goes unstored
RETRY_DELAY = 0.5

# KEYS[1] the session; ARGV: json, conn, ttl ms, "end" (the session must exist) or "save" (it may not).
_WRITE_IF_OWNER = """
local current = redis.call('GET', KEYS[1])
if current then
  if cjson.decode(current)['conn'] ~= ARGV[2] then return 0 end
elseif ARGV[4] == 'end' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# KEYS[1] the session; ARGV[1] the user who claims it ("" for any): its JSON, removed, if it is theirs.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
if ARGV[1] ~= '' and cjson.decode(current)['user_id'] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return current
"""


class RedisSessions(SessionStore):
    """Sessions shared by every process on one Redis.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param nodes: the heartbeats, to tell when a live session's process died.
    """

    def __init__(self, window: float, client: redis.Redis, prefix: str, nodes: Nodes) -> None:
        super().__init__(window)
        self._redis = client
        self._key_prefix = prefix
        self._nodes = nodes
        self._write = client.register_script(_WRITE_IF_OWNER)
        self._claim = client.register_script(_CLAIM)
        self._live: dict[str, str] = {}  # pid -> conn of the sessions this process holds
        self._renewal = Periodic("session renewal", RENEW_EVERY, self._renew)

    def _key(self, pid: str) -> str:
        return f"{self._key_prefix}session:{pid}"

    async def start(self) -> None:
        self._renewal.start()

    async def close(self) -> None:
        await self._renewal.stop()

    @translated
    async def _run_write(self, session: Session, ttl: float, mode: str) -> bool:
        done = await self._write(
            keys=[self._key(session.pid)], args=[session.to_json(), session.conn, int(ttl * 1000), mode]
        )
        return bool(done)

    async def _write_retried(self, session: Session, ttl: float, mode: str) -> bool:
        for attempt in range(1, SAVE_TRIES + 1):
            try:
                return await self._run_write(session, ttl, mode)
            except BackendUnavailable:
                if attempt == SAVE_TRIES:
                    raise
                await asyncio.sleep(RETRY_DELAY * attempt)
        return False

    async def save(self, session: Session) -> None:
        if await self._write_retried(session, self.window + LIVE_SLACK, "save"):
            self._live[session.pid] = session.conn

    async def end(self, session: Session) -> None:
        self._live.pop(session.pid, None)
        await self._write_retried(session.ended(time.time()), self.window, "end")

    @translated
    async def _take(self, pid: str, user_id: str | None) -> Any:
        """The session's JSON, removed from Redis; None when there is none (or it is another user's)."""
        return await self._claim(keys=[self._key(pid)], args=[user_id or ""])

    async def claim(self, pid: str, user_id: str | None = None) -> Session | None:
        try:
            raw = await self._take(pid, user_id)
            if raw is None:
                return None
            session = Session.from_json(raw)
            ended_at = session.ended_at
            if ended_at is None:
                ended_at = await self._nodes.last_beat(session.node)
        except (BackendUnavailable, ValueError, TypeError, KeyError) as exc:
            log.warning("session lookup failed (%s: %s)", type(exc).__name__, exc)
            return None
        self._live.pop(pid, None)
        if ended_at is None or time.time() - ended_at > self.window:
            return None
        return session

    @translated
    async def drop(self, pid: str) -> None:
        self._live.pop(pid, None)
        await self._redis.delete(self._key(pid))

    @translated
    async def _renew(self) -> None:
        """Keep this process's live sessions from expiring while it runs."""
        ttl_ms = int((self.window + LIVE_SLACK) * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in list(self._live):
                pipe.pexpire(self._key(pid), ttl_ms)
            await pipe.execute()
