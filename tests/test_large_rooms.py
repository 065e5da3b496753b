"""Large rooms (SPEC §6): counts instead of members above the presence limit, presence:get, on both engines."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from sio_push.engines import Push
from sio_push.keys import ENGINE

from .conftest import TIMEOUT, Client, Server


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


LIMIT = 3  # large at 4 users; small again at 2 (floor(0.8 x 3))
ROOM = "room:big"


async def _member(connect, server: Server, sub: str, room: str = ROOM) -> tuple[Client, dict]:
    """A client of user `sub` joined to `room`, and the presence_state it got."""
    client = await connect(server, sub)
    assert (await client.join(room))["ok"]
    _, (state,) = await client.next("presence_state")
    return client, state


def _large(state: dict, users: int, sockets: int) -> bool:
    return state == {"room": ROOM, "state": {}, "large": True, "count": {"users": users, "sockets": sockets}}


async def _count(client: Client, users: int) -> dict:
    """The next presence_count with `users` users (earlier counts are skipped)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        _, (count,) = await client.next("presence_count")
        if count["users"] == users:
            return count
        assert time.monotonic() < deadline


async def test_a_room_turns_large_above_the_limit_and_back_at_four_fifths(make_server, connect):
    server = await make_server(presence_max_users=LIMIT)
    watcher, state = await _member(connect, server, "u0")
    assert list(state["state"]) == ["u0"] and "large" not in state
    others = [(await _member(connect, server, f"u{n}"))[0] for n in (1, 2)]
    await watcher.presence_until(ROOM, lambda view: len(view) == 3)

    fourth, state = await _member(connect, server, "u3")
    assert _large(state, 4, 4)
    _, (switched,) = await watcher.next("presence_state")
    assert _large(switched, 4, 4)
    await fourth.call("presence:get", {"room": ROOM})  # whatever was sent to it before the answer is here
    assert fourth.drain("presence_state") == []  # the one state of the large form, not two

    second_tab = await connect(server, "u3")
    assert (await second_tab.join(ROOM))["ok"]
    _, (state,) = await second_tab.next("presence_state")
    assert _large(state, 4, 5)
    assert await _count(watcher, 4) == {"room": ROOM, "users": 4, "sockets": 5}
    assert watcher.drain("presence_diff") == []

    await fourth.close()
    await second_tab.close()
    assert (await _count(watcher, 3))["sockets"] == 3  # 3 users: still large (small at 2 or fewer)
    await others[1].close()
    _, (full,) = await watcher.next("presence_state")
    assert set(full["state"]) == {"u0", "u1"} and "large" not in full
    assert watcher.drain("presence_diff") == []

    await _member(connect, server, "u9")
    await watcher.presence_until(ROOM, lambda view: set(view) == {"u0", "u1", "u9"})


async def test_a_presence_diff_that_arrives_once_the_room_is_large_is_not_delivered(make_server, connect):
    server = await make_server(presence_max_users=LIMIT)
    watcher, _ = await _member(connect, server, "u0")
    for n in (1, 2, 3):
        await _member(connect, server, f"u{n}")
    while not _large((await watcher.next("presence_state"))[1][0], 4, 4):
        pass
    broker = server.app[ENGINE].broker  # as a diff made before the switch and delivered after it
    late = {"room": ROOM, "joins": {f"u{n}": {"metas": [{"phx_ref": str(n)}]} for n in range(200)}, "leaves": {}}
    await broker.publish(Push((ROOM,), "presence_diff", late, volatile=True))
    await broker.publish(Push((ROOM,), "marker", {}, volatile=True))  # after it on the same channel
    seen: list[str] = []
    for _ in range(100):  # every event up to the marker
        seen.append((await watcher.next())[0])
        if seen[-1] == "marker":
            break
    assert seen[-1] == "marker" and "presence_diff" not in seen


