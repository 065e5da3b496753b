"""The Phoenix Channels wire protocol of sio-push, frame by frame, with aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sio_push.keys import PHOENIX

from .conftest import ALL_ROOMS, SERVICE_KEY, TIMEOUT, Server, make_token


class Phx:
    """One raw Phoenix socket (v2 arrays unless `vsn` says otherwise)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, vsn: str = "2.0.0") -> None:
        self.ws = ws
        self.vsn = vsn
        self._ref = 0

    async def send(self, topic: str, event: str, payload: Any = None, join_ref: str | None = None) -> str:
        self._ref += 1
        ref = str(self._ref)
        payload = {} if payload is None else payload
        if self.vsn == "2.0.0":
            await self.ws.send_str(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            message = {"join_ref": join_ref, "ref": ref, "topic": topic, "event": event, "payload": payload}
            await self.ws.send_str(json.dumps(message))
        return ref

    async def join(self, topic: str) -> str:
        """Join `topic` (its ref is its join_ref); answered ok."""
        ref = str(self._ref + 1)
        await self.send(topic, "phx_join", {}, join_ref=ref)
        assert await self.next("phx_reply") == [ref, ref, topic, "phx_reply", {"status": "ok", "response": {}}]
        return ref

    async def next(self, *events: str) -> Any:
        """The next message (of one of `events`, when given), as a v2 array."""
        for _ in range(100):
            msg = await asyncio.wait_for(self.ws.receive(), TIMEOUT)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            value = json.loads(msg.data)
            if isinstance(value, dict):
                value = [value["join_ref"], value["ref"], value["topic"], value["event"], value["payload"]]
            if not events or value[3] in events:
                return value
        raise AssertionError("too many messages")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _open(http: aiohttp.ClientSession, server: Server, sub: str = "ann", vsn: str | None = "2.0.0", **kw: Any):
    query = f"?token={make_token(sub, rooms=ALL_ROOMS)}" + (f"&vsn={vsn}" if vsn else "")
    ws = await http.ws_connect(f"{server.url}/socket/websocket{query}", **kw)
    return Phx(ws, vsn or "1.0.0")


async def test_heartbeats_are_answered_and_broadcasts_carry_no_join_ref(server, http):
    phx = await _open(http, server)
    ref = await phx.send("phoenix", "heartbeat")
    assert await phx.next() == [None, ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]
    join_ref = await phx.join("room:topic:t1")
    state = await phx.next("presence_state")
    assert state[:4] == [join_ref, None, "room:topic:t1", "presence_state"] and list(state[4]) == ["ann"]
    await server.push("/api/message", channel_id="c1", thread_id="t1", token2="x")
    assert await phx.next("new_msg") == [
        None,
        None,
        "room:topic:t1",
        "new_msg",
        {"channel_id": "c1", "thread_id": "t1", "token2": "x"},
    ]


async def test_emits_keep_their_event_and_non_object_payloads_are_wrapped(server, http):
    phx = await _open(http, server)
    await phx.join("user:ann")
    for data in ({"a": 1}, [1, 2], "text", None):
        body = {"token": SERVICE_KEY, "rooms": ["user:ann"], "event": "notice", "data": data}
        assert (await server.post("/api/emit", body))[0] == 200
        expected = data if isinstance(data, dict) else {"data": data}
        assert (await phx.next("notice"))[4] == expected


async def test_unknown_events_unmatched_topics_and_malformed_frames(server, http):
    phx = await _open(http, server)
    await phx.join("room:lobby:c1")
    ref = await phx.send("room:lobby:c1", "shout", {"x": 1}, join_ref="1")
    assert await phx.next("phx_reply") == [
        "1",
        ref,
        "room:lobby:c1",
        "phx_reply",
        {"status": "error", "response": {"reason": "unknown_event"}},
    ]
    ref = await phx.send("room:lobby:c2", "user:typing", {"typing": True})
    reply = await phx.next("phx_reply")
    assert reply[1:] == [
        ref,
        "room:lobby:c2",
        "phx_reply",
        {"status": "error", "response": {"reason": "unmatched topic"}},
    ]
    for junk in ("not json", "[1, 2]", '{"topic": 1}', '[null, null, 5, "e", {}]', "[" * 50_000, "[NaN]"):
        await phx.ws.send_str(junk)
    ref = await phx.send("phoenix", "heartbeat")
    assert (await phx.next())[1] == ref  # still open, the junk ignored


async def test_a_binary_frame_closes_the_socket(server, http):
    phx = await _open(http, server)
    await phx.ws.send_bytes(b"\x00\x01")
    msg = await asyncio.wait_for(phx.ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1003


async def test_leave_answers_ok_then_closes_the_channel(server, http):
    phx = await _open(http, server)
    join_ref = await phx.join("room:lobby:c1")
    ref = await phx.send("room:lobby:c1", "phx_leave", join_ref=join_ref)
    reply = [join_ref, ref, "room:lobby:c1", "phx_reply", {"status": "ok", "response": {}}]
    assert await phx.next("phx_reply", "phx_close") == reply
    assert await phx.next("phx_reply", "phx_close") == [join_ref, join_ref, "room:lobby:c1", "phx_close", {}]
    await server.push("/api/channel", channel_id="c1", n=1)
    ref = await phx.send("phoenix", "heartbeat")
    while (message := await phx.next())[1] != ref:
        assert message[3] != "new_msg"


async def test_a_rejoin_closes_the_old_channel_and_sends_a_fresh_state(server, http):
    phx = await _open(http, server)
    old = await phx.join("room:c1")
    await phx.next("presence_state")
    new = await phx.send("room:c1", "phx_join", join_ref="9")
    assert await phx.next("phx_close") == [old, old, "room:c1", "phx_close", {}]
    assert (await phx.next("phx_reply"))[:2] == ["9", new]
    state = await phx.next("presence_state")
    assert state[0] == "9" and len(state[4]["ann"]["metas"]) == 1


async def test_client_messages_are_rate_limited_but_not_heartbeats(make_server, http):
    server = await make_server(events_per_second=1)
    phx = await _open(http, server)
    await phx.join("user:ann")
    await phx.join("room:lobby:c1")
    ref = await phx.send("room:lobby:c2", "phx_join", join_ref="x")
    assert (await phx.next("phx_reply"))[1:] == [
        ref,
        "room:lobby:c2",
        "phx_reply",
        {"status": "error", "response": {"reason": "rate_limited"}},
    ]
    ref = await phx.send("phoenix", "heartbeat")
    assert (await phx.next("phx_reply"))[4] == {"status": "ok", "response": {}}


async def test_v1_objects_and_a_missing_vsn(server, http):
    phx = await _open(http, server, vsn=None)
    await phx.send("room:lobby:c1", "phx_join", join_ref="1")
    raw = json.loads((await asyncio.wait_for(phx.ws.receive(), TIMEOUT)).data)
    assert raw["event"] == "phx_reply" and raw["payload"] == {"status": "ok", "response": {}} and raw["ref"] == "1"
    await server.push("/api/channel", channel_id="c1", n=2)
    assert (await phx.next("new_msg"))[4] == {"channel_id": "c1", "n": 2}


async def test_handshakes_refused_with_403(server, http):
    for query in (
        "",
        "?token=bad&vsn=2.0.0",
        f"?token={make_token('ann', ttl=-5)}",
        f"?token={make_token('a')}&vsn=3.0.0",
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{server.url}/socket/websocket{query}")
        assert info.value.status == 403


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
async def test_the_auth_token_subprotocol_is_answered_phoenix(server, http, alphabet):
    token = make_token("ann", rooms=ALL_ROOMS)
    encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
    offer = "base64url.bearer.phx." + encode(token.encode()).decode().rstrip("=")
    ws = await http.ws_connect(f"{server.url}/socket/websocket?vsn=2.0.0", protocols=("phoenix", offer))
    assert ws.protocol == "phoenix"
    await Phx(ws).join("user:ann")


async def test_shutdown_closes_phoenix_sockets_with_1001(make_server, http):
    server = await make_server()
    phx = await _open(http, server)
    await phx.join("user:ann")
    closing = asyncio.create_task(server.runner.shutdown())
    msg = await asyncio.wait_for(phx.ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    await closing


async def test_sockets_are_counted_and_other_paths_are_aiohttps(server, http):
    phx = await _open(http, server)
    await phx.join("user:ann")
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    async with http.get(f"{server.url}/metrics", headers=headers) as resp:
        assert "sio_push_phoenix_sockets 1.0" in await resp.text()
    async with http.get(f"{server.url}/socket/websocket?vsn=2.0.0") as resp:
        assert resp.status == 404  # not a websocket handshake: aiohttp's
    async with http.get(f"{server.url}/socket/websocketx") as resp:
        assert resp.status == 404


async def test_the_server_may_take_a_socket_out_of_a_room(server, http, connect):
    sio = await connect(server, "bob")
    assert (await sio.join("room:c1"))["ok"]
    phx = await _open(http, server)
    join_ref = await phx.join("room:c1")
    await sio.presence_until("room:c1", lambda view: "ann" in view)
    channels = server.app[PHOENIX].channels
    assert channels.sockets_of(sid="phx:none") == []
    (socket,) = channels.sockets_of(user_id="ann")
    await channels.remove(socket, "room:c1", "revoked")
    left = await phx.next("room_left")
    assert left == [join_ref, None, "room:c1", "room_left", {"room": "room:c1", "reason": "revoked"}]
    assert await phx.next("phx_close") == [join_ref, join_ref, "room:c1", "phx_close", {}]
    await sio.presence_until("room:c1", lambda view: "ann" not in view)


async def test_a_handshake_arriving_byte_by_byte_is_taken(server):
    """ "GET /socket.io/" and "GET /socket/websocket" share "GET /socket": the head is read to its end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"GET /socket/websocket?token={make_token('ann')}&vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(bytes(16)).decode()}\r\n\r\n"
    ).encode()
    for byte in head:
        writer.write(bytes([byte]))
        await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 101 ")
    writer.close()


async def test_phoenix_handshakes_are_admitted_like_socketio_ones(make_server, http):
    server = await make_server(connect_rate=0.2)  # a burst of 1
    first = await _open(http, server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await _open(http, server)
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    await first.join("user:ann")


async def test_phoenix_connections_count_toward_the_cap_until_they_close(make_server, http):
    server = await make_server(max_connections=1)
    phx = await _open(http, server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await _open(http, server, "bob")
    assert info.value.status == 503
    await phx.ws.close()
    for _ in range(100):  # the server sees the close a moment later
        try:
            await _open(http, server, "bob")
            return
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.05)
    raise AssertionError("the closed connection was never released")


async def test_in_a_large_room_a_phoenix_member_gets_an_empty_state_then_counts(make_server, http, connect):
    server = await make_server(presence_max_users=1)
    sio = await connect(server, "bob")
    assert (await sio.join("room:c1"))["ok"]
    phx = await _open(http, server)
    join_ref = await phx.join("room:c1")  # 2 users > 1: large
    # The room's switch to large (a broadcast, no join_ref) is the joiner's state too: an empty map.
    state = await phx.next("presence_state")
    assert state[0] in (None, join_ref) and state[1:] == [None, "room:c1", "presence_state", {}]
    await sio.close()
    count = await phx.next("presence_count")
    assert count[:4] == [None, None, "room:c1", "presence_count"] and count[4]["users"] == 1


async def test_the_per_user_socket_limit_counts_phoenix_sockets(make_server, http, connect, client_factory):
    server = await make_server(max_sockets_per_user=1)
    phx = await _open(http, server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await _open(http, server)
    assert info.value.status == 403
    assert await client_factory().refused(server, make_token("ann")) == {"code": "too_many_connections"}
    await phx.ws.close()
    for _ in range(100):  # released a moment after the close
        try:
            await _open(http, server)
            return
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.05)
    raise AssertionError("the closed socket was never released")


async def test_a_revoked_token_is_refused_403(server, http):
    token = make_token("ann", iat=int(time.time()) - 5)
    assert (await server.push("/api/disconnect", user_id="ann"))[0] == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(f"{server.url}/socket/websocket?token={token}&vsn=2.0.0")
    assert info.value.status == 403


async def test_a_join_of_a_room_taken_from_the_user_is_unauthorized(server, http):
    phx = await _open(http, server)
    await phx.join("room:lobby:c1")
    assert (await server.push("/api/unsubscribe", user_id="ann", room="room:lobby:c2"))[0] == 200
    ref = await phx.send("room:lobby:c2", "phx_join", join_ref="7")
    reply = await phx.next("phx_reply")
    assert reply[1:] == [ref, "room:lobby:c2", "phx_reply", {"status": "error", "response": {"reason": "unauthorized"}}]


async def test_the_backend_disconnects_and_unsubscribes_phoenix_sockets(server, http):
    phx = await _open(http, server)
    join_ref = await phx.join("room:lobby:c1")
    status, body = await server.push("/api/unsubscribe", user_id="ann", room="room:lobby:c1")
    assert status == 200 and body["sockets"] == 1
    left = await phx.next("room_left")
    assert left == [join_ref, None, "room:lobby:c1", "room_left", {"room": "room:lobby:c1", "reason": "revoked"}]
    assert (await phx.next("phx_close"))[:3] == [join_ref, join_ref, "room:lobby:c1"]
    status, body = await server.push("/api/disconnect", user_id="ann")
    assert status == 200 and body["sockets"] == 1
    msg = await asyncio.wait_for(phx.ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.CLOSE


async def test_a_socket_whose_token_expires_is_closed_with_1001(server, http):
    token = make_token("ann", ttl=1.5)
    ws = await http.ws_connect(f"{server.url}/socket/websocket?token={token}&vsn=2.0.0")
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
