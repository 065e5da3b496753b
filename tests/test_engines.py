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
from redis import Redis as SyncRedis

from sio_push.engines import Change, Counts, Engine, MemoryBroker, Push, Session, SessionStore, create_engine
from sio_push.engines.redis.recent import Recent

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


async def test_a_replay_from_before_the_entries_a_process_keeps_comes_whole_from_the_log(start):
    # A Redis process replays recent offsets from the entries its reader kept (engines/redis/recent.py,
    # at most 1,000), older ones from the stream: the two must agree at the seam.
    s = await start(recovery_seconds=60)
    pushes = _pushes(*["a", "b"] * 600)
    offsets = await s.publish_all(pushes)
    logged = list(zip(offsets, pushes, strict=True))
    assert await s.engine.broker.replay(offsets[0], ["a"]) == [(o, p) for o, p in logged[1:] if p.rooms == ("a",)]
    assert await s.engine.broker.replay(offsets[150], ["a", "b"]) == logged[151:]
    assert await s.engine.broker.replay(offsets[-3], ["b"]) == [logged[-1]]


def test_the_recent_entries_are_bounded_and_say_when_they_do_not_hold_a_replay():
    recent = Recent(most_entries=3, most_bytes=100)
    assert recent.after((0, 0), ["a"]) is None  # nothing known yet
    recent.restart((1, 0))
    entries = [((2 + n, 0), f"{2 + n}-0", Push(("a",) if n % 2 else ("b",), "new_msg", {"n": n}), 10) for n in range(5)]
    for entry_id, offset, push, size in entries:
        recent.add(entry_id, offset, push, size)
    # Three kept (4-0, 5-0, 6-0): from 3-0 on it holds the replay, from before it does not.
    assert recent.after((3, 0), ["a", "b"]) == [(offset, push) for _, offset, push, _ in entries[2:]]
    assert recent.after((4, 0), ["a"]) == [("5-0", entries[3][2])]
    assert recent.after((2, 0), ["a"]) is None
    recent.add((7, 0), "7-0", Push(("a",), "new_msg", {"n": 5}), 95)  # over the bytes: only this one kept
    assert recent.after((6, 0), ["a"]) == [("7-0", Push(("a",), "new_msg", {"n": 5}))]
    assert recent.after((5, 0), ["a"]) is None
    recent.forget()  # after a read failed: the next entry read is only where to go on from
    recent.add((9, 0), "9-0", Push(("a",), "new_msg", {}), 1)
    recent.add((10, 0), "10-0", Push(("a",), "new_msg", {}), 1)
    assert recent.after((8, 0), ["a"]) is None
    assert recent.after((9, 0), ["a"]) == [("10-0", Push(("a",), "new_msg", {}))]


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


async def test_occupancy_counts_users_and_sockets_and_reports_each_transition(start):
    occupancy = (await start()).engine.occupancy
    first = await occupancy.enter("room:r", "ann", "s1")
    assert first == Change("room:r", "ann", Counts(1, 1), room_changed=True, member_changed=True)
    second = await occupancy.enter("room:r", "ann", "s2")
    assert (second.counts, second.room_changed, second.member_changed) == (Counts(1, 2), False, False)
    again = await occupancy.enter("room:r", "ann", "s2")  # already in: nothing changes
    assert (again.counts, again.room_changed, again.member_changed) == (Counts(1, 2), False, False)
    bob = await occupancy.enter("room:r", "bob", "s3")
    assert (bob.counts, bob.member_changed) == (Counts(2, 3), True)
    assert await occupancy.counts("room:r") == Counts(2, 3)

    left = await occupancy.exit("room:r", "s1")
    assert left is not None and (left.user_id, left.counts, left.member_changed) == ("ann", Counts(2, 2), False)
    assert await occupancy.exit("room:r", "s1") is None
    left = await occupancy.exit("room:r", "s2")
    assert left is not None and (left.counts, left.member_changed, left.room_changed) == (Counts(1, 1), True, False)
    left = await occupancy.exit("room:r", "s3")
    assert left == Change("room:r", "bob", Counts(0, 0), room_changed=True, member_changed=True, entered=False)
    assert await occupancy.counts("room:r") == Counts(0, 0)


async def test_webhook_marks_are_set_once_and_cleared_only_when_the_room_or_member_is_empty(start):
    occupancy = (await start()).engine.occupancy
    await occupancy.enter("room:r", "ann", "s1")
    assert await occupancy.announce("room:r") and await occupancy.announce("room:r", "ann")
    assert not await occupancy.announce("room:r") and not await occupancy.announce("room:r", "ann")
    assert not await occupancy.retract("room:r") and not await occupancy.retract("room:r", "ann")  # still there
    await occupancy.exit("room:r", "s1")
    assert await occupancy.retract("room:r", "ann") and await occupancy.retract("room:r")
    assert not await occupancy.retract("room:r")  # cleared once
    assert await occupancy.announce("room:r")


