"""Connection state recovery with the stock npm socket.io-client: nothing lost, nothing twice, in order."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from .conftest import make_token
from .node_client import NodeClient
from .proxy import Proxy


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


# The client reconnects by itself 1.5 s after a drop (no jitter): past a 0.5 s recovery window.
SLOW_RECONNECT = {"RECONNECTION_DELAY": "1500"}
# Through a paused proxy it retries every 0.2 s and gets through only once the proxy is resumed.
RETRYING = {"RECONNECTION_DELAY": "200"}


@pytest.fixture
async def proxy(server):
    """A proxy in front of `server`: pause it, drop the client, push, resume; what arrives was replayed."""
    proxy = await Proxy(server.port).start()
    yield proxy
    await proxy.close()


async def _joined(client: NodeClient) -> dict:
    connected = await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    return connected


async def _drop(client: NodeClient, proxy: Proxy) -> None:
    """Cut the client off and keep it out until the proxy is resumed."""
    proxy.paused = True
    await client.send(cmd="drop")
    await client.next("disconnect")


async def test_missed_pushes_arrive_once_in_order_before_newer_ones(server, proxy, node_clients):
    client = await node_clients(proxy.url, make_token("rita", rooms=["room:*"]), "room:lobby:c1", env=RETRYING)
    first = await _joined(client)
    assert first["recovered"] is False
    await server.push("/api/channel", channel_id="c1", n=0)
    before = await client.next("new_msg")
    assert before["args"][0]["n"] == 0 and isinstance(before["args"][1], str)

    await _drop(client, proxy)
    for n in range(1, 21):
        status, _ = await server.push("/api/channel", channel_id="c1", n=n)
        assert status == 200
    proxy.paused = False  # every push above was made while the client was out: 1-20 can only be replayed
    again = await client.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    await server.push("/api/channel", channel_id="c1", n=21)
    received = [(await client.next("new_msg"))["args"][0]["n"] for _ in range(21)]
    assert received == list(range(1, 22))

    # Still in its room without joining again, and in its personal room.
    await server.push("/api/user", user_id="rita", n=22)
    assert (await client.next("new_msg"))["args"][0]["n"] == 22


async def test_pid_without_offset_recovers_from_the_session_start(server, proxy, node_clients):
    client = await node_clients(proxy.url, make_token("sam", rooms=["room:*"]), "room:topic:t1", env=RETRYING)
    await _joined(client)
    await _drop(client, proxy)
    for n in range(3):
        await server.push("/api/message", thread_id="t1", n=n)
    proxy.paused = False
    assert (await client.next("connect"))["recovered"] is True
    assert [(await client.next("new_msg"))["args"][0]["n"] for _ in range(3)] == [0, 1, 2]


async def test_recovered_socket_gets_a_fresh_presence_state(server, node_clients):
    client = await node_clients(server.url, make_token("tia", rooms=["room:*"]), "room:topic:t1", env=RETRYING)
    await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    assert (await client.next("connect"))["recovered"] is True
    state = await client.next("presence_state")
    assert list(state["args"][0]["state"]) == ["tia"] and len(state["args"]) == 1  # no offset on presence


async def test_past_the_window_the_session_is_fresh(make_server, node_clients):
    server = await make_server(recovery_seconds=0.5)
    client = await node_clients(server.url, make_token("uma", rooms=["room:*"]), "room:lobby:c1", env=SLOW_RECONNECT)
    first = await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    await server.push("/api/channel", channel_id="c1", n=1)
    again = await client.next("connect")
    assert again["recovered"] is False and again["id"] != first["id"]


async def test_expired_token_is_refused_not_recovered(server, proxy, node_clients):
    # Room to spare for connecting on a loaded machine; then the client is kept out until it has expired.
    ttl = 5
    token = make_token("vic", rooms=["room:*"], ttl=ttl)
    expires = time.monotonic() + ttl - 1  # `exp` is whole seconds, at least ttl - 1 from now
    client = await node_clients(proxy.url, token, "room:lobby:c1", env={**RETRYING, "KEEP_TRYING": "1"})
    await _joined(client)
    proxy.paused = True
    with contextlib.suppress(ConnectionError):  # once expired, the server may have closed it already
        await client.send(cmd="drop")
    await asyncio.sleep(max(expires + 1.5 - time.monotonic(), 0))  # the token's expiry is what is tested
    proxy.paused = False
    error = await client.next("connect_error", wait=10)
    while error["data"] is None:  # a refused attempt through the paused proxy, before the server's answer
        error = await client.next("connect_error", wait=10)
    assert error["data"] == {"code": "token_expired"}


async def test_recovery_off_sends_no_pid_and_no_offsets(make_server, node_clients):
    server = await make_server(recovery_seconds=0)
    client = await node_clients(server.url, make_token("wes", rooms=["room:*"]), "room:lobby:c1")
    connected = await _joined(client)
    assert connected["recovered"] is None  # no pid in the CONNECT reply
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next("new_msg"))["args"] == [{"channel_id": "c1", "n": 1}]


async def test_log_trimmed_past_the_offset_gives_a_fresh_session(make_server, node_clients):
    # Redis trims a stream by whole nodes of 100 entries ("MAXLEN ~"), so push well past that.
    server = await make_server(recovery_log_size=5)
    proxy = await Proxy(server.port).start()
    try:
        client = await node_clients(proxy.url, make_token("xia", rooms=["room:*"]), "room:lobby:c1", env=RETRYING)
        await _joined(client)
        await server.push("/api/channel", channel_id="c1", n=0)
        await client.next("new_msg")
        await _drop(client, proxy)
        for n in range(1, 301):
            await server.push("/api/channel", channel_id="c1", n=n)
        proxy.paused = False
        assert (await client.next("connect"))["recovered"] is False
    finally:
        await proxy.close()
