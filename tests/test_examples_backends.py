"""client_examples/ run as their users run them: the Python and Node backends, the Python listener, curl.sh."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys

import pytest

from . import test_client
from .conftest import SERVICE_KEY, make_token
from .live_routes import PROBES, missing_routes
from .node_client import EXAMPLES, NodeClient

RUN_TIMEOUT = 30.0
flaky = test_client.flaky  # the fixture: a stand-in server that answers 503 first


def _env(server_url: str, key: str = SERVICE_KEY, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PUSH_SERVICE_URL": server_url,
        "PUSH_SERVICE_KEY": key,
        **extra,
    }


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a command to its end; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=EXAMPLES
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def node_binary() -> str:
    node = shutil.which("node")
    if node is None or not (EXAMPLES / "node_modules").exists():
        pytest.fail("node and `npm ci --prefix client_examples` are needed (make node)")
    return node


@pytest.fixture
async def python_listener():
    """Starts client_examples/python-listener/listen.py; read its JSON lines as with a NodeClient."""
    listeners: list[NodeClient] = []

    async def start(url: str, token: str, *rooms: str) -> NodeClient:
        script = EXAMPLES / "python-listener" / "listen.py"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            url,
            token,
            *rooms,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        listeners.append(NodeClient(process))
        return listeners[-1]

    yield start
    for listener in listeners:
        await listener.close()


async def _joined(listener: NodeClient, count: int) -> None:
    for _ in range(count):
        assert (await listener.next("ack"))["answer"]["ok"] is True


async def _thread_community_and_mention(listener, user, channel, thread, community) -> dict:
    """What a backend example pushes, in order: a new thread (returned), a community event, a mention."""
    message = (await listener.next("new_msg"))["args"][0]
    assert message["channel_id"] == channel and message["thread_id"] == thread and "token" not in message
    assert (await listener.next("new_msg"))["args"][0] == community
    mention = {"user_id": user, "thread_id": thread, "channel_id": channel, "is_mention": True, "mention_type": "user"}
    assert (await listener.next("new_msg"))["args"][0] == mention
    return message


async def test_python_listener_prints_what_is_pushed_to_its_rooms(server, python_listener):
    listener = await python_listener(server.url, make_token("lia", rooms=["room:*"]), "room:lobby:general")
    await listener.next("connect")
    await _joined(listener, 1)
    await server.push("/api/channel", channel_id="general", message_id="m1")
    assert (await listener.next("new_msg"))["args"][0] == {"channel_id": "general", "message_id": "m1"}
    await server.push("/api/user", user_id="lia", is_mention=True)  # its own user room, joined by the server
    assert (await listener.next("new_msg"))["args"][0]["is_mention"] is True


async def test_python_listener_says_why_a_token_is_refused(server, python_listener):
    listener = await python_listener(server.url, make_token("lia", ttl=-1))
    assert (await listener.next("connect_error"))["data"]["code"] == "token_expired"


async def test_python_backend_pushes_a_linen_message_its_community_and_a_mention(server, python_listener):
    listener = await python_listener(server.url, make_token("max", rooms=["room:*"]), "room:lobby:gen", "room:k1")
    await _joined(listener, 2)
    script = str(EXAMPLES / "python-backend" / "push.py")
    args = [script, "gen", "hello @max", "--thread", "t9", "--community", "k1", "--mention", "max"]
    code, out, err = await run(sys.executable, *args, env=_env(server.url))
    assert code == 0, err
    assert [json.loads(line)["status"] for line in out.splitlines()] == [200, 200, 200]
    community = {"community_id": "k1", "thread_id": "t9"}
    message = await _thread_community_and_mention(listener, "max", "gen", "t9", community)
    assert message["is_thread"] is True
    assert json.loads(message["thread"])["messages"][0]["body"] == "hello @max"


async def test_python_backend_reports_a_wrong_key(server):
    script = str(EXAMPLES / "python-backend" / "push.py")
    code, _, err = await run(sys.executable, script, "gen", "hi", env=_env(server.url, key="wrong"))
    assert code == 1 and "401" in err and "wrong" not in err


async def test_node_backend_pushes_reach_the_npm_client(server, node_clients):
    listener = await node_clients(server.url, make_token("ned", rooms=["room:*"]), "room:lobby:gen", "room:k2")
    await _joined(listener, 2)
    code, out, err = await run(node_binary(), "node-backend/example.js", "gen", "t3", "k2", "ned", env=_env(server.url))
    assert code == 0, err
    assert [json.loads(line)["status"] for line in out.splitlines()] == [200, 200, 200]
    community = {"community_id": "k2", "thread_id": "t3", "kind": "new_thread"}
    message = await _thread_community_and_mention(listener, "ned", "gen", "t3", community)
    assert message["is_reply"] is False and json.loads(message["message"])["body"] == "hello @ned"


NODE_CALL = """
const { createPushClient } = require("./node-backend/push");
const client = createPushClient({ url: process.env.PUSH_SERVICE_URL, key: process.env.PUSH_SERVICE_KEY,
                                  backoffMs: 10 });
