"""Commands to every process over Redis pub/sub, each answered with a count (the backend's revocations).

A request is published on one channel every process listens to; PUBLISH answers how many listeners
received it, so the requester knows how many replies to wait for. Each process runs the command and
publishes its count on the requester's own reply channel. A process that does not answer within the
timeout (it is dying, or Redis is slow) is not counted; the command still reached it if it was listening.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

import redis.asyncio as redis

from ...errors import BackendUnavailable
from ...tasks import stop
from ..base import Command, Control
from .errors import translated
from .subscriber import Subscriber

log = logging.getLogger(__name__)

REPLY_SECONDS = 2.0  # for every process to answer a command


class RedisControl(Control):
    """Commands to every process on one Redis.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every channel.
    :param node_id: this process's id, naming its reply channel.
    :param subscriber: the process's subscriptions (started by the engine).
    """

    def __init__(self, client: redis.Redis, prefix: str, node_id: str, subscriber: Subscriber) -> None:
        super().__init__()
        self._redis = client
        self._channel = prefix + "control"
        self._replies = f"{prefix}control:{node_id}"
        self._waiting: dict[str, asyncio.Queue[int]] = {}  # request id -> counts received
        self._running: set[asyncio.Task[None]] = set()
        subscriber.listen(self._channel, self._received)
        subscriber.listen(self._replies, self._received)

    async def close(self) -> None:
        await stop(*self._running)
        await super().close()

    async def request(self, command: Command) -> int:
        request_id = secrets.token_hex(8)
        counts: asyncio.Queue[int] = asyncio.Queue()
        self._waiting[request_id] = counts
        try:
            body = json.dumps({"id": request_id, "reply": self._replies, "command": command})
            listeners = await self._publish(self._channel, body)
            total = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + REPLY_SECONDS
            for answered in range(listeners):
                try:
                    total += await asyncio.wait_for(counts.get(), max(deadline - loop.time(), 0.001))
                except TimeoutError:
                    log.warning("control: %d of %d processes answered within %gs", answered, listeners, REPLY_SECONDS)
                    break
            return total
        finally:
            del self._waiting[request_id]

    @translated
    async def _publish(self, channel: str, body: str) -> int:
        return int(await self._redis.publish(channel, body))

    def _received(self, channel: bytes, data: bytes) -> None:
        try:
            body: Any = json.loads(data)
            request_id = str(body["id"])
        except (ValueError, TypeError, KeyError, IndexError):
            log.warning("control: a message that is not ours on %s; ignored", channel.decode(errors="replace"))
            return
        if channel.decode() == self._replies:
            counts = self._waiting.get(request_id)
            if counts is not None and isinstance(body.get("count"), int):
                counts.put_nowait(body["count"])
            return
        task = asyncio.create_task(self._answer(body), name="control command")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, body: dict[str, Any]) -> None:
        command, reply = body.get("command"), body.get("reply")
        count = await self._run(command) if isinstance(command, dict) else 0
        if not isinstance(reply, str) or not reply:
            return
        try:
            await self._publish(reply, json.dumps({"id": body["id"], "count": count}))
        except BackendUnavailable as exc:
            log.warning("control: reply not sent (%s)", exc)
