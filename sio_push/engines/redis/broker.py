"""The Redis broker: one Redis Stream carries every push in order and is also the recovery log.

Why a stream and not python-socketio's pub/sub manager: recovery needs a log that every process can
replay from, in the same order every process delivered it, and that outlives the process a client was
on. With one stream, the entry id *is* the offset: each process reads the stream (`XREAD`) and delivers
each entry to its own sockets, and a reconnect on any process replays with `XRANGE` from the client's
offset. Pub/sub plus a separate log would need the two kept in step. The price is one `XADD` per push
(instead of one `PUBLISH`), measured by the benchmark suite.

Volatile pushes (presence diffs) are never replayed, so they go over plain pub/sub. The stream is
bounded in entries and in bytes on every `XADD` (a script: each entry's size is stored with it and summed
in a counter key, and the oldest entries are deleted while either bound is passed) and by age once a
second (the same counter less what is deleted). When Redis is unreachable, publishing raises
`BrokerUnavailable` (the API answers 503), the reader retries with a capped backoff, and sockets stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from typing import Any

import redis.asyncio as redis

from ...codec import dumps, loads
from ...errors import BackendUnavailable, BrokerUnavailable
from ...tasks import Backoff, Periodic, stop
from ..base import Broker, Deliver, Missed, Push
from .errors import translated, unavailable
from .recent import MOST_BYTES, MOST_ENTRIES, Recent
from .scripts import ADD, TRIM_BATCH, TRIM_OLD

log = logging.getLogger(__name__)

READ_COUNT = 1000
MAX_CATCH_UP = 20  # reads of the stream a replay may take to catch up with the reader
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
TRIM_EVERY = 1.0
UNLOGGED_SIZE = 1000  # with recovery off the stream only carries pushes between processes


def _id(offset: str) -> tuple[int, int]:
    """A stream id as a comparable pair; ValueError when it is not one."""
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq or 0)


def _encode(push: Push) -> bytes:
    return dumps({"r": push.rooms, "e": push.event, "d": push.data})


def _decode(raw: bytes, volatile: bool = False) -> Push:
    body = loads(raw)
    return Push(tuple(body["r"]), body["e"], body["d"], volatile)


def _stop_if_cancelled() -> None:
    """Stop a reader that was asked to stop.

    redis-py can swallow the cancellation of a blocked read (answering it as a timeout or a connection
    error); without this check the reader would read on until `tasks.stop` gave up on it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisBroker(Broker):
    """Pushes through a Redis Stream shared by every process.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key this broker uses.
    :param reader: the client of the blocking reads of the stream, when `client` auto-pipelines.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        log_seconds: float = 0,
        log_size: int = 100_000,
        log_bytes: int = 256 * 1024 * 1024,
        *,
        reader: redis.Redis | None = None,
    ) -> None:
        super().__init__(log_seconds, log_size if log_seconds else UNLOGGED_SIZE, log_bytes)
        self._redis = client
        self._reader = reader or client
        self._stream = prefix + "stream"
        self._bytes = prefix + "stream:bytes"
        self._add = client.register_script(ADD)
        self._trim_old = client.register_script(TRIM_OLD)
        self._channel = prefix + "volatile"
        self._tasks: list[asyncio.Task[None]] = []
        self._trimming = Periodic("stream trimming", TRIM_EVERY, self._trim_by_age)
        self._healthy = False
        self._positioned = False  # whether `position` was read from the stream, or is still the origin
        self._recent = Recent(min(MOST_ENTRIES, self.log_size), min(MOST_BYTES, self.log_bytes))

    @property
    def origin(self) -> str:
        return "0-0"

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        try:
            await self._find_position()
            self._healthy = True
        except BackendUnavailable as exc:
            log.warning("redis unreachable at start (%s); retrying in the background", exc)
        self._tasks = [
            asyncio.create_task(self._read_stream(deliver), name="stream reader"),
            asyncio.create_task(self._read_volatile(deliver), name="volatile reader"),
        ]
        if self.logging:
            self._trimming.start()

    async def close(self) -> None:
        await stop(*self._tasks)
        await self._trimming.stop()
        self._tasks = []
        await super().close()

    @translated
    async def _find_position(self) -> None:
        """Start at the stream's end: what was pushed before this process started is not its to deliver."""
        last: Any = await self._redis.xrevrange(self._stream, "+", "-", count=1)
        self.position = last[0][0].decode() if last else self.origin
        self._positioned = True
        self._recent.restart(_id(self.position))

    async def publish(self, push: Push) -> str | None:
        with unavailable(BrokerUnavailable):
            if push.volatile:
                await self._redis.publish(self._channel, _encode(push))
                return None
            offset: Any = await self._add(
                keys=[self._stream, self._bytes], args=[_encode(push), self.log_size, self.log_bytes]
            )
        return offset.decode() if self.logging else None

    async def check(self) -> bool:
        try:
            with unavailable():
                await self._redis.ping()
        except BackendUnavailable:
            return False
        return self._healthy and bool(self._tasks)

    async def _outage(self, backoff: Backoff, exc: Exception, what: str) -> None:
        """Log an outage once, then wait before the reader's next try."""
        _stop_if_cancelled()
        if self._healthy or not backoff.failures:
            log.warning("redis %s failed (%s); retrying", what, exc)
        self._healthy = False
        await backoff.wait()

    @translated
    async def _read(self) -> Any:
        if not self._positioned:  # Redis was down at start: without this, the whole stream would be delivered
            await self._find_position()
        return await self._reader.xread({self._stream: self.position}, count=READ_COUNT, block=1000)

    async def _read_stream(self, deliver: Deliver) -> None:
        """Deliver every stream entry after `position`, in order, for as long as the broker runs."""
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
        while True:
            _stop_if_cancelled()
            try:
                batches = await self._read()
            except BackendUnavailable as exc:
                self._recent.forget()  # the stream may have been trimmed past what this reader read
                await self._outage(backoff, exc, "read")
                continue
            if backoff.reset() or not self._healthy:
                log.info("redis reachable again; delivering from %s", self.position)
            self._healthy = True
            for _, entries in batches or ():
                for raw_id, fields in entries:
                    offset = raw_id.decode()
                    self.position = offset
                    try:
                        push = _decode(fields[b"p"])
                    except (KeyError, ValueError, TypeError):
                        log.warning("stream entry %s is not a push; skipped", offset)
                        continue
                    if self.logging:
                        self._recent.add(_id(offset), offset, push, len(fields[b"p"]))
                    try:
                        await deliver(push, offset if self.logging else None)
                    except Exception:
                        log.exception("delivery of %s failed", offset)

    async def _read_volatile(self, deliver: Deliver) -> None:
        """Deliver the volatile pushes of the pub/sub channel, subscribing again after an outage."""
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                with unavailable():
                    await pubsub.subscribe(self._channel)
                    backoff.reset()
                    while True:
                        _stop_if_cancelled()
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "message":
                            try:
                                await deliver(_decode(message["data"], volatile=True), None)
                            except Exception:
                                log.exception("volatile delivery failed")
            except BackendUnavailable as exc:
                await self._outage(backoff, exc, "subscribe")
            finally:
                with contextlib.suppress(BackendUnavailable), unavailable():
                    await pubsub.aclose()

    @translated
    async def _trim_by_age(self) -> None:
        """Drop the entries older than `log_seconds`, a batch at a time, their bytes off the counter."""
        horizon = int((time.time() - self.log_seconds) * 1000)
        for _ in range(100):  # 100,000 entries a second at most; the rest wait for the next round
            if await self._trim_old(keys=[self._stream, self._bytes], args=[f"{horizon}-0", TRIM_BATCH]) < TRIM_BATCH:
                break

    async def _holds_after(self, after: str) -> bool:
        """Whether the stream still holds every entry after `after`."""
        try:
            after_id = _id(after)
        except ValueError:
            return False
        if not await self._redis.exists(self._stream):
            return after_id >= _id(self.position)
        info = await self._redis.xinfo_stream(self._stream)
        if info.get("entries-added", -1) == info["length"]:  # nothing was ever trimmed
            return True
        if after_id >= _id(info["last-generated-id"].decode()):
            return True
        deleted = info.get("max-deleted-entry-id")  # Redis 7: entries are only ever deleted oldest first
        if deleted is not None:
            return after_id >= _id(deleted.decode() if isinstance(deleted, bytes) else str(deleted))
        return bool(await self._redis.xrange(self._stream, after, after, count=1))

    def order(self, offset: str) -> Any:
        return _id(offset)

    async def replay(self, after: str, rooms: Collection[str]) -> Missed | None:
        recent = self._replay_recent(after, rooms)
        if recent is not None:
            return recent
        wanted = set(rooms)
        try:
            if not await self._holds(after):
                return None
            missed: Missed = []
            cursor = after
            # The reader goes on delivering while the log is read, moving `position` past what was
            # fetched: read again until the fetch reaches it. The check after the last await is what
            # counts: the caller puts the socket in its rooms before yielding, so every push is either
            # replayed (up to `position`) or delivered live (after it), never both, never neither.
            for _ in range(MAX_CATCH_UP):
                cursor = await self._fetch_after(cursor, wanted, missed)
                if _id(cursor) >= _id(self.position):
                    break
            else:
                log.warning("replay could not catch up with the stream; starting afresh")
                return None
        except BackendUnavailable as exc:
            log.warning("replay from redis failed (%s); starting afresh", exc)
            return None
        position = _id(self.position)
        return [(offset, push) for offset, push in missed if _id(offset) <= position]

    def _replay_recent(self, after: str, rooms: Collection[str]) -> Missed | None:
        """The replay from what this process read last, if that holds all of it (None: ask Redis).

        Not for an offset older than the log's age: Redis may have trimmed what follows it.
        """
        try:
            after_id = _id(after)
        except ValueError:
            return None
        if after_id[0] < (time.time() - self.log_seconds) * 1000:
            return None
        return self._recent.after(after_id, rooms)

    @translated
    async def _holds(self, after: str) -> bool:
        return await self._holds_after(after)

    @translated
    async def _fetch_after(self, cursor: str, wanted: set[str], missed: Missed) -> str:
        """Add the entries after `cursor` that reach any of `wanted` to `missed`; the last id read."""
        for _ in range(self.log_size // READ_COUNT + 2):
            entries: Any = await self._redis.xrange(self._stream, "(" + cursor, "+", count=READ_COUNT)
            for raw_id, fields in entries:
                cursor = raw_id.decode()
                try:
                    push = _decode(fields[b"p"])
                except (KeyError, ValueError, TypeError):
                    continue
                if not wanted.isdisjoint(push.rooms):
                    missed.append((cursor, push))
            if len(entries) < READ_COUNT:
                break
        return cursor
