"""Limits on what one client may ask (SPEC §7), each answered with a clear error, none costing a bystander."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from .conftest import TIMEOUT, make_token

ROOM = "room:topic:t1"


class RawSocket:
    """A Socket.IO client written by hand over aiohttp's websocket, to send what real clients won't."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self._http = http

    @classmethod
    async def open(cls, url: str, token: str) -> RawSocket:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket")
        raw = cls(ws, http)
        assert (await raw.receive()).startswith("0{")
        await ws.send_str("40" + json.dumps({"token": token}))
        assert (await raw.receive()).startswith("40{")
        return raw

    async def receive(self) -> str:
        """The next text message that is not a ping (pings are answered)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.001))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"websocket {msg.type.name}")
            if msg.data == "2":
                await self.ws.send_str("3")
                continue
            return str(msg.data)

    async def ack(self, packet: str) -> Any:
        """Send an event packet with ack id 1 (`421[...]`); the acknowledgement's one argument."""
        await self.ws.send_str(packet)
        while True:
            data = await self.receive()
            if data.startswith("431"):
                return json.loads(data[3:])[0]

    async def closed(self) -> bool:
        """Whether the server closes this websocket (it sends nothing more of interest first)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.001))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return True
            if msg.type == aiohttp.WSMsgType.ERROR:
                return True
        return False

    async def close(self) -> None:
        await self.ws.close()
        await self._http.close()


async def _bystander(server, connect):
    """A well-behaved client in another room, and a check that it still gets every push."""
    client = await connect(server, "bob")
    assert (await client.join("room:lobby:quiet"))["ok"]

    async def still_served(n: int) -> None:
        status, _ = await server.push("/api/channel", channel_id="quiet", n=n)
        assert status == 200
        assert (await client.next_msg())["n"] == n

    return still_served


async def test_a_join_beyond_the_room_limit_is_refused_too_many_rooms(make_server, connect):
    server = await make_server(max_rooms_per_socket=3)  # the user room and two more
    client = await connect(server)
    assert (await client.join("room:lobby:a"))["ok"]
    assert (await client.join("room:lobby:b"))["ok"]
    assert await client.join("room:lobby:c") == {"ok": False, "error": "too_many_rooms"}
    assert (await client.join("room:lobby:a"))["ok"]  # already in: still fine
    assert (await client.call("leave", "room:lobby:b"))["ok"]
    assert (await client.join("room:lobby:c"))["ok"]


async def test_events_over_the_rate_are_refused_and_the_socket_stays(make_server, connect):
    server = await make_server(events_per_second=5)  # burst of 10
    still_served = await _bystander(server, connect)
    client = await connect(server)
    answers = await asyncio.gather(*(client.join("room:lobby:a") for _ in range(30)))
    refused = [a for a in answers if a == {"ok": False, "error": "rate_limited"}]
    assert 15 <= len(refused) <= 20 and all(a["ok"] for a in answers if a not in refused)
    assert client.sio.connected
    await still_served(1)
    deadline = time.monotonic() + TIMEOUT
    while (await client.join("room:lobby:a")) != {"ok": True, "room": "room:lobby:a"}:  # tokens come back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_a_client_event_named_like_a_server_event_does_nothing(server, connect):
    watcher = await connect(server, "bob")
    await watcher.join(ROOM)
    raw = await RawSocket.open(server.url, make_token("mallory", rooms=["room:*"]))
    try:
        assert (await raw.ack('421["join","' + ROOM + '"]'))["ok"]
        await watcher.presence_until(ROOM, lambda view: "mallory" in view)
        for name in ("disconnect", "connect", "disconnecting", "connect_error"):
            assert await raw.ack(f'421["{name}"]') == {"ok": False, "error": "unknown_event"}
        status, _ = await server.push("/api/message", thread_id="t1", n=1)
        assert status == 200
        while '"n":1' not in (data := await raw.receive()):
            assert "presence" in data
        assert "mallory" in watcher.presence[ROOM]  # never seen leaving
    finally:
        await raw.close()


async def test_binary_from_a_client_closes_its_connection(server, connect):
    still_served = await _bystander(server, connect)
    token = make_token("mallory", rooms=["room:*"])
    for send in (
        lambda ws: ws.send_bytes(b"\x04binary"),
        lambda ws: ws.send_str('451-["join",{"_placeholder":true,"num":0}]'),
        lambda ws: ws.send_str('459999999999-["join",{"_placeholder":true,"num":0}]'),
    ):
        raw = await RawSocket.open(server.url, token)
        try:
            await send(raw.ws)
            assert await raw.closed()
        finally:
            await raw.close()
    await still_served(1)


async def test_malformed_events_get_an_error_ack_and_keep_the_connection(server, connect):
    raw = await RawSocket.open(server.url, make_token("mallory", rooms=["room:*"]))
    try:
        assert await raw.ack("421{}") == {"ok": False, "error": "invalid_payload"}
        assert await raw.ack("421[1,2]") == {"ok": False, "error": "invalid_payload"}
        assert await raw.ack('421["nope"]') == {"ok": False, "error": "unknown_event"}
        await raw.ws.send_str("4garbage")
        await raw.ws.send_str('42/other,["join","room:lobby:a"]')
        assert (await raw.ack('421["join","room:lobby:a"]'))["ok"]
    finally:
        await raw.close()


async def test_typing_is_sent_only_when_it_changes_and_clears_itself(make_server, connect):
    server = await make_server(typing_seconds=0.5, presence_batch_seconds=0)
    watcher = await connect(server, "bob")
    await watcher.join(ROOM)
    typist = await connect(server, "ann")
    await typist.join(ROOM)
    await watcher.presence_until(ROOM, lambda view: "ann" in view)
    watcher.drain()
    typing = {"room": ROOM, "typing": True, "username": "Ann"}
    assert await typist.call("user:typing", typing) == {"ok": True}
    assert await typist.call("user:typing", typing) == {"ok": True}  # no change: nothing sent
    _, (diff,) = await watcher.next("presence_diff")
    assert diff["joins"]["ann"]["metas"][0]["typing"] is True
    started = time.monotonic()
    _, (diff,) = await watcher.next("presence_diff")  # the next one is the expiry, not the repeat
    assert diff["joins"]["ann"]["metas"][0]["typing"] is False
    assert time.monotonic() - started >= 0.3
    assert diff["joins"]["ann"]["metas"][0]["username"] == "Ann"


async def test_a_username_that_cannot_be_encoded_is_refused_and_the_room_still_works(server, connect):
    typist = await connect(server, "ann")
    await typist.join(ROOM)
    answer = await typist.call("user:typing", {"room": ROOM, "typing": True, "username": "\udc00"})
    assert answer == {"ok": False, "error": "invalid_payload"}
    late = await connect(server, "bob")
    assert (await late.join(ROOM))["ok"]
    _, (state,) = await late.next("presence_state")
    assert set(state["state"]) == {"ann", "bob"}
