"""Callback mode against a real aiohttp app that plays Linen's Next.js routes `/api/jwt/who` and `/api/jwt/can`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web

from .conftest import SERVICE_KEY, Client

USERS = {"session-alice": "alice", "session-bob": "bob"}
ALLOWED = {("alice", "channel_id", "c1"), ("alice", "thread_id", "t1"), ("alice", "community_id", "k1")}


class FakeLinen:
    """Next.js routes as Linen wrote them: `JSON.parse` of the raw body, 200 means yes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.slow = False
        self.broken = False
        self.can_status = 200  # what /api/jwt/can answers a user it allows
        self.url = ""

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        self.calls.append((request.path, json.loads(raw), request.content_type))
        return json.loads(raw)

    async def who(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if self.slow:
            await asyncio.sleep(2)
        if self.broken:
            return web.Response(status=500, text="boom")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if body.get("push_token") != SERVICE_KEY or token not in USERS:
            return web.Response(status=401, text="unauthorized")
        return web.Response(text=USERS[token])

    async def can(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body.get("push_token") != SERVICE_KEY:
            return web.Response(status=401)
        for field in ("channel_id", "thread_id", "community_id"):
            if (body.get("current_user"), field, body.get(field)) in ALLOWED:
                return web.Response(status=self.can_status, text="ok" if self.can_status != 204 else None)
        return web.Response(status=403)


@pytest.fixture
async def linen():
    fake = FakeLinen()
    app = web.Application()
    app.router.add_post("/api/jwt/who", fake.who)
    app.router.add_post("/api/jwt/can", fake.can)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def callback_server(make_server, linen):
    return await make_server(jwt_secret=None, auth_service_url=linen.url, auth_timeout_seconds=0.5)


async def test_who_names_the_user_and_bodies_are_json_text(callback_server, linen, client_factory):
    client: Client = client_factory()
    await client.connect(callback_server, "session-alice")
    path, body, content_type = linen.calls[0]
    assert path == "/api/jwt/who" and body == {"push_token": SERVICE_KEY} and content_type == "text/plain"
    status, _ = await callback_server.push("/api/user", user_id="alice", n=1)
    assert status == 200 and (await client.next_msg())["n"] == 1


async def test_unknown_session_is_unauthorized(callback_server, client_factory):
    assert await client_factory().refused(callback_server, "session-nobody") == {"code": "unauthorized"}
    assert await client_factory().refused(callback_server) == {"code": "token_missing"}


async def test_can_decides_each_join_with_the_right_field(callback_server, linen, client_factory):
    client: Client = client_factory()
    await client.connect(callback_server, "session-alice")
    assert (await client.join("room:lobby:c1"))["ok"]
    assert (await client.join("room:topic:t1"))["ok"]
    assert (await client.join("room:k1"))["ok"]
    assert await client.join("room:lobby:c2") == {"ok": False, "error": "unauthorized"}
    can_bodies = [body for path, body, _ in linen.calls if path == "/api/jwt/can"]
    assert {"push_token": SERVICE_KEY, "current_user": "alice", "channel_id": "c1"} in can_bodies
    assert {"push_token": SERVICE_KEY, "current_user": "alice", "thread_id": "t1"} in can_bodies
    assert {"push_token": SERVICE_KEY, "current_user": "alice", "community_id": "k1"} in can_bodies
    assert {content_type for path, _, content_type in linen.calls if path == "/api/jwt/can"} == {"text/plain"}


async def test_own_user_room_needs_no_callback_and_others_are_refused(callback_server, linen, client_factory):
    client: Client = client_factory()
    await client.connect(callback_server, "session-bob")
    assert (await client.join("user:bob"))["ok"]
    assert await client.join("user:alice") == {"ok": False, "error": "unauthorized"}
    assert not [c for c in linen.calls if c[0] == "/api/jwt/can"]


async def test_answers_are_cached(callback_server, linen, client_factory):
    for _ in range(3):
        client: Client = client_factory()
        await client.connect(callback_server, "session-alice")
        await client.join("room:lobby:c1")
        await client.close()
    assert len([c for c in linen.calls if c[0] == "/api/jwt/who"]) == 1
    assert len([c for c in linen.calls if c[0] == "/api/jwt/can"]) == 1


async def test_answers_are_asked_again_once_the_cache_time_has_passed(make_server, linen, client_factory):
    cache = 0.3
    server = await make_server(jwt_secret=None, auth_service_url=linen.url, auth_cache_seconds=cache)
    client: Client = client_factory()
    await client.connect(server, "session-alice")
    await client.close()
    asked = time.monotonic()
    await asyncio.sleep(cache + 0.2)  # the cache's time is what is tested
    client = client_factory()
    await client.connect(server, "session-alice")
    assert time.monotonic() - asked > cache
    assert len([c for c in linen.calls if c[0] == "/api/jwt/who"]) == 2


async def test_only_200_means_yes(callback_server, linen, client_factory):
    linen.can_status = 204  # a success, but not 200
    client: Client = client_factory()
    await client.connect(callback_server, "session-alice")
    assert await client.join("room:lobby:c1") == {"ok": False, "error": "unauthorized"}


async def test_timeout_and_errors_mean_no(callback_server, linen, client_factory):
    linen.slow = True
    assert await client_factory().refused(callback_server, "session-bob") == {"code": "unauthorized"}
    linen.slow, linen.broken = False, True
    assert await client_factory().refused(callback_server, "session-bob") == {"code": "unauthorized"}
    linen.broken = False
    await client_factory().connect(callback_server, "session-bob")  # errors were not cached


async def test_unreachable_backend_means_no(make_server, client_factory):
    server = await make_server(jwt_secret=None, auth_service_url="http://127.0.0.1:9", auth_timeout_seconds=0.5)
    assert await client_factory().refused(server, "session-alice") == {"code": "unauthorized"}