async def test_presence_count_comes_at_most_once_a_second_and_ends_with_the_latest(make_server, connect):
    server = await make_server(presence_max_users=1)
    watcher, _ = await _member(connect, server, "w")
    await _member(connect, server, "x")  # 2 users > 1: large
    await watcher.next("presence_state")
    crowd = [await connect(server, f"c{n}") for n in range(12)]
    for client in crowd:
        assert (await client.join(ROOM))["ok"]
    for client in crowd[:5]:
        await client.close()
    last_change = time.monotonic()

    seen: list[tuple[float, dict]] = []
    while not seen or seen[-1][1]["users"] != 9:
        _, (count,) = await watcher.next("presence_count")
        seen.append((time.monotonic(), count))
    assert seen[-1][1] == {"room": ROOM, "users": 9, "sockets": 9}
    assert seen[-1][0] - last_change < 1.5
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
    assert all(gap > 0.6 for gap in gaps), gaps  # 1 s apart when sent; their arrival here jitters on a busy machine
    with pytest.raises(TimeoutError):  # nothing changed since: nothing more is sent
        await asyncio.wait_for(watcher.next("presence_count"), 1.3)


async def test_typing_in_a_large_room_is_presence_typing_to_everyone_and_false_when_the_typist_goes(
    make_server, connect
):
    server = await make_server(presence_max_users=1)
    watcher, _ = await _member(connect, server, "w")
    typist, state = await _member(connect, server, "t")
    assert state["large"] is True
    await watcher.next("presence_state")

    assert await typist.call("user:typing", {"room": ROOM, "typing": True, "username": "Tia"}) == {"ok": True}
    expected = {"room": ROOM, "user_id": "t", "username": "Tia", "typing": True}
    for client in (watcher, typist):
        assert (await client.next("presence_typing"))[1] == (expected,)
    assert await typist.call("user:typing", {"room": ROOM, "typing": True}) == {"ok": True}  # no change: nothing
    await typist.close()
    _, (stopped,) = await watcher.next("presence_typing")
    assert stopped == {**expected, "typing": False}
    assert watcher.drain("presence_diff") == []


async def test_presence_get_answers_counts_and_the_first_users_of_a_joined_room(make_server, connect):
    server = await make_server(presence_max_users=3)
    asker, _ = await _member(connect, server, "m")
    for sub in ("d", "a", "c"):
        await _member(connect, server, sub)
    answer = await asker.call("presence:get", {"room": ROOM, "limit": 2})
    assert answer["ok"] and answer["room"] == ROOM and answer["count"] == {"users": 4, "sockets": 4}
    assert sorted(answer["state"]) == ["a", "c"] and set(answer["state"]["a"]["metas"][0]) >= {"online_at", "phx_ref"}
    everyone = await asker.call("presence:get", {"room": ROOM})
    assert sorted(everyone["state"]) == ["a", "c", "d", "m"]

    assert (await asker.join("room:small"))["ok"]
    small = await asker.call("presence:get", {"room": "room:small"})
    assert small["count"] == {"users": 1, "sockets": 1} and list(small["state"]) == ["m"]
    assert await asker.call("presence:get", {"room": "room:other"}) == {"ok": False, "error": "not_joined"}
    for bad in ({"room": ROOM, "limit": 0}, {"room": ROOM, "limit": 101}, {"room": ROOM, "limit": "5"}, "x"):
        assert (await asker.call("presence:get", bad))["ok"] is False


async def test_counts_are_shared_by_servers_on_one_backend(make_server, connect, engine):
    if engine != "redis":
        pytest.skip("one process")
    first = await make_server(presence_max_users=2)
    second = await make_server(presence_max_users=2)
    watcher, _ = await _member(connect, first, "w")
    await _member(connect, second, "x")
    await watcher.presence_until(ROOM, lambda view: set(view) == {"w", "x"})
    joiner, state = await _member(connect, second, "y")  # 3 users over both servers: large everywhere
    assert _large(state, 3, 3)
    _, (switched,) = await watcher.next("presence_state")
    assert _large(switched, 3, 3)
    await _member(connect, first, "z")
    assert await _count(watcher, 4) == {"room": ROOM, "users": 4, "sockets": 4}
    answer = await joiner.call("presence:get", {"room": ROOM, "limit": 100})
    assert answer["count"] == {"users": 4, "sockets": 4} and sorted(answer["state"]) == ["w", "x", "y", "z"]
