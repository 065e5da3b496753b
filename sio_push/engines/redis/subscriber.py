"""The Redis pub/sub subscriptions of a process that last: each channel's messages go to its callback, an
outage is waited out and the channels subscribed to again, and whoever depends on what was missed
meanwhile catches up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from ...errors import BackendUnavailable
from ...tasks import Backoff, stop
from .errors import unavailable

log = logging.getLogger(__name__)

FIRST_WAIT = 2.0  # how long `start` waits for the first subscription


class Subscriber:
    """Listens to the channels its users name, on one connection, for as long as it runs.

    One connection for all: Redis delivers a connection's messages in the order they were published, so
    a revocation recorded before a control command is known here before the command runs.

    :param client: the Redis client (owned by the caller).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._received: dict[str, Callable[[bytes, bytes], None]] = {}
        self._catch_up: list[Callable[[], Awaitable[None]]] = []
        self._lost: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def listen(
        self,
        channel: str,
        received: Callable[[bytes, bytes], None],
        *,
        subscribed: Callable[[], Awaitable[None]] | None = None,
        lost: Callable[[], None] | None = None,
    ) -> None:
        """Before `start`: hand each message of `channel` to `received` (its channel and data).

        `subscribed` is awaited after each subscription, before any message is handed over (a message
        published meanwhile waits in the subscription): catch up with what was missed. `lost` is called
        when the subscription failed; messages may be missed until `subscribed` runs again.
        """
        self._received[channel] = received
        if subscribed is not None:
            self._catch_up.append(subscribed)
        if lost is not None:
            self._lost.append(lost)

    async def start(self) -> None:
        """Start listening; returns once subscribed (or after `FIRST_WAIT`, listening on in the background)."""
        if not self._received:
            return
        self._task = asyncio.create_task(self._listen(), name="redis subscriptions")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), FIRST_WAIT)

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def _listen(self) -> None:
        backoff = Backoff()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                with unavailable():
                    await pubsub.subscribe(*self._received)
                    for catch_up in self._catch_up:
                        await catch_up()
                    self._ready.set()
                    backoff.reset()
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._hand_over(message["channel"], message["data"])
            except BackendUnavailable as exc:
                for lost in self._lost:
                    lost()
                log.warning("redis subscriptions failed (%s); subscribing again", exc)
                await backoff.wait()
            finally:
                with contextlib.suppress(BackendUnavailable), unavailable():
                    await pubsub.aclose()

    def _hand_over(self, channel: bytes, data: bytes) -> None:
        """A message to its channel's callback; a callback that fails loses that message, not the subscription."""
        try:
            self._received[channel.decode()](channel, data)
        except Exception:
            log.exception("a message on %s could not be handled", channel.decode(errors="replace"))
