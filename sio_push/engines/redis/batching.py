"""Auto-pipelining: the commands every coroutine issues in one turn of the event loop go to Redis together.

A connect on Redis issues a handful of small commands (the user's revocation, the per-user count, the
room counts, the session), and a crowd connects by the hundred at once: sent one by one, each command
costs a pool checkout, a write and a wait for its reply, and redis-py's per-command overhead is most of
the CPU a connect takes. redis-py has no auto-pipelining (ioredis and node-redis do), so `Batching` adds
it: a `redis.asyncio.Redis` whose `execute_command` queues the command and, once per turn of the event
loop, sends what was queued as one non-transactional pipeline on one connection, then hands each caller
its own reply or its own error. Every command method and registered script of redis-py works unchanged
over it (a script's `NOSCRIPT` comes back to its own caller, which loads it and runs it again).

Order is kept where a caller can see it: a coroutine's next command is issued after the reply to its
last. Commands of different coroutines were never ordered; now they may share a pipeline. Blocking
commands (`XREAD BLOCK`) and subscriptions must not go through it, or they would hold up the whole batch:
they have a plain client of their own.

A whole batch, from waiting for a connection of the pool to its last reply, is bounded by one timeout:
its pool's connections have no read timeout of their own, which redis-py would otherwise arm and disarm
for every reply of the pipeline (about a fifth of the client's CPU in a crowd of connects).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis

MAX_BATCH = 512  # commands in one pipeline; a bigger queue is sent as several


class Batching(redis.Redis):
    """A redis-py client whose commands are sent in one pipeline per turn of the event loop.

    `batches` and `commands` count the pipelines and the commands it sent.

    :param timeout: seconds a batch may take, from waiting for a connection to its last reply (None: no
        bound but the pool's); past it every caller of the batch gets redis-py's `TimeoutError`.
    :param owns_pool: close the pool on `aclose` (else it stays its owner's).
    """

    def __init__(
        self, *, connection_pool: redis.ConnectionPool, timeout: float | None = None, owns_pool: bool = False
    ) -> None:
        super().__init__(connection_pool=connection_pool)
        self._timeout = timeout
        self._owns_pool = owns_pool
        self._queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.commands = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((args, options, reply))
        return await reply

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), MAX_BATCH):
            task = asyncio.create_task(self._send(queue[start : start + MAX_BATCH]))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        pipe = self.pipeline(transaction=False)
        for args, options, _ in batch:
            pipe.execute_command(*args, **options)
        try:
            async with asyncio.timeout(self._timeout):
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed (or this task was cancelled): every caller hears
            if isinstance(exc, TimeoutError):  # redis-py has closed the connection it was reading
                exc = redis.TimeoutError(f"no reply within {self._timeout} s")
            for _, _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc if isinstance(exc, Exception) else redis.ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, reply), result in zip(batch, replies, strict=True):
            if reply.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                reply.set_exception(result)
            else:
                reply.set_result(result)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Wait for the batches under way, then close as redis-py does (the pool too, if it owns it)."""
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        await super().aclose(self._owns_pool if close_connection_pool is None else close_connection_pool)
