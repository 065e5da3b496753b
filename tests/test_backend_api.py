"""The backend's API beyond pushes (SPEC §8): presence and rooms over every process, batches."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sio_push.keys import ENGINE

from .conftest import SERVICE_KEY, make_token

KEY = {"Authorization": "Bearer " + SERVICE_KEY}


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


async def get(url: str, headers: dict[str, str] | None = KEY, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers, params=params) as resp:
        return resp.status, await resp.json(content_type=None)


async def _join(client_factory, url: str, user: str, *rooms: str):
    client = client_factory()
    await client.sio.connect(url, auth={"token": make_token(user, rooms=["room:*"])}, transports=["websocket"])
    for room in rooms:
        assert (await client.join(room))["ok"]
    return client


async def test_presence_and_rooms_count_the_sockets_of_every_process(processes, redis_env, client_factory):
    one, two = await processes(**redis_env), await processes(**redis_env)
    await _join(client_factory, one.url, "ann", "room:c1", "room:lobby:c1")
    await _join(client_factory, one.url, "bob", "room:c1")
    await _join(client_factory, two.url, "bob", "room:c1")
    await _join(client_factory, two.url, "cat", "room:c1", "room:topic:t1")
    for server in (one, two):
        status, answer = await get(f"{server.url}/api/presence/room:c1")
        assert status == 200 and answer["room"] == "room:c1"
        assert answer["count"] == {"users": 3, "sockets": 4}
        assert sorted(answer["state"]) == ["ann", "bob", "cat"] and len(answer["state"]["bob"]["metas"]) == 2
        status, answer = await get(f"{server.url}/api/presence/room:c1", limit="2")
        assert (status, sorted(answer["state"]), answer["count"]["users"]) == (200, ["ann", "bob"], 3)
        status, answer = await get(f"{server.url}/api/rooms", prefix="room:")
        assert status == 200 and answer["rooms"] == [
            {"room": "room:c1", "sockets": 4, "users": 3},
            {"room": "room:lobby:c1", "sockets": 1, "users": 1},
            {"room": "room:topic:t1", "sockets": 1, "users": 1},
        ]
        status, answer = await get(f"{server.url}/api/rooms", prefix="user:")
        assert [room["room"] for room in answer["rooms"]] == ["user:ann", "user:bob", "user:cat"]
        assert answer["rooms"][1] == {"room": "user:bob", "sockets": 2, "users": 1}
        status, answer = await get(f"{server.url}/api/rooms", prefix="room:", after="room:c1", limit="1")
        assert (status, answer["rooms"]) == (200, [{"room": "room:lobby:c1", "sockets": 1, "users": 1}])


async def test_an_empty_room_has_no_presence_and_is_not_listed(server):
    status, answer = await get(f"{server.url}/api/presence/room:nobody")
    assert (status, answer) == (
        200,
        {"status": 200, "room": "room:nobody", "count": {"users": 0, "sockets": 0}, "state": {}},
    )
    assert await get(f"{server.url}/api/rooms", prefix="room:nobody") == (200, {"status": 200, "rooms": []})


@pytest.mark.parametrize(
    ("path", "params", "error"),
    [
        ("/api/presence/room:c1", {"limit": "0"}, "invalid_query"),
        ("/api/presence/room:c1", {"limit": "1001"}, "invalid_query"),
        ("/api/presence/room:c1", {"limit": "ten"}, "invalid_query"),
        ("/api/presence/user:ann", {}, "invalid_room"),
        ("/api/presence/room:lobby:", {}, "invalid_room"),
        ("/api/presence/lobby", {}, "invalid_room"),
        ("/api/rooms", {"limit": "0"}, "invalid_query"),
        ("/api/rooms", {"limit": "1001"}, "invalid_query"),
        ("/api/rooms", {"prefix": "x" * 301}, "invalid_query"),
    ],
)
async def test_reads_check_the_key_first_then_the_query(server, path, params, error):
    assert (await get(server.url + path, None, **params))[0] == 401
    assert (await get(server.url + path, {"Authorization": "Bearer wrong"}, **params))[0] == 401
    status, answer = await get(server.url + path, **params)
    assert (status, answer["error"]) == (400, error)


async def test_reads_take_the_key_as_a_bearer_header_only(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/rooms", json={"token": SERVICE_KEY}) as resp:
            assert resp.status == 401
        async with http.get(f"{server.url}/api/rooms", params={"token": SERVICE_KEY}) as resp:
            assert resp.status == 401


async def test_a_batch_of_100_is_delivered_in_order_each_with_its_offset(server, connect):
    client = await connect(server, "ann")
    assert (await client.join("room:c1"))["ok"]
    pushes = [{"rooms": ["room:c1", "user:ann"], "event": f"e{n % 3}", "data": {"n": n}} for n in range(100)]
    status, answer = await server.push("/api/batch", pushes=pushes)
    assert status == 200 and len(answer["results"]) == 100
    results = answer["results"]
    assert all(result["status"] == 200 and result["rooms"] == ["room:c1", "user:ann"] for result in results)
    order = server.app[ENGINE].broker.order
    offsets = [order(result["offset"]) for result in results]
    assert offsets == sorted(set(offsets))
    received = [await client.next("e0", "e1", "e2") for _ in range(100)]
    assert [(event, args[0]["n"], args[1]) for event, args in received] == [
        (f"e{n % 3}", n, results[n]["offset"]) for n in range(100)
    ]


async def test_one_bad_item_refuses_the_whole_batch_and_nothing_is_delivered(server, connect):
    client = await connect(server, "ann")
    assert (await client.join("room:c1"))["ok"]
    good = {"rooms": ["room:c1"], "event": "hello", "data": 1}
    pushes = [good, good, good, {"rooms": ["nowhere"], "event": "hello", "data": 1}, {"event": "connect", "data": 1}]
    status, answer = await server.push("/api/batch", pushes=pushes)
    assert status == 400 and answer["error"] == "invalid_body"
    assert set(answer["errors"]["pushes"]) == {"3", "4"} and "rooms" in answer["errors"]["pushes"]["3"]
    assert set(answer["errors"]["pushes"]["4"]) == {"rooms", "event"}
    for bad in ([], [good] * 101, "nope", [1]):
        assert (await server.push("/api/batch", pushes=bad))[0] == 400
    assert (await server.post("/api/batch", {"token": "wrong", "pushes": [good]}))[0] == 401
    assert (await server.push("/api/emit", rooms=["room:c1"], event="marker", data=None))[0] == 200
    before = []
    while (event := (await client.next())[0]) != "marker":
        before.append(event)
    assert "hello" not in before  # nothing of the refused batches came before the marker


async def test_the_openapi_document_has_the_new_routes(server):
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    assert {"/api/batch", "/api/presence/{room}", "/api/rooms"} <= set(paths)
    names = {param.get("name") for param in paths["/api/rooms"]["get"]["parameters"]}
    assert names == {"prefix", "after", "limit"}
