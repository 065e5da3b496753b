"""The real npm socket.io-client 4.x from Node against sio-push."""

from __future__ import annotations

import pytest

from .conftest import make_token


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


async def test_connect_join_and_receive_new_msg(server, node_clients):
    client = await node_clients(server.url, make_token("nina", rooms=["room:*"]), "room:lobby:general")
    connected = await client.next("connect")
    assert connected["recovered"] is not True
    state = await client.next("presence_state")  # sent before the join is acknowledged
    assert list(state["args"][0]["state"]) == ["nina"]
    assert (await client.next("ack"))["answer"] == {"ok": True, "room": "room:lobby:general"}
    status, _ = await server.push("/api/channel", channel_id="general", message_id="m1", is_reply=False)
    assert status == 200
    message = await client.next("new_msg")
    assert message["args"][0] == {"channel_id": "general", "message_id": "m1", "is_reply": False}


async def test_connect_error_carries_the_code(server, node_clients):
    for token, code in [(None, "token_missing"), ("nope", "token_invalid"), (make_token(ttl=-1), "token_expired")]:
        client = await node_clients(server.url, token)
        error = await client.next("connect_error")
        assert error["data"] == {"code": code} and error["message"] == code


async def test_refused_join_and_typing_acks(server, node_clients):
    client = await node_clients(server.url, make_token("olga", rooms=["room:topic:*"]))
    await client.next("connect")
    await client.send(cmd="join", room="room:lobby:secret")
    assert (await client.next("ack"))["answer"] == {"ok": False, "error": "unauthorized"}
    await client.send(cmd="typing", room="room:topic:t", typing=True, username="Olga")
    assert (await client.next("ack"))["answer"] == {"ok": False, "error": "not_joined"}
    await client.send(cmd="join", room="room:topic:t")
    assert (await client.next("ack"))["answer"]["ok"] is True
    await client.send(cmd="typing", room="room:topic:t", typing=True, username="Olga")
    diff = await client.next("presence_diff")
    while not diff["args"][0]["joins"].get("olga", {"metas": [{}]})["metas"][0].get("typing"):
        diff = await client.next("presence_diff")
    assert diff["args"][0]["joins"]["olga"]["metas"][0]["username"] == "Olga"


async def test_polling_transport_with_the_node_client(server, node_clients):
    client = await node_clients(
        server.url, make_token("pia", rooms=["room:*"]), "room:c1", env={"TRANSPORTS": "polling"}
    )
    await client.next("connect")
    await client.next("ack")
    await server.push("/api/community", community_id="c1", n=1)
    assert (await client.next("new_msg"))["args"][0] == {"community_id": "c1", "n": 1}
