"""Bad bodies on the push API: each a clear 4xx, never a 500, never a push stored or delivered."""

from __future__ import annotations

import asyncio

import aiohttp

from .conftest import SERVICE_KEY

HEADERS = {"Content-Type": "application/json"}


async def _post_raw(server, path: str, body: bytes, **headers: str) -> tuple[int, dict]:
    headers = {**HEADERS, **headers}
    async with aiohttp.ClientSession() as http, http.post(server.url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_lone_surrogate_in_a_push_is_refused_before_it_is_stored(server, connect):
    client = await connect(server)
    await client.join("room:lobby:c1")
    body = b'{"token": "' + SERVICE_KEY.encode() + b'", "channel_id": "c1", "message": "\\udc00"}'
    status, answer = await _post_raw(server, "/api/channel", body)
    assert status == 400 and answer["error"] == "invalid_json"
    status, answer = await server.push("/api/channel", channel_id="c1", n=1)
    assert status == 200 and answer["offset"] == "1"  # the refused body took no offset
    assert (await client.next_msg())["n"] == 1


async def test_deep_nesting_is_400_not_500(server):
    for depth in (300, 100_000):
        body = (
            b'{"token": "' + SERVICE_KEY.encode() + b'", "channel_id": "c1", "x": ' + b"[" * depth + b"]" * depth + b"}"
        )
        status, answer = await _post_raw(server, "/api/channel", body, Authorization="Bearer " + SERVICE_KEY)
        assert status in (200, 400), (depth, status, answer)
        assert status == 200 or answer["error"] == "invalid_json"


async def test_a_key_with_a_lone_surrogate_is_401(server):
    status, answer = await _post_raw(server, "/api/channel", b'{"token": "\\ud800", "channel_id": "c1"}')
    assert status == 401 and answer["error"] == "unauthorized"


async def test_a_client_that_abandons_its_body_costs_nothing(server):
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /api/channel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    status, _ = await server.push("/api/channel", channel_id="c1")
    assert status == 200


async def test_a_body_that_does_not_arrive_in_time_is_408(make_server):
    server = await make_server(body_timeout_seconds=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /api/channel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()
