"""How it is run, as the README tells it: the console script, the Procfile, development mode's warning,
the settings' names and defaults, and what the access log leaves out."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from sio_push.cli import GC_THRESHOLDS, _tune_gc
from sio_push.config import DEV_SERVICE_KEY, load_settings

from .conftest import make_token
from .processes import ROOT

GOOD = {"PUSH_SERVICE_KEY": "k" * 20, "PUSH_JWT_SECRET": "s" * 32}


def test_the_console_script_is_the_entry_point():
    script = Path(sys.executable).with_name("sio-push")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSH_", "AUTH_SERVICE"))}
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "PUSH_SERVICE_KEY is required" in result.stderr


def test_the_procfile_runs_the_console_script_on_port():
    assert (ROOT / "Procfile").read_text().strip() == "web: sio-push"
    settings = load_settings({**GOOD, "PORT": "5123"})
    assert (settings.host, settings.port) == ("0.0.0.0", 5123)


def test_env_example_lists_every_setting_read():
    read = set(re.findall(r'"((?:PUSH|AUTH)_[A-Z_]+|PORT)"', (ROOT / "sio_push" / "config.py").read_text()))
    listed = set(re.findall(r"^#? ?((?:PUSH|AUTH)_[A-Z_]+|PORT)=", (ROOT / ".env.example").read_text(), re.M))
    assert read and read <= listed, sorted(read - listed)


def test_transport_and_connect_timeout_settings():
    assert load_settings(GOOD).transports == ("polling", "websocket")
    several = {**GOOD, "PUSH_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert load_settings(several, workers="2").transports == ("websocket",)  # several workers: websocket only
    sticky = load_settings({**several, "PUSH_TRANSPORTS": "polling,websocket"})
    assert sticky.transports == ("polling", "websocket")
    assert load_settings(GOOD).connect_timeout_seconds == 45
    assert load_settings({**GOOD, "PUSH_CONNECT_TIMEOUT": "3"}).connect_timeout_seconds == 3
    assert load_settings(GOOD).presence_batch_seconds == 0.1
    assert load_settings(GOOD).recovery_log_size == 100_000


def test_once_listening_the_collector_runs_less_and_skips_what_was_loaded():
    before = gc.get_threshold()
    try:
        _tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
async def test_the_listen_queue_is_as_long_as_the_kernel_allows(server):
    # For a listening socket, ss shows the queue's length (the backlog, after the kernel's cap) as Send-Q.
    ss = await asyncio.create_subprocess_exec("ss", "-Hltn", f"sport = :{server.port}", stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(ss.communicate(), 10)
    lines = out.decode().split()
    with open("/proc/sys/net/core/somaxconn") as f:  # noqa: ASYNC230 (procfs: never blocks)
        somaxconn = int(f.read())
    assert int(lines[2]) == min(somaxconn, 65535)


async def test_development_mode_says_so_loudly_and_uses_the_well_known_key(processes):
    server = await processes("--dev", PUSH_SERVICE_KEY="", PUSH_JWT_SECRET="")
    assert "DEVELOPMENT MODE" in server.log() and "never run --dev or --demo in production" in server.log()
    status, answer = await server.post("/api/community", {"token": DEV_SERVICE_KEY, "community_id": "k1"})
    assert status == 200 and answer["rooms"] == ["room:k1"]


async def test_websocket_handshakes_are_not_in_the_access_log(processes, client_factory):
    server = await processes()
    client = client_factory()
    await client.sio.connect(server.url, auth={"token": make_token("acc")}, transports=["websocket"])
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/health") as resp:
        assert resp.status == 200
    await client.close()
    log = server.log()
    assert "GET /api/health" in log  # the access log is on
    assert "transport=websocket" not in log and "/socket.io/" not in log


async def test_the_readme_walkthrough_prints_what_it_says(make_server, node_clients):
    # "See a message travel": a demo token, listen.js in room:lobby:general, the backend's curl.
    server = await make_server(demo=True, dev=True, service_key=DEV_SERVICE_KEY)
    status, answer = await server.post("/demo/token", {"user": "ann"})
    assert status == 200
    client = await node_clients(server.url, answer["token"], "room:lobby:general")
    await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    body = {"channel_id": "general", "message_id": "m1", "is_reply": False, "message": '{"body": "hello"}'}
    status, _ = await server.post("/api/message", {"token": DEV_SERVICE_KEY, **body})
    assert status == 200
    assert await client.next("new_msg") == {"event": "new_msg", "args": [body, "1"]}