async def test_occupancy_lists_occupied_rooms_by_prefix_in_name_order(start):
    occupancy = (await start()).engine.occupancy
    for room in ("room:b", "room:a", "room:lobby:x", "user:ann", "room:c"):
        await occupancy.enter(room, "ann", "s1")
    await occupancy.enter("room:a", "bob", "s2")
    assert await occupancy.rooms("room:", None, 10) == [
        ("room:a", Counts(2, 2)),
        ("room:b", Counts(1, 1)),
        ("room:c", Counts(1, 1)),
        ("room:lobby:x", Counts(1, 1)),
    ]
    assert [name for name, _ in await occupancy.rooms("room:", "room:a", 2)] == ["room:b", "room:c"]
    assert [name for name, _ in await occupancy.rooms("", None, 100)][-1] == "user:ann"
    await occupancy.exit("room:b", "s1")
    assert [name for name, _ in await occupancy.rooms("room:", None, 2)] == ["room:a", "room:c"]


async def test_a_room_is_large_above_the_limit_until_it_falls_to_four_fifths(start):
    occupancy = (await start(presence_max_users=5)).engine.occupancy
    changes = [await occupancy.enter("room:big", f"u{n}", f"s{n}") for n in range(7)]
    assert [(c.large, c.switched) for c in changes] == [(False, False)] * 5 + [(True, True), (True, False)]
    assert not (await occupancy.enter("user:u1", "u1", "s1")).large  # only room:* rooms have a mode
    exits = [await occupancy.exit("room:big", f"s{n}") for n in range(3)]  # 6, 5, 4 users: 4 = floor(0.8 x 5)
    assert [(c.large, c.switched) for c in exits if c is not None] == [(True, False), (True, False), (False, True)]


async def test_occupancy_of_a_process_that_died_is_reaped_and_reported(start):
    s = await start()
    if s.redis_url is None:
        pytest.skip("one process: nothing to reap")
    survivor = s.engine
    reaped: asyncio.Queue[Change] = asyncio.Queue()
    survivor.occupancy.watch(lambda change: _put(reaped, change))
    dying = (await start()).engine
    await dying.occupancy.enter("room:r", "ann", "s1")
    await survivor.occupancy.enter("room:r", "bob", "s2")
    await dying.close()  # its heartbeat stops: after DEAD_AFTER, the survivor reaps it
    change = await asyncio.wait_for(reaped.get(), TIMEOUT + 5)
    assert change == Change("room:r", "ann", Counts(1, 1), room_changed=False, member_changed=True, entered=False)
    assert await survivor.occupancy.counts("room:r") == Counts(1, 1)


async def _put(queue: asyncio.Queue[Change], change: Change) -> None:
    queue.put_nowait(change)


async def test_presence_first_reads_the_first_users_by_id_with_all_their_metas(start):
    presence = (await start()).engine.presence
    for n, user in enumerate(["dan", "ann", "cat", "bob", "ann"]):
        await presence.join("room:r", user, f"s{n}")
    first = await presence.first("room:r", 2)
    assert sorted(first) == ["ann", "bob"] and len(first["ann"]["metas"]) == 2
    await presence.leave("room:r", "s1")
    await presence.leave("room:r", "s4")
    assert sorted(await presence.first("room:r", 100)) == ["bob", "cat", "dan"]
    assert await presence.first("room:none", 5) == {}


async def test_a_session_is_claimed_only_for_its_own_user(start):
    sessions, session = await _saved(start, 60)
    assert await sessions.claim("pid-1", "someone-else") is None
    assert await sessions.claim("pid-1", "ann") == session  # the failed claim left it intact
    await sessions.save(session)
    await sessions.drop("pid-1")
    assert await sessions.claim("pid-1", "ann") is None


