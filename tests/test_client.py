"""sio_push.client, async and sync, against a live server and (for 503s) a small server that answers 503 first."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest
from aiohttp import web

from sio_push.client import (
    AsyncPushClient,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    PushClient,
    PushConnectionError,
    Retry,
    ServiceUnavailable,
    Unauthorized,
    _Call,
)

from .conftest import SERVICE_KEY, free_port
from .live_routes import needs_route

FAST = Retry(attempts=3, backoff=0.01, max_backoff=0.05)


async def test_async_client_pushes_reach_their_rooms(server, connect):
    listener = await connect(server, "ann")
    for room in ("room:lobby:c1", "room:topic:t1", "room:k1"):
        assert (await listener.join(room))["ok"]
    async with AsyncPushClient(server.url, SERVICE_KEY) as push:
        assert await push.health() == {"status": 200}
        assert await push.ready() == {"status": 200}
        answer = await push.push_message(channel_id="c1", thread_id="t1", message_id="m1", is_reply=True)
        assert answer["status"] == 200 and answer["rooms"] == ["room:lobby:c1", "room:topic:t1"]
        assert await listener.next_msg() == {
            "channel_id": "c1",
            "thread_id": "t1",
            "message_id": "m1",
            "is_reply": True,
        }
        await push.push_channel("c1", message_id="m2")
        assert await listener.next_msg() == {"channel_id": "c1", "message_id": "m2"}
        await push.push_community("k1", kind="online")
        assert await listener.next_msg() == {"community_id": "k1", "kind": "online"}
        await push.push_user("ann", is_mention=True, mention_type="user")
        assert await listener.next_msg() == {"user_id": "ann", "is_mention": True, "mention_type": "user"}
        await push.emit(["room:k1"], "reaction", {"emoji": "+1"})
        assert (await listener.next("reaction"))[1][0] == {"emoji": "+1"}


async def test_sync_client_pushes_reach_their_rooms(server, connect):
    listener = await connect(server, "bo")
    assert (await listener.join("room:lobby:c2"))["ok"]
    push = PushClient(server.url, SERVICE_KEY)
    assert await asyncio.to_thread(push.health) == {"status": 200}
    answer = await asyncio.to_thread(push.push_channel, "c2", message_id="m1")
    assert answer["rooms"] == ["room:lobby:c2"]
    assert await listener.next_msg() == {"channel_id": "c2", "message_id": "m1"}
    await asyncio.to_thread(push.push_user, "bo", n=1)
    assert await listener.next_msg() == {"user_id": "bo", "n": 1}
    await asyncio.to_thread(push.emit, ["room:lobby:c2"], "edited", [1, 2])
    assert (await listener.next("edited"))[1][0] == [1, 2]


async def test_errors_are_typed_the_same_in_both_clients(make_server):
    server = await make_server(max_body_bytes=2048)
    cases = [
        (Unauthorized, "wrong", "push_channel", ("c1",), {}),
        (BadRequest, SERVICE_KEY, "push_channel", ("not valid!",), {}),
        (PayloadTooLarge, SERVICE_KEY, "push_channel", ("c1",), {"big": "x" * 4096}),
        (BadRequest, SERVICE_KEY, "emit", (["room:k"], "connect", None), {}),
        (NotFound, SERVICE_KEY, "_send", (_Call("GET", "/api/no-such-route"),), {}),
    ]
    for error, key, method, args, kwargs in cases:
        async with AsyncPushClient(server.url, key) as push:
            with pytest.raises(error) as raised:
                await getattr(push, method)(*args, **kwargs)
        with pytest.raises(error) as raised_sync:
            await asyncio.to_thread(getattr(PushClient(server.url, key), method), *args, **kwargs)
        assert raised.value.status == raised_sync.value.status
        assert raised.value.body == raised_sync.value.body
        assert SERVICE_KEY not in str(raised.value) and key not in repr(push)
    with pytest.raises(BadRequest) as bad:
        await asyncio.to_thread(PushClient(server.url, SERVICE_KEY).push_channel, "not valid!")
    assert "channel_id" in bad.value.errors


def test_arguments_are_checked_before_sending():
    push = PushClient("http://127.0.0.1:9", SERVICE_KEY)
    with pytest.raises(ValueError):
        push.push_message(message_id="m1")
    with pytest.raises(ValueError):
        push.disconnect(user_id="u", sid="s")
    with pytest.raises(ValueError):
        push.disconnect()


class Flaky:
    """A stand-in for a server in a deploy: answers 503 with the given Retry-After values, then 200."""

    def __init__(self, retry_after: list[str | None]) -> None:
        self.retry_after = list(retry_after)
        self.times: list[float] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        if self.retry_after:
            value = self.retry_after.pop(0)
            headers = {"Retry-After": value} if value is not None else {}
            return web.json_response({"status": 503, "error": "draining"}, status=503, headers=headers)
        return web.json_response({"status": 200, "rooms": ["room:lobby:c"]})

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"


@pytest.fixture
async def flaky():
    servers: list[Flaky] = []

    async def start(retry_after: list[str | None]) -> tuple[Flaky, str]:
        server = Flaky(retry_after)
        servers.append(server)
        return server, await server.start()

    yield start
    for server in servers:
        await server.runner.cleanup()


async def test_503_is_retried_honouring_retry_after(flaky):
    server, url = await flaky(["1", "0"])
    async with AsyncPushClient(url, SERVICE_KEY, retry=FAST) as push:
        assert (await push.push_channel("c"))["status"] == 200
    assert len(server.times) == 3
    assert server.times[1] - server.times[0] >= 0.95  # waited the second Retry-After asked for
    server, url = await flaky([None, "0"])
    assert (await asyncio.to_thread(PushClient(url, SERVICE_KEY, retry=FAST).push_channel, "c"))["status"] == 200
    assert len(server.times) == 3


async def test_503_past_the_last_attempt_is_service_unavailable(flaky):
    server, url = await flaky(["0"] * 10)
    async with AsyncPushClient(url, SERVICE_KEY, retry=FAST) as push:
        with pytest.raises(ServiceUnavailable) as raised:
            await push.push_channel("c")
    assert raised.value.status == 503 and raised.value.body["error"] == "draining"
    assert len(server.times) == 3
    with pytest.raises(ServiceUnavailable):
        await asyncio.to_thread(PushClient(url, SERVICE_KEY, retry=FAST).push_channel, "c")
    assert len(server.times) == 6


async def test_refused_connection_is_retried_then_raised():
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncPushClient(url, SERVICE_KEY, retry=FAST) as push:
        with pytest.raises(PushConnectionError) as raised:
            await push.health()
    assert raised.value.status is None
    with pytest.raises(PushConnectionError):
        await asyncio.to_thread(PushClient(url, SERVICE_KEY, retry=FAST).health)


def test_retry_after_as_seconds_or_http_date_is_capped():
    retry = Retry(max_wait=30)
    assert retry.delay(1, "3") == 3
    assert retry.delay(1, "600") == 30
    soon = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry.delay(1, soon) <= 10
    assert 0.05 <= Retry(backoff=0.1).delay(1, None) <= 0.1
    assert Retry(backoff=0.1, max_backoff=0.3).delay(10, "nonsense") <= 0.3


# The routes of SPEC sections 7 and 8: these run once a live server has them.


@needs_route("/api/batch")
async def test_batch_delivers_in_order_or_refuses_all(server, connect):
    listener = await connect(server, "cy")
    assert (await listener.join("room:k2"))["ok"]
    async with AsyncPushClient(server.url, SERVICE_KEY) as push:
        answer = await push.batch([{"rooms": ["room:k2"], "event": "n", "data": i} for i in range(3)])
        assert len(answer["results"]) == 3
        assert [(await listener.next("n"))[1][0] for _ in range(3)] == [0, 1, 2]
        with pytest.raises(BadRequest) as raised:
            await push.batch(
                [{"rooms": ["room:k2"], "event": "n", "data": 9}, {"rooms": ["bad"], "event": "n", "data": 0}]
            )
        assert "1" in raised.value.errors["pushes"]
        await push.emit(["room:k2"], "n", "after")
        assert (await listener.next("n"))[1][0] == "after"  # nothing of the refused batch came first


@needs_route("/api/presence", "/api/rooms")
async def test_presence_and_rooms(server, connect):
    listener = await connect(server, "dee")
    assert (await listener.join("room:topic:p1"))["ok"]
    push = PushClient(server.url, SERVICE_KEY)
    answer = await asyncio.to_thread(push.presence, "room:topic:p1", 10)
    assert answer["count"] == {"users": 1, "sockets": 1} and list(answer["state"]) == ["dee"]
    rooms = await asyncio.to_thread(push.rooms, "room:topic:", 10)
    assert rooms["rooms"] == [{"room": "room:topic:p1", "sockets": 1, "users": 1}]
    with pytest.raises(BadRequest):
        await asyncio.to_thread(push.presence, "user:dee")


@needs_route("/api/disconnect", "/api/unsubscribe")
async def test_unsubscribe_then_disconnect(server, connect):
    listener = await connect(server, "eve")
    assert (await listener.join("room:lobby:c3"))["ok"]
    async with AsyncPushClient(server.url, SERVICE_KEY) as push:
        assert (await push.unsubscribe("eve", "room:lobby:c3"))["sockets"] == 1
        assert (await listener.next("room_left"))[1][0] == {"room": "room:lobby:c3", "reason": "revoked"}
        assert (await push.disconnect(user_id="eve"))["sockets"] == 1
    await asyncio.wait_for(listener.sio.wait(), 5)  # returns once the server has disconnected it
