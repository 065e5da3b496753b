"""Tokens that run out while connected: the close at `exp`, `refresh`, and callback mode's recheck."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from aiohttp import web

from .conftest import ALL_ROOMS, TIMEOUT, Client, make_token, serve_app
from .node_client import NodeClient
from .test_callback_auth import FakeLinen


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


class TokenService:
    """The app's token endpoint: each GET mints a fresh short-lived token (what `auth` as a function fetches)."""

    def __init__(self, sub: str, ttl: float) -> None:
        self.sub = sub
        self.ttl = ttl
        self.issued = 0
        self.url = ""

    async def token(self, request: web.Request) -> web.Response:
        self.issued += 1
        return web.Response(text=make_token(self.sub, rooms=ALL_ROOMS, ttl=self.ttl))


@pytest.fixture
async def token_service() -> AsyncIterator[TokenService]:
    service = TokenService("ada", ttl=3)
    app = web.Application()
    app.router.add_get("/token", service.token)
    runner, url = await serve_app(app)
    service.url = url + "/token"
    yield service
    await runner.cleanup()


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_an_expired_token_closes_the_transport_and_a_fresh_one_recovers(
    server, node_clients, token_service, transports
):
    env = {"TOKEN_URL": token_service.url, "RECONNECTION_DELAY": "1000", "TRANSPORTS": transports}
    client: NodeClient = await node_clients(server.url, None, "room:lobby:c1", env=env)
    first = await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    await server.push("/api/channel", channel_id="c1", n=0)
    assert (await client.next("new_msg"))["args"][0]["n"] == 0

    # The token (3 s) runs out: the server closes the transport; the client reconnects by itself.
    assert (await client.next("disconnect"))["reason"] == "transport close"
    for n in range(1, 6):
        assert (await server.push("/api/channel", channel_id="c1", n=n))[0] == 200
    again = await client.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    await server.push("/api/channel", channel_id="c1", n=6)
    assert [(await client.next("new_msg"))["args"][0]["n"] for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert token_service.issued == 2


async def test_the_close_at_expiry_is_going_away_1001(server):
    token = make_token("bea", ttl=2)
    url = f"{server.url}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0")
        await ws.send_str("40" + json.dumps({"token": token}))
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
        message = await ws.receive(timeout=TIMEOUT)
        for _ in range(3):  # a ping or so may come before the close
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            message = await ws.receive(timeout=TIMEOUT)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 1001


async def test_a_static_token_that_expired_is_refused_on_reconnect(server, node_clients):
    env = {"RECONNECTION_DELAY": "200"}
    client = await node_clients(server.url, make_token("cid", rooms=ALL_ROOMS, ttl=2), env=env)
    await client.next("connect")
    assert (await client.next("disconnect"))["reason"] == "transport close"
    assert (await client.next("connect_error"))["data"] == {"code": "token_expired"}


async def test_refresh_extends_the_connection_for_the_same_user_only(server, client_factory):
    client: Client = client_factory()
    await client.connect(server, make_token("dee", rooms=ALL_ROOMS, ttl=2))
    refreshed = make_token("dee", rooms=ALL_ROOMS, ttl=300)
    exp = jwt.decode(refreshed, options={"verify_signature": False})["exp"]
    assert await client.call("refresh", {"token": refreshed}) == {"ok": True, "exp": exp}

    assert await client.call("refresh", {"token": make_token("eve", ttl=600)}) == {
        "ok": False,
        "error": "token_invalid",
    }
    assert await client.call("refresh", {"token": "not-a-token"}) == {"ok": False, "error": "token_invalid"}
    expired = make_token("dee", ttl=-10)
    assert await client.call("refresh", {"token": expired}) == {"ok": False, "error": "token_expired"}
    assert await client.call("refresh", "no object") == {"ok": False, "error": "invalid_payload"}
    assert await client.call("refresh", {"token": "a\udc00b"}) == {"ok": False, "error": "token_invalid"}
    assert await client.call("refresh", {"token": 5}) == {"ok": False, "error": "token_invalid"}

    await asyncio.sleep(2.5)  # the behaviour under test is the clock: the first token's exp passes
    assert client.sio.connected
    await server.push("/api/user", user_id="dee", n=1)
    assert (await client.next_msg())["n"] == 1


