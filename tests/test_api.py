"""The backend push API end to end: every route, every bad input, the order of checks."""

from __future__ import annotations

import json

import aiohttp
import pytest

from .conftest import SERVICE_KEY


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


LINEN_MESSAGE = {
    "channel_id": "c1",
    "thread_id": "t1",
    "message_id": "m1",
    "imitation_id": "i1",
    "is_thread": False,
    "is_reply": True,
    "message": json.dumps({"id": "m1", "body": "hello"}),
    "thread": json.dumps({"id": "t1"}),
    "forwarded_extra": {"anything": [1, 2]},
}


KEY = {"Authorization": "Bearer " + SERVICE_KEY}


async def test_message_route_reaches_lobby_and_topic_with_payload_exactly_as_posted(server, connect):
    lobby = await connect(server, "a")
    topic = await connect(server, "b")
    await lobby.join("room:lobby:c1")
    await topic.join("room:topic:t1")
    status, answer = await server.push("/api/message", **LINEN_MESSAGE)
    assert status == 200 and answer["status"] == 200
    assert answer["rooms"] == ["room:lobby:c1", "room:topic:t1"]
    assert await lobby.next_msg() == LINEN_MESSAGE
    assert await topic.next_msg() == LINEN_MESSAGE


@pytest.mark.parametrize(
    ("path", "body", "room"),
    [
        ("/api/message", {"thread_id": "t9"}, "room:topic:t9"),
        ("/api/message", {"channel_id": "c9"}, "room:lobby:c9"),
        ("/api/channel", {"channel_id": "c9", "is_thread": True}, "room:lobby:c9"),
        ("/api/community", {"community_id": "k9"}, "room:k9"),
        ("/api/user", {"user_id": "alice", "is_mention": True, "mention_type": "signal"}, "user:alice"),
    ],
)
async def test_each_route_broadcasts_new_msg_to_its_room(server, connect, path, body, room):
    client = await connect(server, "alice")
    if not room.startswith("user:"):
        await client.join(room)
    status, answer = await server.push(path, **body)
    assert status == 200 and answer["rooms"] == [room]
    assert await client.next_msg() == body


async def test_socket_in_several_target_rooms_receives_once(server, connect):
    client = await connect(server)
    await client.join("room:lobby:c1")
    await client.join("room:topic:t1")
    await server.push("/api/message", channel_id="c1", thread_id="t1", n=1)
    await server.push("/api/message", channel_id="c1", n=2)
    assert (await client.next_msg())["n"] == 1
    assert (await client.next_msg())["n"] == 2


async def test_emit_sends_any_event_with_data_as_one_argument(server, connect):
    client = await connect(server, "alice")
    await client.join("room:c1")
    data = {"token": "not-the-key-this-is-data", "list": [1, 2]}
    status, _ = await server.push("/api/emit", rooms=["room:c1", "user:alice"], event="reaction", data=data)
    assert status == 200
    _, args = await client.next("reaction")
    assert args[0] == data and len(args) == 2 and isinstance(args[1], str)  # the last one is the offset


async def test_key_by_bearer_header_is_accepted(server, connect):
    client = await connect(server)
    await client.join("room:lobby:c1")
    status, _ = await server.post(
        "/api/channel", {"channel_id": "c1"}, headers={"Authorization": f"Bearer {SERVICE_KEY}"}
    )
    assert status == 200
    assert await client.next_msg() == {"channel_id": "c1"}


async def test_service_key_is_never_in_a_received_payload(server, connect):
    client = await connect(server)
    await client.join("room:lobby:c1")
    await client.join("room:topic:t1")
    await server.push("/api/message", channel_id="c1", thread_id="t1")
    received = await client.next_msg()
    assert SERVICE_KEY not in json.dumps(received) and "token" not in received


@pytest.mark.parametrize("key", [None, "", "wrong-key", SERVICE_KEY + "x", SERVICE_KEY[:-1]])
async def test_wrong_service_key_is_refused_and_nothing_is_sent(server, connect, key):
    client = await connect(server)
    await client.join("room:lobby:c1")
    body = {"channel_id": "c1", "n": 1}
    if key is not None:
        body["token"] = key
    status, answer = await server.post("/api/channel", body)
    assert status == 401 and answer["error"] == "unauthorized"
    status, _ = await server.post("/api/channel", {"channel_id": "c1"}, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    await server.push("/api/channel", channel_id="c1", n=2)
    assert (await client.next_msg())["n"] == 2


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/message", {}, "channel_id"),
        ("/api/message", {"channel_id": "bad id"}, "channel_id"),
        ("/api/channel", {}, "channel_id"),
        ("/api/channel", {"channel_id": 5}, "channel_id"),
        ("/api/community", {"community_id": "x" * 129}, "community_id"),
        ("/api/user", {"user_id": None}, "user_id"),
        ("/api/emit", {"event": "x", "data": 1}, "rooms"),
        ("/api/emit", {"rooms": [], "event": "x", "data": 1}, "rooms"),
        ("/api/emit", {"rooms": ["nope"], "event": "x", "data": 1}, "rooms"),
        ("/api/emit", {"rooms": ["room:a"], "data": 1}, "event"),
        ("/api/emit", {"rooms": ["room:a"], "event": "x"}, "data"),
        ("/api/emit", {"rooms": ["room:a"], "event": "", "data": 1}, "event"),
    ],
)
async def test_bad_body_is_400_with_field_errors(server, path, body, field):
    status, answer = await server.push(path, **body)
    assert status == 400
    assert field in answer["errors"]


