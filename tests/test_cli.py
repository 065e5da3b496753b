"""The operators' commands as real processes against a live server: token, push, check."""

from __future__ import annotations

import asyncio
import json
import sys

import socketio

from .conftest import free_port
from .processes import ROOT, ServerProcess

TIMEOUT = 15


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`python -m sio_push ARGS` with the environment `env`: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sio_push", *args, env=env, cwd=ROOT, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_token_and_push_work_against_a_live_server(tmp_path):
    server = await ServerProcess(tmp_path / "server.log").start()
    client = socketio.AsyncClient(reconnection=False)
    received: asyncio.Queue[object] = asyncio.Queue()
    client.on("hello", lambda data, offset=None: received.put_nowait(data))
    try:
        status, token, _ = await run(server.env, "token", "--sub", "ann", "--rooms", "room:c*", "--ttl", "60")
        assert status == 0
        await client.connect(server.url, auth={"token": token.strip()}, transports=["websocket"], wait_timeout=5)
        assert (await client.call("join", "room:c1", timeout=5))["ok"]
        assert not (await client.call("join", "room:d1", timeout=5))["ok"]  # the rooms claim holds

        body = json.dumps({"rooms": ["room:c1"], "event": "hello", "data": {"x": 1}})
        status, out, _ = await run(server.env, "push", "emit", body)  # the configured port, on loopback
        assert status == 0 and json.loads(out)["status"] == 200 and "offset" in json.loads(out)
        assert await asyncio.wait_for(received.get(), TIMEOUT) == {"x": 1}
        status, out, _ = await run(server.env, "push", "/api/emit", "--url", server.url, body)
        assert status == 0 and await asyncio.wait_for(received.get(), TIMEOUT) == {"x": 1}

        status, out, _ = await run(server.env, "push", "emit", json.dumps({"rooms": ["nowhere"]}))
        assert status == 1 and json.loads(out)["status"] == 400  # the server's answer, printed
        status, _, err = await run(server.env, "push", "emit", "not json")
        assert status == 2 and "not JSON" in err
        status, _, err = await run(server.env, "push", "emit", "--url", f"http://127.0.0.1:{free_port()}", body)
        assert status == 1 and "cannot reach" in err
        status, _, err = await run(server.env, "token", "--sub", "not an id")
        assert status == 2 and "--sub" in err
    finally:
        await client.disconnect()
        await server.stop()
    assert server.env["PUSH_SERVICE_KEY"] not in server.log()


async def test_check_validates_the_configuration_and_reaches_redis(tmp_path, redis_server):
    env = ServerProcess(tmp_path / "unused.log").env
    status, out, _ = await run(env, "check")
    assert status == 0 and "configuration ok" in out and env["PUSH_SERVICE_KEY"] not in out
    status, out, _ = await run({**env, "PUSH_REDIS_URL": redis_server.url}, "check")
    assert status == 0 and "redis: reachable" in out
    status, _, err = await run({**env, "PUSH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "check")
    assert status == 2 and "cannot reach Redis" in err
    status, _, err = await run({**env, "PUSH_SERVICE_KEY": "", "PUSH_WEBHOOK_URL": "ftp://x"}, "check")
    assert status == 2 and "PUSH_SERVICE_KEY" in err and "PUSH_WEBHOOK_URL" in err