async def test_a_narrower_rooms_claim_on_refresh_leaves_rooms(server, client_factory, connect):
    client: Client = client_factory()
    await client.connect(server, make_token("fay", rooms=ALL_ROOMS))
    watcher = await connect(server, "gus")
    for room in ("room:lobby:c1", "room:topic:t1"):
        assert (await client.join(room))["ok"] is True
    assert (await watcher.join("room:topic:t1"))["ok"] is True
    await watcher.presence_until("room:topic:t1", lambda view: "fay" in view)

    narrower = make_token("fay", rooms=["room:lobby:*"])
    assert (await client.call("refresh", {"token": narrower}))["ok"] is True
    _, args = await client.next("room_left")
    assert args == ({"room": "room:topic:t1", "reason": "token"},)
    await watcher.presence_until("room:topic:t1", lambda view: "fay" not in view)

    await server.push("/api/message", thread_id="t1", n=1)
    await server.push("/api/channel", channel_id="c1", n=2)
    assert (await client.next_msg())["n"] == 2
    assert (await client.join("room:topic:t1")) == {"ok": False, "error": "unauthorized"}


class RevokingLinen(FakeLinen):
    """Linen's routes, where a session can be logged out (`/api/jwt/who` then answers 401)."""

    def __init__(self) -> None:
        super().__init__()
        self.logged_out: set[str] = set()
        self.asked = asyncio.Event()

    async def who(self, request: web.Request) -> web.Response:
        self.asked.set()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.logged_out:
            await self._body(request)
            return web.Response(status=401, text="unauthorized")
        return await super().who(request)

    async def asked_again(self) -> None:
        self.asked.clear()
        await asyncio.wait_for(self.asked.wait(), TIMEOUT)


@pytest.fixture
async def revoking_linen() -> AsyncIterator[RevokingLinen]:
    fake = RevokingLinen()
    app = web.Application()
    app.router.add_post("/api/jwt/who", fake.who)
    app.router.add_post("/api/jwt/can", fake.can)
    runner, fake.url = await serve_app(app)
    yield fake
    await runner.cleanup()


async def test_callback_mode_rechecks_and_closes_only_on_a_definite_refusal(
    make_server, revoking_linen, client_factory
):
    linen = revoking_linen
    server = await make_server(
        jwt_secret=None, auth_service_url=linen.url, auth_timeout_seconds=0.3, auth_recheck_seconds=0.5
    )
    client: Client = client_factory()
    closed = asyncio.Event()
    client.sio.on("disconnect", lambda *args: closed.set())
    await client.connect(server, "session-alice")

    linen.broken = True  # 5xx: nothing changes
    for _ in range(2):
        await linen.asked_again()
    linen.broken, linen.slow = False, True  # timeouts: nothing changes
    for _ in range(2):
        await linen.asked_again()
    linen.slow = False
    await linen.asked_again()
    assert client.sio.connected and not closed.is_set()
    await server.push("/api/user", user_id="alice", n=1)
    assert (await client.next_msg())["n"] == 1

    linen.logged_out.add("session-alice")  # a definite refusal: the socket is closed
    await asyncio.wait_for(closed.wait(), TIMEOUT)
    # and the refusal replaced the cached answer of the connect: the token no longer connects
    assert await client_factory().refused(server, "session-alice") == {"code": "unauthorized"}


async def test_callback_mode_rechecks_phoenix_sockets_too_and_closes_only_on_a_definite_refusal(
    make_server, revoking_linen
):
    linen = revoking_linen
    server = await make_server(
        jwt_secret=None, auth_service_url=linen.url, auth_timeout_seconds=0.3, auth_recheck_seconds=0.5
    )
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.url}/socket/websocket?token=session-alice&vsn=2.0.0")
        linen.broken = True  # 5xx: nothing changes
        await linen.asked_again()
        linen.broken, linen.slow = False, True  # a timeout: nothing changes
        await linen.asked_again()
        linen.slow = False
        await linen.asked_again()
        await ws.send_str('[null, "1", "phoenix", "heartbeat", {}]')
        reply = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert reply.type == aiohttp.WSMsgType.TEXT and '"ok"' in reply.data  # still open

        linen.logged_out.add("session-alice")  # a definite refusal: closed with 1001, and refused after
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        while msg.type == aiohttp.WSMsgType.TEXT and asyncio.get_running_loop().time() < deadline:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.url}/socket/websocket?token=session-alice&vsn=2.0.0")
        assert refused.value.status == 403
