"""The entry point as a real process: it serves, it logs no secret, it drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import socketio

from .conftest import SERVICE_KEY, make_token
from .node_client import NodeClient
from .processes import ServerProcess


async def test_logs_never_hold_tokens_keys_or_payloads(tmp_path):
    server = await ServerProcess(tmp_path / "server.log", env={"PUSH_LOG_LEVEL": "DEBUG"}).start()
    token = make_token("lia", rooms=["room:*"])
    try:
        client = socketio.AsyncClient(reconnection=False)
        received: asyncio.Queue[tuple] = asyncio.Queue()
        client.on("new_msg", lambda *args: received.put_nowait(args))
        await client.connect(f"{server.url}?token={token}", transports=["polling", "websocket"], wait_timeout=5)
        await client.call("join", "room:lobby:c1", timeout=5)
        await client.call("user:typing", {"room": "room:lobby:c1", "typing": True, "username": "secret-name"})
        await client.call("unknown", {"payload": "client-secret-payload"}, timeout=5)
        status, _ = await server.push("/api/channel", channel_id="c1", body="backend-secret-payload")
        assert status == 200
        payload, offset = await asyncio.wait_for(received.get(), 5)  # delivered, though never logged
        assert payload == {"channel_id": "c1", "body": "backend-secret-payload"} and isinstance(offset, str)
        status, _ = await server.post("/api/channel", {"token": "wrong-key-value", "channel_id": "c1"})
        assert status == 401
        refused = socketio.AsyncClient(reconnection=False)
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await refused.connect(server.url, auth={"token": token + "x"}, wait_timeout=5)
        await client.disconnect()
    finally:
        assert await server.stop() == 0
    log = server.log()
    assert "joined sid=" in log and "pushed new_msg to room:lobby:c1" in log
    for secret in (
        token,
        SERVICE_KEY,
        "wrong-key-value",
        "client-secret-payload",
        "backend-secret-payload",
        "secret-name",
        token.split(".")[1],
    ):
        assert secret not in log


async def test_json_logs_are_one_object_a_line(tmp_path):
    server = await ServerProcess(tmp_path / "server.log", env={"PUSH_LOG_FORMAT": "json"}).start()
    await server.push("/api/community", community_id="k1")
    await server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)


async def test_sigterm_closes_transports_so_socketio_clients_reconnect(tmp_path):
    server = await ServerProcess(tmp_path / "server.log").start()
    client = await NodeClient.start(server.url, make_token("mo"), env={"KEEP_TRYING": "1"})
    try:
        await client.next("connect")
        server.kill(signal.SIGTERM)
        assert await server.stop() == 0
        # An Engine.IO close: socket.io-client reconnects ("io server disconnect" would stop it).
        assert (await client.next("disconnect"))["reason"] == "transport close"
        assert (await client.next("connect_error"))["message"]  # and it is trying again
    finally:
        await client.close()