async def test_control_commands_reach_every_process_and_counts_add_up(start):
    engines = [(await start()).engine for _ in range(2)]
    seen: list[tuple[str, dict[str, Any]]] = []
    for n, engine in enumerate(engines):

        async def handle(command: dict[str, Any], name: str = engine.node_id, count: int = n + 1) -> int:
            seen.append((name, command))
            return count

        engine.control.serve(handle)
    command = {"op": "test", "user_id": "ann"}
    total = await engines[0].control.request(command)
    if isinstance(engines[0].broker, MemoryBroker):  # memory: each engine is its own world
        assert total == 1 and seen == [(engines[0].node_id, command)]
    else:
        assert total == 3 and sorted(seen, key=lambda s: s[0]) == sorted(
            [(e.node_id, command) for e in engines], key=lambda s: s[0]
        )


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check()` holds, for at most TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, "never held"
        await asyncio.sleep(0.01)


async def test_revocations_are_shared_and_expire(start):
    first, second = (await start(revocation_seconds=0.5)).engine, (await start(revocation_seconds=0.5)).engine
    shared = first.revocations if isinstance(first.broker, MemoryBroker) else second.revocations
    await first.revocations.revoke_user("ann", 1000.5)
    await first.revocations.revoke_room("ann", "room:x", 2000.25)
    await _until(lambda: _is(shared.room_revoked("ann", "room:x"), 2000.25))  # published to the other process
    assert await shared.user_revoked("ann") == 1000.5
    assert await shared.room_revoked("ann", "room:x") == 2000.25
    assert await shared.room_revoked("ann", "room:y") is None and await shared.user_revoked("bob") is None
    assert await shared.rooms_revoked("ann", ["room:y", "room:x"]) == [None, 2000.25]
    assert await shared.rooms_revoked("ann", []) == []
    await asyncio.sleep(0.7)  # the behaviour under test is the clock itself: the records expire
    assert await shared.user_revoked("ann") is None and await shared.room_revoked("ann", "room:x") is None


async def _is(read: Awaitable[Any], expected: Any) -> bool:
    return await read == expected


def _reads(url: str) -> int:
    """How many HMGET commands (how revocations are read) the test's Redis has run so far."""
    stats: Any = SyncRedis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


async def test_each_redis_process_reads_revocations_from_its_copy_loaded_at_start(start):
    first = await start()
    if first.redis_url is None:
        pytest.skip("the memory engine holds its revocations itself")
    await first.engine.revocations.revoke_user("ann", 1000.5)
    await first.engine.revocations.revoke_room("ann", "room:x", 2000.25)
    later = (await start()).engine  # started after the revocations: loads them
    before = _reads(first.redis_url)
    for _ in range(20):
        assert await later.revocations.user_revoked("ann") == 1000.5
        assert await later.revocations.rooms_revoked("ann", ["room:x", "room:y"]) == [2000.25, None]
        assert await later.revocations.user_revoked("bob") is None
    assert _reads(first.redis_url) == before  # not one read of Redis


async def test_a_revocation_is_known_everywhere_before_a_command_sent_after_it_runs(start):
    first, second = (await start()).engine, (await start()).engine
    if isinstance(first.broker, MemoryBroker):
        pytest.skip("memory: each engine is its own world")
    seen: list[float | None] = []

    async def handle(command: dict[str, Any]) -> int:
        seen.append(await second.revocations.user_revoked(command["user_id"]))
        return 1

    second.control.serve(handle)
    for n in range(20):
        await first.revocations.revoke_user(f"user{n}", 1000.0 + n)
        assert await first.control.request({"op": "disconnect", "user_id": f"user{n}"}) == 1
    assert seen == [1000.0 + n for n in range(20)]


async def test_a_copy_catches_up_with_what_was_revoked_while_its_subscription_was_down(start):
    started = await start()
    if started.redis_url is None:
        pytest.skip("memory: each engine is its own world")
    first, second = started.engine, (await start()).engine
    killer = redis.Redis.from_url(started.redis_url)
    try:
        await killer.client_kill_filter(_type="pubsub")  # every process subscribes again, then loads
        await first.revocations.revoke_user("ann", 1000.5)  # most likely published to nobody
        url = started.redis_url

        async def from_the_copy() -> bool:  # loaded again: read without asking Redis
            before = _reads(url)
            return await second.revocations.user_revoked("ann") == 1000.5 and _reads(url) == before

        await _until(from_the_copy)
    finally:
        await killer.aclose()


async def test_user_sockets_count_up_to_the_limit_and_a_recovery_in_place(start):
    first, second = (await start()).engine, (await start()).engine
    other = first if isinstance(first.broker, MemoryBroker) else second
    counts = first.user_sockets
    assert await counts.acquire("ann", "c1", 2)
    assert await other.user_sockets.acquire("ann", "c2", 2)
    assert not await counts.acquire("ann", "c3", 2)
    assert await counts.acquire("bob", "c3", 2)  # another user
    assert await other.user_sockets.acquire("ann", "c1b", 2, replaces="c1")  # a recovery takes c1's place
    await counts.release("ann", "c1")  # the old connection's release changes nothing
    assert not await counts.acquire("ann", "c4", 2)
    await other.user_sockets.release("ann", "c1b")
    assert await counts.acquire("ann", "c4", 2)
    assert await counts.acquire("ann", "c5", 0)  # 0: no limit