@pytest.mark.parametrize(
    "event",
    [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "presence_state",
        "presence_diff",
        "presence_count",
        "presence_typing",
        "room_left",
        "socket.io",
        "socket.io:x",
        "phx_reply",
        "phx_join",
    ],
)
async def test_reserved_events_are_refused(server, event):
    status, answer = await server.push("/api/emit", rooms=["room:a"], event=event, data={})
    assert status == 400 and "event" in answer["errors"]


@pytest.mark.parametrize("body", [b"not json", b"{", b"[1,2]", b'"string"', b"", b"\xff\xfe"])
async def test_non_json_body_with_valid_bearer_key_is_400(server, body):
    status, answer = await server.post(
        "/api/channel",
        data=body,
        headers={"Authorization": f"Bearer {SERVICE_KEY}", "Content-Type": "application/json"},
    )
    assert status == 400 and answer["status"] == 400


async def test_form_body_is_415(server):
    status, answer = await server.post(
        "/api/channel",
        data={"token": SERVICE_KEY, "channel_id": "c1"},
        headers={"Authorization": f"Bearer {SERVICE_KEY}"},
    )
    assert status == 415 and answer["error"] == "unsupported_media_type"


async def test_non_json_without_key_is_401_before_400(server):
    status, _ = await server.post("/api/channel", data=b"garbage", headers={"Content-Type": "application/json"})
    assert status == 401


async def test_body_over_limit_is_413_before_the_key_check(make_server, connect):
    server = await make_server(max_body_bytes=2048)
    client = await connect(server)
    await client.join("room:lobby:c1")
    big = {"channel_id": "c1", "blob": "x" * 4096}
    status, answer = await server.post("/api/channel", big)  # no key at all: still 413 first
    assert status == 413 and answer["error"] == "body_too_large"
    status, _ = await server.push("/api/channel", **big)
    assert status == 413
    async with aiohttp.ClientSession() as http:

        async def chunks():
            for _ in range(8):
                yield b"x" * 1024

        async with http.post(server.url + "/api/channel", data=chunks()) as resp:  # no Content-Length
            assert resp.status == 413
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next_msg())["n"] == 1


async def test_default_limit_is_one_mebibyte(server):
    status, _ = await server.push("/api/channel", channel_id="c1", blob="x" * (1024 * 1024))
    assert status == 413
    status, _ = await server.push("/api/channel", channel_id="c1", blob="x" * (1000 * 1000))
    assert status == 200


async def test_health(server):
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/health") as resp:
        assert resp.status == 200 and await resp.json() == {"status": 200}


async def test_unknown_route_and_method_are_json_errors_not_500(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/message") as resp:
            assert resp.status == 405 and (await resp.json())["status"] == 405
        async with http.post(server.url + "/api/nope", json={}) as resp:
            assert resp.status == 404 and (await resp.json())["status"] == 404


async def test_metrics_count_sockets_pushes_and_deliveries(server, connect):
    client = await connect(server)
    await client.join("room:lobby:c1")
    await server.push("/api/channel", channel_id="c1")
    await client.next_msg()
    await server.post("/api/channel", {"token": "wrong", "channel_id": "c1"})
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics", headers=KEY) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "sio_push_sockets 1.0" in text
    assert 'sio_push_pushes_total{route="/api/channel"} 1.0' in text
    assert 'sio_push_push_errors_total{status="401"} 1.0' in text
    assert 'sio_push_connects_total{result="connected"} 1.0' in text
    assert "sio_push_deliveries_total 1.0" in text
    assert "sio_push_push_seconds_count 1.0" in text
    tasks = [line for line in text.splitlines() if line.startswith("sio_push_asyncio_tasks ")]
    assert len(tasks) == 1 and float(tasks[0].split()[1]) >= 1  # this request's own task at least
    assert SERVICE_KEY not in text


async def test_openapi_document_lists_every_route(server):
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/openapi.json") as resp:
        spec = await resp.json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/message", "/api/channel", "/api/community", "/api/user", "/api/emit", "/api/health"):
        assert path in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert "channel_id" in schemas["Channel"]["required"] and set(schemas["Emit"]["required"]) == {
        "rooms",
        "event",
        "data",
    }


async def test_metrics_need_the_service_key_unless_made_public(make_server):
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + SERVICE_KEY}):
            async with http.get(server.url + "/metrics", headers=headers) as resp:
                assert resp.status == 401
                assert "sio_push" not in await resp.text()
        async with http.get(server.url + "/metrics", headers=KEY) as resp:
            assert resp.status == 200 and "sio_push_sockets" in await resp.text()
    public = await make_server(metrics_public=True)
    async with aiohttp.ClientSession() as http, http.get(public.url + "/metrics") as resp:
        assert resp.status == 200 and "sio_push_sockets" in await resp.text()
