"""Several processes: one order everywhere, `--workers` and `PUSH_WORKERS`, what workers refuse, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from sio_push.config import load_settings

from .conftest import SECRET, SERVICE_KEY, Client, make_token
from .processes import ROOT, outliving

PUSHES = 40


def _stream_id(offset: str) -> tuple[int, int]:
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq or 0)


async def _joined(client_factory, url: str, sub: str, room: str) -> Client:
    client = client_factory()
    await client.sio.connect(url, auth={"token": make_token(sub, rooms=["room:*"])}, transports=["websocket"])
    assert (await client.join(room))["ok"]
    return client


async def test_every_process_delivers_pushes_in_one_order(processes, redis_env, client_factory):
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    clients = [await _joined(client_factory, url, f"o{i}", "room:lobby:o") for i, url in enumerate([a.url, b.url] * 2)]
    # Pushes posted at once to both processes, so that they interleave.
    answers = await asyncio.gather(
        *((a if n % 2 else b).push("/api/channel", channel_id="o", n=n) for n in range(PUSHES))
    )
    assert all(status == 200 for status, _ in answers)
    seen = [[(await client.next_msg())["n"] for _ in range(PUSHES)] for client in clients]
    assert sorted(seen[0]) == list(range(PUSHES))
    assert all(order == seen[0] for order in seen[1:]), "every client, on either process, sees one order"
    # And that order is the offsets' (the recovery log's), whichever process took the push.
    assert seen[0] == sorted(range(PUSHES), key=lambda n: _stream_id(answers[n][1]["offset"]))


async def test_push_workers_sets_the_number_of_workers(processes, redis_env, client_factory):
    server = await processes(PUSH_WORKERS="2", **redis_env)
    assert len(await server.workers(2)) == 2
    client = await _joined(client_factory, server.url, "wu", "room:lobby:w")
    assert (await server.push("/api/channel", channel_id="w", n=1))[0] == 200
    assert (await client.next_msg())["n"] == 1


async def test_the_workers_flag_wins_over_push_workers(processes, redis_env):
    server = await processes("--workers", "3", PUSH_WORKERS="2", **redis_env)
    assert len(await server.workers(3)) == 3


def test_workers_auto_is_one_per_core():
    env = {"PUSH_SERVICE_KEY": SERVICE_KEY, "PUSH_JWT_SECRET": SECRET, "PUSH_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert load_settings(env, workers="auto").workers == (os.cpu_count() or 1)
    assert load_settings({**env, "PUSH_WORKERS": "auto"}).workers == (os.cpu_count() or 1)


@pytest.mark.skipif((os.cpu_count() or 1) > 8, reason="one worker per core: too many processes to start here")
async def test_workers_auto_starts_one_worker_per_core(processes, redis_env):
    server = await processes("--workers", "auto", **redis_env)
    cores = os.cpu_count() or 1
    assert len(await server.workers(cores) if cores > 1 else server.children()) == (cores if cores > 1 else 0)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m sio_push` with a valid key and secret plus `env`, expected to exit at once."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PUSH_", "AUTH_SERVICE"))}
    full = {**base, "PUSH_SERVICE_KEY": SERVICE_KEY, "PUSH_JWT_SECRET": SECRET, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "sio_push", *args], env=full, capture_output=True, text=True, timeout=30, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--workers", "2"), {}), ((), {"PUSH_WORKERS": "2"})],
    ids=["flag", "environment"],
)
def test_workers_refuse_to_start_without_redis(args, env):
    result = _run(*args, **env)
    assert result.returncode == 2
    assert "PUSH_REDIS_URL" in result.stderr and "worker" in result.stderr


def test_polling_with_several_workers_is_a_configuration_error(redis_server):
    result = _run("--workers", "2", PUSH_REDIS_URL=redis_server.url, PUSH_TRANSPORTS="polling,websocket")
    assert result.returncode == 2
    assert "PUSH_TRANSPORTS" in result.stderr and "polling" in result.stderr


async def _polling_handshake(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/socket.io/?EIO=4&transport=polling") as resp:
        return resp.status


async def test_several_workers_take_websocket_only(processes, redis_env, client_factory):
    server = await processes("--workers", "2", **redis_env)
    await server.workers(2)
    for _ in range(4):  # whichever worker the kernel picks
        assert await _polling_handshake(server.url) == 400
    client = await _joined(client_factory, server.url, "wo", "room:lobby:w")
    assert client.sio.transport() == "websocket"


async def test_push_transports_websocket_refuses_polling_in_one_process(make_server, client_factory):
    server = await make_server(transports=("websocket",))
    assert await _polling_handshake(server.url) == 400
    default = await make_server()
    assert await _polling_handshake(default.url) == 200


async def test_sigterm_stops_every_worker(processes, redis_env):
    server = await processes("--workers", "2", PUSH_DRAIN_SECONDS="0", **redis_env)
    workers = await server.workers(2)
    assert server.process is not None
    server.kill(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), 15) == 0
    assert await outliving(workers, 5) == [], "every worker is gone once the supervisor has stopped"