client.pushChannel({ channelId: "c", messageId: "m1" }).then(
  (answer) => console.log(JSON.stringify({ answer })),
  (err) => console.log(JSON.stringify({ name: err.name, status: err.status ?? null, body: err.body })));
"""


async def test_node_backend_retries_a_503_honouring_retry_after(flaky):
    stand_in, url = await flaky(["1", None])
    code, out, err = await run(node_binary(), "-e", NODE_CALL, env=_env(url))
    assert code == 0, err
    assert json.loads(out)["answer"]["status"] == 200
    assert len(stand_in.times) == 3 and stand_in.times[1] - stand_in.times[0] >= 0.95


async def test_node_backend_rejects_with_the_status_and_errors(make_server):
    server = await make_server()
    _, out, _ = await run(node_binary(), "-e", NODE_CALL, env=_env(server.url, key="wrong"))
    assert json.loads(out) == {"name": "PushError", "status": 401, "body": {"status": 401, "error": "unauthorized"}}
    bad = NODE_CALL.replace('channelId: "c"', 'channelId: "not valid!"')
    _, out, _ = await run(node_binary(), "-e", bad, env=_env(server.url))
    answer = json.loads(out)
    assert answer["status"] == 400 and "channel_id" in answer["body"]["errors"]


async def test_curl_sh_calls_every_route_the_server_has(server, node_clients):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed (Debian package curl)")
    listener = await node_clients(
        server.url, make_token("cu", rooms=["room:*"]), "room:lobby:ch", "room:topic:th", "room:co"
    )
    await _joined(listener, 3)
    absent = {route.removeprefix("/api/") for route in missing_routes()}
    routes = ["health", "message", "channel", "community", "user", "emit", "batch", "presence", "rooms"]
    routes += ["unsubscribe", "disconnect"]  # the order of curl.sh: revocation last
    assert {f"/api/{r}" for r in absent} <= set(PROBES)
    present = [r for r in routes if r not in absent]
    env = _env(server.url, CHANNEL="ch", THREAD="th", COMMUNITY="co", PUSH_USER="cu")
    code, out, err = await run("bash", "curl.sh", *present, env=env)
    assert code == 0, err
    statuses = {}
    for block in out.split("== ")[1:]:
        name, _, rest = block.partition("\n")
        statuses[name] = rest.strip().splitlines()[-1]
    assert statuses == {route: "HTTP 200" for route in present}, out
    got = [(await listener.next("new_msg"))["args"][0] for _ in range(4)]
    assert got[0]["message_id"] == "m1" and json.loads(got[0]["message"]) == {"id": "m1", "body": "hi"}
    assert got[1:] == [
        {"channel_id": "ch", "message_id": "m2"},
        {"community_id": "co", "kind": "announcement"},
        {"user_id": "cu", "is_mention": True, "mention_type": "user"},
    ]
    assert (await listener.next("reaction"))["args"][0] == {"emoji": "+1"}
    code, _, err = await run("bash", "curl.sh", "nope", env=env)
    assert code == 2 and "unknown route" in err
