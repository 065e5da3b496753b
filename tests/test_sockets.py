"""Client events end to end: join, leave, typing, presence, and bad input that never costs a connection."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from .conftest import Client, make_token


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


async def test_join_with_string_or_object_payload(server, connect):
    client = await connect(server)
    assert await client.join("room:lobby:a") == {"ok": True, "room": "room:lobby:a"}
    assert await client.call("join", {"room": "room:topic:b"}) == {"ok": True, "room": "room:topic:b"}


async def test_join_is_decided_by_the_rooms_claim(server, connect):
    client = await connect(server, rooms=["room:lobby:*", "room:topic:t1"])
    assert (await client.join("room:lobby:any"))["ok"] is True
    assert (await client.join("room:topic:t1"))["ok"] is True
    assert await client.join("room:topic:t2") == {"ok": False, "error": "unauthorized"}
    assert await client.join("room:topic:t10") == {"ok": False, "error": "unauthorized"}  # the whole name
    assert await client.join("room:community") == {"ok": False, "error": "unauthorized"}


async def test_token_without_rooms_claim_may_only_join_its_own_room(server, client_factory):
    client = client_factory()
    await client.connect(server, make_token("erin"))
    assert await client.join("room:lobby:a") == {"ok": False, "error": "unauthorized"}
    assert await client.join("user:erin") == {"ok": True, "room": "user:erin"}


async def test_forbidden_room_is_refused_and_nothing_arrives(server, connect):
    client = await connect(server, rooms=["room:lobby:open"])
    assert await client.join("room:lobby:secret") == {"ok": False, "error": "unauthorized"}
    await client.join("room:lobby:open")
    await server.push("/api/channel", channel_id="secret", n=1)
    await server.push("/api/channel", channel_id="open", n=2)
    assert (await client.next_msg())["n"] == 2


async def test_other_users_personal_room_is_refused(server, connect):
    client = await connect(server, "alice", rooms=["*"])
    assert await client.join("user:bob") == {"ok": False, "error": "unauthorized"}
    assert await client.join("user:alice") == {"ok": True, "room": "user:alice"}


@pytest.mark.parametrize("payload", ["lobby", "room:lobby:", "room:topic", "user:", "room:lobby:a b", 42, None, [1]])
async def test_invalid_room_names_are_refused(server, connect, payload):
    client = await connect(server)
    assert await client.call("join", payload) == {"ok": False, "error": "invalid_room"}
    assert await client.call("leave", payload) == {"ok": False, "error": "invalid_room"}


async def test_join_twice_and_leave_unjoined_are_ok(server, connect):
    client = await connect(server)
    assert (await client.join("room:lobby:a"))["ok"]
    assert (await client.join("room:lobby:a"))["ok"]
    assert (await client.call("leave", "room:lobby:zzz"))["ok"]


async def test_leave_stops_delivery(server, connect):
    client = await connect(server)
    await client.join("room:lobby:a")
    await client.join("room:lobby:b")
    assert await client.call("leave", {"room": "room:lobby:a"}) == {"ok": True, "room": "room:lobby:a"}
    await server.push("/api/channel", channel_id="a", n=1)
    await server.push("/api/channel", channel_id="b", n=2)
    assert (await client.next_msg())["n"] == 2


async def test_leaving_own_room_stops_personal_delivery_until_rejoined(server, connect):
    client = await connect(server, "frank")
    await client.join("room:lobby:sentinel")
    assert (await client.call("leave", "user:frank"))["ok"]
    await server.push("/api/user", user_id="frank", n=1)
    await server.push("/api/channel", channel_id="sentinel", n=2)
    assert (await client.next_msg())["n"] == 2
    assert (await client.join("user:frank"))["ok"]
    await server.push("/api/user", user_id="frank", n=3)
    assert (await client.next_msg())["n"] == 3


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("broadcast", ({"room": "room:lobby:a", "text": "hi"},)),
        ("new_msg", ({"channel_id": "a"},)),
        ("join", ()),
        ("join", ("room:lobby:a", "extra")),
        ("user:typing", ("not a dict",)),
        ("user:typing", ({"room": "room:lobby:a", "typing": "yes"},)),
    ],
)
async def test_malformed_and_unknown_events_get_error_acks_and_keep_the_connection(server, connect, event, args):
    client = await connect(server)
    answer = await client.call(event, *args)
    assert answer["ok"] is False and isinstance(answer["error"], str)
    assert (await client.join("room:lobby:still-here"))["ok"]


async def test_clients_cannot_broadcast(server, connect):
    sender = await connect(server, "mallory")
    receiver = await connect(server, "bob")
    await sender.join("room:lobby:a")
    await receiver.join("room:lobby:a")
    await sender.sio.emit("new_msg", {"channel_id": "a", "text": "spoof"})
    assert await sender.call("broadcast", {"room": "room:lobby:a"}) == {"ok": False, "error": "unknown_event"}
    await server.push("/api/channel", channel_id="a", n=1)
    assert await receiver.next_msg() == {"channel_id": "a", "n": 1}


async def test_garbage_socketio_packets_do_not_crash_the_connection(server, connect):
    client: Client = await connect(server)
    for raw in ("2garbage", "2[", '2["join"', "9", "2{}", '21["join","room:lobby:x"]'):
        await client.sio.eio.send(raw)
    assert (await client.join("room:lobby:ok"))["ok"]


async def test_typing_updates_presence_meta_and_keeps_online_at(server, connect):
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    await alice.join("room:topic:t")
    view = await alice.presence_until("room:topic:t", lambda v: "alice" in v)
    online_at = view["alice"][0]["online_at"]
    await bob.join("room:topic:t")
    await bob.presence_until("room:topic:t", lambda v: {"alice", "bob"} <= set(v))
    assert await alice.call("user:typing", {"room": "room:topic:t", "typing": True, "username": "Alice"}) == {
        "ok": True
    }
    view = await bob.presence_until("room:topic:t", lambda v: v["alice"][0].get("typing") is True)
    meta = view["alice"][0]
    assert meta["username"] == "Alice" and meta["online_at"] == online_at and len(view["alice"]) == 1
    assert meta["phx_ref_prev"] != meta["phx_ref"]
    await alice.call("user:typing", {"room": "room:topic:t", "typing": False, "username": "Alice"})
    view = await bob.presence_until("room:topic:t", lambda v: v["alice"][0].get("typing") is False)
    assert view["alice"][0]["online_at"] == online_at


async def test_typing_in_unjoined_room_is_refused_and_sends_nothing(server, connect):
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    await bob.join("room:topic:t")
    assert await alice.call("user:typing", {"room": "room:topic:t", "typing": True, "username": "A"}) == {
        "ok": False,
        "error": "not_joined",
    }
    await alice.join("room:topic:t")
    view = await bob.presence_until("room:topic:t", lambda v: "alice" in v)
    assert "typing" not in view["alice"][0]


async def test_presence_state_and_diffs_with_two_tabs(server, connect):
    watcher = await connect(server, "watcher")
    await watcher.join("room:community1")
    _, (state,) = await watcher.next("presence_state")
    assert state["room"] == "room:community1" and list(state["state"]) == ["watcher"]
    assert len(state["state"]["watcher"]["metas"]) == 1
    tab1 = await connect(server, "gina")
    tab2 = await connect(server, "gina")
    await tab1.join("room:community1")
    await tab2.join("room:community1")
    _, (state,) = await tab2.next("presence_state")
    assert len(state["state"]["gina"]["metas"]) == 2
    await watcher.presence_until("room:community1", lambda v: len(v.get("gina", [])) == 2)
    _, (diff,) = await watcher.next("presence_diff")
    assert diff["room"] == "room:community1" and set(diff) == {"room", "joins", "leaves"}

    await tab1.close()
    await watcher.presence_until("room:community1", lambda v: len(v.get("gina", [])) == 1)
    await tab2.call("leave", "room:community1")
    await watcher.presence_until("room:community1", lambda v: "gina" not in v)
    newcomer = await connect(server, "hank")
    await newcomer.join("room:community1")
    _, (state,) = await newcomer.next("presence_state")
    assert set(state["state"]) == {"watcher", "hank"}


async def test_presence_diffs_of_a_burst_of_joins_are_merged(server, connect):
    window = 0.1  # PUSH_PRESENCE_BATCH_MS's default
    watcher = await connect(server, "watcher")
    await watcher.join("room:crowd")
    await watcher.presence_until("room:crowd", lambda v: "watcher" in v)
    _, (own,) = await watcher.next("presence_diff")  # the diff of its own join comes like anyone's
    assert list(own["joins"]) == ["watcher"]
    others = await asyncio.gather(*(connect(server, f"p{i}") for i in range(10)))
    started = time.monotonic()
    answers = await asyncio.gather(*(client.join("room:crowd") for client in others))
    span = time.monotonic() - started  # every join's diff was made within it (before its ack)
    assert all(answer["ok"] for answer in answers)
    await watcher.presence_until("room:crowd", lambda v: len(v) == 11)
    diffs = watcher.drain("presence_diff")
    # A room's diffs go out at most once a window: joins made within `span` give at most this many.
    assert 1 <= len(diffs) <= 1 + int(span / window), (len(diffs), span)
    assert sum(len(diff["joins"]) for _, (diff,) in diffs) == 10


async def test_a_crowd_joining_at_once_each_sees_itself_and_all_converge(server, connect):
    crowd = await asyncio.gather(*(connect(server, f"c{i}") for i in range(30)))
    answers = await asyncio.gather(*(client.join("room:rush") for client in crowd))
    assert all(answer["ok"] for answer in answers)
    for i, client in enumerate(crowd):
        _, (state,) = await client.next("presence_state")
        assert f"c{i}" in state["state"]  # read after its own join, though reads are shared
    for client in crowd:
        await client.presence_until("room:rush", lambda v: len(v) == 30)


async def test_no_presence_in_personal_rooms(server, connect):
    client = await connect(server, "ivy")
    await client.join("user:ivy")
    await client.join("room:lobby:sentinel")
    event, (payload,) = await client.next()
    assert event == "presence_state" and payload["room"] == "room:lobby:sentinel"


async def test_engineio_session_without_connect_is_closed(make_server):
    server = await make_server(connect_timeout_seconds=0.3)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
        opened = await ws.receive(timeout=5)
        assert opened.data.startswith("0{")
        # It never sends "40": the server sends the Engine.IO CLOSE packet, then closes the connection.
        assert (await ws.receive(timeout=5)).data == "1"
        closed = await ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        await ws.close()


async def test_heartbeat_pings_and_drops_a_client_that_stops_answering(make_server):
    server = await make_server(ping_interval=1, ping_timeout=1)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive(timeout=5)).data.startswith("0{")
        await ws.send_str("40" + json.dumps({"token": make_token("pat")}))
        assert (await ws.receive(timeout=5)).data.startswith("40{")
        for _ in range(3):  # the server pings each interval while it gets pongs
            assert (await ws.receive(timeout=5)).data == "2"
            await ws.send_str("3")
        assert (await ws.receive(timeout=5)).data == "2"  # no pong this time: the server gives up
        message = await ws.receive(timeout=10)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await ws.receive(timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        await ws.close()
