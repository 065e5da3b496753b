"""The engines themselves, memory and Redis (a real redis-server of the test's own) passing the same tests."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from sio_push.engines import Engine, Push, Session, SessionStore, create_engine

from .conftest import TIMEOUT, base_settings

Delivered = tuple[Push, "str | None"]


@dataclasses.dataclass
class Started:
    """An engine started with a `deliver` that queues what it is given."""

    engine: Engine
    delivered: asyncio.Queue[Delivered]
    redis_url: str | None
    prefix: str

    async def next(self) -> Delivered:
        return await asyncio.wait_for(self.delivered.get(), TIMEOUT)

    async def publish_all(self, pushes: list[Push]) -> list[str | None]:
        """Publish `pushes`, then wait until each was delivered (in order, with its offset)."""
        offsets = [await self.engine.broker.publish(push) for push in pushes]
        assert [await self.next() for _ in pushes] == list(zip(pushes, offsets, strict=True))
        return offsets

    async def subscribed(self) -> None:
        """Wait until the Redis broker listens for volatile pushes (at once in memory)."""
        if self.redis_url is None:
            return
        client = redis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + TIMEOUT
            while (await client.pubsub_numsub(self.prefix + "volatile"))[0][1] < 1:
                assert time.monotonic() < deadline, "the broker never subscribed"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def start(request) -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    """Starts engines of one kind; those started by one test share a backend (the same Redis keys)."""
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    prefix = f"engines-{uuid.uuid4().hex[:8]}:"
    started: list[Engine] = []

    async def factory(**overrides: Any) -> Started:
        settings = base_settings(redis_url=redis_url, redis_prefix=prefix, **overrides)
        engine = create_engine(settings)
        delivered: asyncio.Queue[Delivered] = asyncio.Queue()

        async def deliver(push: Push, offset: str | None) -> None:
            delivered.put_nowait((push, offset))

        await engine.start(deliver)
        started.append(engine)
        return Started(engine, delivered, redis_url, prefix)

    yield factory
    for engine in started:
        await engine.close()


def _pushes(*rooms: str) -> list[Push]:
    return [Push((room,), "new_msg", {"n": n}) for n, room in enumerate(rooms)]


async def test_pushes_are_delivered_in_order_and_replayed_by_room(start):
    s = await start(recovery_seconds=60)
    broker = s.engine.broker
    pushes = _pushes("a", "b", "a", "c")
    offsets = await s.publish_all(pushes)
    assert all(isinstance(offset, str) for offset in offsets) and len(set(offsets)) == 4
    assert broker.position == offsets[-1]

    assert await broker.replay(offsets[0], ["a"]) == [(offsets[2], pushes[2])]
    assert await broker.replay(offsets[0], ["a", "b", "c"]) == list(zip(offsets[1:], pushes[1:], strict=True))
    assert await broker.replay(broker.origin, ["a"]) == [(offsets[0], pushes[0]), (offsets[2], pushes[2])]
    assert await broker.replay(offsets[-1], ["a", "b", "c"]) == []
    assert await broker.replay("not an offset", ["a"]) is None


async def test_volatile_pushes_have_no_offset_and_are_never_replayed(start):
    s = await start(recovery_seconds=60)
    await s.subscribed()
    diff = Push(("room:r",), "presence_diff", {"room": "room:r"}, volatile=True)
    assert await s.engine.broker.publish(diff) is None
    assert await s.next() == (diff, None)
    logged = _pushes("room:r")
    offsets = await s.publish_all(logged)
    assert await s.engine.broker.replay(s.engine.broker.origin, ["room:r"]) == [(offsets[0], logged[0])]


async def test_without_recovery_pushes_are_delivered_without_offsets(start):
    s = await start(recovery_seconds=0)
    assert await s.publish_all(_pushes("a", "b")) == [None, None]
    assert s.engine.sessions is None


async def test_the_log_keeps_at_least_the_newest_pushes_within_its_size(start):
    s = await start(recovery_seconds=60, recovery_log_size=10)
    pushes = _pushes(*["a"] * 250)
    offsets = await s.publish_all(pushes)
    assert offsets[0] is not None and offsets[-4] is not None
    # Redis trims by whole stream nodes (approximately), so only the oldest are surely gone.
    assert await s.engine.broker.replay(offsets[0], ["a"]) is None
    assert await s.engine.broker.replay(offsets[-4], ["a"]) == list(zip(offsets[-3:], pushes[-3:], strict=True))


async def _log_bytes(s: Started) -> int:
    """The bytes the recovery log holds, as the broker counts them."""
    if s.redis_url is None:
        return s.engine.broker.held  # type: ignore[attr-defined]
    client = redis.Redis.from_url(s.redis_url)
    try:
        return int(await client.get(s.prefix + "stream:bytes") or 0)
    finally:
        await client.aclose()


async def test_the_log_is_bounded_in_bytes_too(start):
    s = await start(recovery_seconds=60, recovery_max_bytes=4096)
    body = "x" * 1300  # three fit in 4096 bytes, with the rooms and event (and Redis's field names)
    pushes = [Push(("a",), "new_msg", {"n": n, "body": body}) for n in range(40)]
    offsets = [(await s.publish_all([push]))[0] for push in pushes]  # each delivered before the log drops it
    assert 3 * 1300 < await _log_bytes(s) <= 4096
    assert await s.engine.broker.replay(offsets[-5], ["a"]) is None
    assert await s.engine.broker.replay(offsets[-3], ["a"]) == list(zip(offsets[-2:], pushes[-2:], strict=True))


async def test_trimming_by_age_takes_the_bytes_off_too(start):
    s = await start(recovery_seconds=0.25, recovery_max_bytes=1 << 20)
    offsets = [(await s.publish_all([Push(("a",), "new_msg", {"n": n, "body": "x" * 1000})]))[0] for n in range(20)]
    assert await _log_bytes(s) > 20_000
    deadline = time.monotonic() + TIMEOUT
    while await _log_bytes(s) > 0:
        await s.engine.broker.replay(offsets[-1], ["a"])  # the memory broker trims when it is used
        assert time.monotonic() < deadline, "the old pushes' bytes were never taken off"
        await asyncio.sleep(0.1)
    assert await s.engine.broker.replay(offsets[0], ["a"]) is None


async def test_the_log_drops_pushes_older_than_twice_the_window(start):
    s = await start(recovery_seconds=0.25)
    offsets = await s.publish_all(_pushes(*["a"] * 150))
    assert offsets[0] is not None and offsets[-1] is not None
    deadline = time.monotonic() + TIMEOUT
    while await s.engine.broker.replay(offsets[0], ["a"]) is not None:
        assert time.monotonic() < deadline, "the oldest push was never dropped"
        await asyncio.sleep(0.1)
    assert await s.engine.broker.replay(offsets[-1], ["a"]) == []


async def test_presence_join_update_leave_and_state(start):
    presence = (await start()).engine.presence
    joined = await presence.join("room:r", "ann", "s1")
    assert joined["leaves"] == {}
    [meta] = joined["joins"]["ann"]["metas"]
    assert set(meta) == {"online_at", "phx_ref"}
    assert await presence.state("room:r") == {"ann": {"metas": [meta]}}
    bob = (await presence.join("room:r", "bob", "s2"))["joins"]["bob"]["metas"][0]

    updated = await presence.update("room:r", "s1", {"typing": True})
    assert updated is not None
    [new] = updated["joins"]["ann"]["metas"]
    assert updated["leaves"] == {"ann": {"metas": [meta]}}
    assert new["typing"] is True and new["phx_ref_prev"] == meta["phx_ref"] and new["phx_ref"] != meta["phx_ref"]
    assert await presence.state("room:r") == {"ann": {"metas": [new]}, "bob": {"metas": [bob]}}

    assert await presence.leave("room:r", "s1") == {"joins": {}, "leaves": {"ann": {"metas": [new]}}}
    assert await presence.leave("room:r", "s1") is None
    assert await presence.update("room:r", "s1", {"typing": False}) is None
    assert await presence.state("room:r") == {"bob": {"metas": [bob]}}
    assert await presence.leave("room:r", "s2") is not None
    assert await presence.state("room:r") == {}


async def test_phx_refs_differ_between_processes_sharing_a_backend(start):
    first, second = (await start()).engine, (await start()).engine
    refs = [
        (await engine.presence.join("room:r", "ann", sid))["joins"]["ann"]["metas"][0]["phx_ref"]
        for engine in (first, second)
        for sid in ("s1", "s2")
    ]
    assert len(set(refs)) == 4
    assert refs[0].startswith(first.node_id) and refs[2].startswith(second.node_id)


async def _saved(start: Callable[..., Awaitable[Started]], window: float) -> tuple[SessionStore, Session]:
    """The session store of a new engine, and the live session saved in it."""
    engine = (await start(recovery_seconds=window)).engine
    assert engine.sessions is not None
    session = Session("pid-1", "sid-1", "ann", ("user:ann",), engine.broker.position, "conn-1", engine.node_id)
    await engine.sessions.save(session)
    return engine.sessions, session


async def test_a_session_is_claimed_once_live_or_ended(start):
    sessions, session = await _saved(start, 60)
    assert await sessions.claim("pid-1") == session  # live: its process holds it (or died)
    assert await sessions.claim("pid-1") is None

    await sessions.save(session)
    await sessions.end(session)
    ended = await sessions.claim("pid-1")
    assert ended is not None and ended.ended_at is not None and abs(ended.ended_at - time.time()) < 5
    assert dataclasses.replace(ended, ended_at=None) == session
    assert await sessions.claim("pid-1") is None
    assert await sessions.claim("unknown") is None


async def test_a_session_is_not_claimable_after_its_window(start):
    sessions, session = await _saved(start, 0.3)
    await sessions.end(session)
    await asyncio.sleep(0.5)  # the behaviour under test is the clock itself: the window passes
    assert await sessions.claim("pid-1") is None


async def test_only_the_owner_connection_saves_or_ends_a_session(start):
    sessions, owner = await _saved(start, 60)
    late = dataclasses.replace(owner, conn="conn-old", rooms=("user:ann", "room:x"))
    await sessions.save(late)
    await sessions.end(late)
    assert await sessions.claim("pid-1") == owner  # unchanged and still live

    await sessions.end(owner)  # the owner's own end comes after a reconnect took the session: ignored
    await sessions.save(late)  # the pid is free again: the new connection owns it
    assert await sessions.claim("pid-1") == late
