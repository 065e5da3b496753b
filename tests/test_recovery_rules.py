"""Recovery's rules seen from the wire: rooms authorized again, and how much and how long the log keeps.

The client here presents `{pid, offset}` itself (tests/eio_client.py), so a test chooses the offset and
the token a reconnect brings, which the stock client decides on its own.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis.asyncio as redis

from .conftest import SERVICE_KEY, make_token
from .eio_client import EioClient, Refused


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


@pytest.fixture
async def clients():
    opened: list[EioClient] = []

    async def connect(server, auth: dict) -> EioClient:
        client = await EioClient.connect(server.url, auth)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


async def _pushes(server, count: int, **fields) -> list[str]:
    """`count` pushes to room:lobby:c1 numbered from 0; their offsets."""
    offsets = []
    for n in range(count):
        status, answer = await server.push("/api/channel", channel_id="c1", n=n, **fields)
        assert status == 200
        offsets.append(answer["offset"])
    return offsets


async def test_a_recovered_socket_gets_back_only_the_rooms_its_new_token_allows(server, clients):
    both = ["room:lobby:kept", "room:lobby:taken"]
    first = await clients(server, {"token": make_token("rho", rooms=both)})
    for room in both:
        assert (await first.join(room))["ok"] is True
    await server.push("/api/channel", channel_id="kept", n=0)
    [(_, offset)] = await first.messages(1)
    await first.close()
    await server.push("/api/channel", channel_id="taken", n=1)  # missed, in a room no longer allowed
    await server.push("/api/channel", channel_id="kept", n=2)  # missed, in a room still allowed

    token = make_token("rho", rooms=["room:lobby:kept"])
    again = await clients(server, {"token": token, "pid": first.pid, "offset": offset})
    assert (again.pid, again.sid) == (first.pid, first.sid)  # recovered
    await server.push("/api/channel", channel_id="taken", n=3)
    await server.push("/api/channel", channel_id="kept", n=4)
    # In order: the replay holds only the allowed room's push, and the taken room delivers nothing.
    assert [payload["n"] for payload, _ in await again.messages(2)] == [2, 4]
    assert await again.join("room:lobby:taken") == {"ok": False, "error": "unauthorized"}


async def test_an_expired_token_never_recovers_a_session(server, clients):
    first = await clients(server, {"token": make_token("sol", rooms=["room:*"])})
    await first.join("room:lobby:c1")
    await first.close()
    with pytest.raises(Refused) as refused:
        await clients(server, {"token": make_token("sol", rooms=["room:*"], ttl=-10), "pid": first.pid})
    assert refused.value.data["data"] == {"code": "token_expired"}


async def test_the_log_keeps_at_most_recovery_log_size_pushes(make_server, clients, engine):
    server = await make_server(recovery_log_size=5)
    # Three sessions that joined before any push, each to reconnect once with a different offset.
    sessions = []
    for sub in ("ann", "bob", "cy"):
        client = await clients(server, {"token": make_token(sub, rooms=["room:*"])})
        await client.join("room:lobby:c1")
        await client.close()
        sessions.append(client)
    # Redis trims its stream by whole nodes of 100 entries ("MAXLEN ~"): it keeps 5 or a few more.
    offsets = await _pushes(server, 10 if engine == "memory" else 300)
    ann, bob, cy = sessions

    # The last five are kept: from the one before them, exactly those five come back.
    auth = {"token": make_token("ann", rooms=["room:*"]), "pid": ann.pid, "offset": offsets[-6]}
    again = await clients(server, auth)
    assert again.pid == ann.pid
    replayed = await again.messages(5)
    assert [offset for _, offset in replayed] == offsets[-5:]

    # Older than the log: a fresh session (a new pid), on both engines for the first push.
    fresh = await clients(server, {"token": make_token("bob", rooms=["room:*"]), "pid": bob.pid, "offset": offsets[0]})
    assert fresh.pid != bob.pid and fresh.sid != bob.sid
    if engine == "memory":  # exact: the sixth-newest push is gone
        auth = {"token": make_token("cy", rooms=["room:*"]), "pid": cy.pid, "offset": offsets[-7]}
        assert (await clients(server, auth)).pid != cy.pid


@pytest.mark.parametrize("engine", ["memory"])  # Redis trims by age in whole nodes of 100 entries
async def test_the_log_keeps_pushes_for_twice_the_recovery_window(make_server, clients, engine):
    window = 1.5
    server = await make_server(recovery_seconds=window)
    # Sessions stay live (connected) so that only the log's age decides; a live session can be claimed.
    live = []
    for sub in ("dee", "eli"):
        client = await clients(server, {"token": make_token(sub, rooms=["room:*"])})
        await client.join("room:lobby:c1")
        live.append(client)
    dee, eli = live
    before = time.monotonic()
    offsets = await _pushes(server, 2)
    after = time.monotonic()

    # Past one window (within two): the pushes are still there to replay.
    await _until(after + window + 0.25)
    assert time.monotonic() < before + 2 * window, "the machine was too slow to test within the window"
    auth = {"token": make_token("dee", rooms=["room:*"]), "pid": dee.pid, "offset": offsets[0]}
    again = await clients(server, auth)
    assert again.pid == dee.pid and [offset for _, offset in await again.messages(1)] == offsets[1:]

    # Past two windows: gone from the log, so a fresh session.
    await _until(after + 2 * window + 0.25)
    auth = {"token": make_token("eli", rooms=["room:*"]), "pid": eli.pid, "offset": offsets[0]}
    assert (await clients(server, auth)).pid != eli.pid


async def _until(deadline: float) -> None:
    """Let time pass up to `deadline` (monotonic): here the passing of time is what is tested."""
    await asyncio.sleep(max(deadline - time.monotonic(), 0))


@pytest.mark.parametrize("engine", ["redis"])  # where a disconnect awaits Redis, and can be held there
async def test_a_reconnect_while_the_old_connection_is_still_leaving_keeps_its_room(
    make_server, clients, engine, redis_server
):
    """The reconnect recovers the sid while the old connection's disconnect is still leaving its rooms.

    Redis is held (CLIENT PAUSE) from before the old connection closes until after the reconnect's CONNECT
    is sent, so both wait on it together; the old connection leaves 30 rooms, one Redis round trip or
    more each, while the reconnect's token keeps only one of them. The end of the old connection's
    disconnect must not take the recovered socket out of that room.
    """
    server = await make_server()
    first = await clients(server, {"token": make_token("tau", rooms=["room:*"])})
    for n in range(30):
        assert (await first.join(f"room:lobby:r{n}"))["ok"] is True
    await server.push("/api/channel", channel_id="r0", n=0)
    [(_, offset)] = await first.messages(1)

    pauser = redis.Redis.from_url(redis_server.url)
    try:
        await pauser.client_pause(1000, all=True)
        await first.close()
        auth = {"token": make_token("tau", rooms=["room:lobby:r0"]), "pid": first.pid, "offset": offset}
        again = await clients(server, auth)
    finally:
        await pauser.aclose()
    assert (again.pid, again.sid) == (first.pid, first.sid)
    await _until_left(server, "room:lobby:r29")  # the old connection's disconnect is over
    await server.push("/api/channel", channel_id="r0", n=1)
    assert [payload["n"] for payload, _ in await again.messages(1)] == [1]


async def _until_left(server, room: str) -> None:
    """Wait (at most 10 s) until `room` has no member left in its presence."""
    headers = {"Authorization": "Bearer " + SERVICE_KEY}
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{server.url}/api/presence/{room}", headers=headers) as resp:
                if (await resp.json())["count"]["sockets"] == 0:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{room} still has members")
