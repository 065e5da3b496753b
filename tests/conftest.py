"""Real servers on 127.0.0.1 with free ports, real clients, tokens minted with pyjwt in the test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from aiohttp import web

from sio_push.app import create_app, create_site
from sio_push.config import Settings

from .node_client import NodeClient

SECRET = "test-secret-that-is-long-enough-for-hs256!"
SERVICE_KEY = "test-service-key-0123456789"
TIMEOUT = 5.0


def make_token(sub: str = "alice", *, rooms: list[str] | None = None, ttl: float = 300, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    if rooms is not None:
        payload["rooms"] = rooms
    return jwt.encode(payload, SECRET, algorithm="HS256")


ALL_ROOMS = ["room:*"]

PresenceView = dict[str, list[dict[str, Any]]]  # user -> metas


def apply_diff(view: PresenceView, diff: dict[str, Any]) -> PresenceView:
    """Phoenix's syncDiff: joins, then leaves by phx_ref; a new view."""
    view = {user: list(metas) for user, metas in view.items()}
    for user, entry in diff["joins"].items():
        refs = {meta["phx_ref"] for meta in entry["metas"]}
        view[user] = [m for m in view.get(user, []) if m["phx_ref"] not in refs] + entry["metas"]
    for user, entry in diff["leaves"].items():
        refs = {meta["phx_ref"] for meta in entry["metas"]}
        kept = [m for m in view.get(user, []) if m["phx_ref"] not in refs]
        if kept:
            view[user] = kept
        else:
            view.pop(user, None)
    return view


class Server:
    """A running sio-push on 127.0.0.1 with a free port."""

    def __init__(self, app: web.Application, runner: web.AppRunner, port: int) -> None:
        self.app = app
        self.runner = runner
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http:
            if body is not None:
                kwargs["json"] = body
            async with http.post(self.url + path, **kwargs) as resp:
                text = await resp.text()
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:
                    return resp.status, text

    async def push(self, path: str, **fields: Any) -> tuple[int, Any]:
        return await self.post(path, {"token": SERVICE_KEY, **fields})


async def start_server(settings: Settings) -> Server:
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = create_site(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Server(app, runner, port)


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run a plain aiohttp app (a stand-in for the backend) on a free port; its runner and base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def base_settings(**overrides: Any) -> Settings:
    # In-process servers share the event loop with the test's own clients, whose work would count as the
    # server's lateness: admission by the loop's lag is off unless a test asks for it (test_admission).
    settings = Settings(
        service_key=SERVICE_KEY, jwt_secret=SECRET, host="127.0.0.1", port=0, drain_seconds=0, connect_max_lag_ms=0
    )
    return dataclasses.replace(settings, **overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` of the test's own on a free port, nothing kept on disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed (Debian package redis-server; .ci/run installs it)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture(params=["memory"])
def engine(request) -> str:
    """Which engine the servers of a test run on; a module overrides it to run on both."""
    return str(request.param)


@pytest.fixture
async def make_server(request, engine: str) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []
    engine_settings: dict[str, Any] = {}
    if engine == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        engine_settings = {"redis_url": redis.url, "redis_prefix": f"test-{uuid.uuid4().hex[:8]}:"}

    async def factory(**overrides: Any) -> Server:
        server = await start_server(base_settings(**{**engine_settings, **overrides}))
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.runner.cleanup()


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Server]]) -> Server:
    return await make_server()


class Client:
    """A real `socketio.AsyncClient` whose every received event lands in a queue."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reconnection", False)
        self.sio = socketio.AsyncClient(**kwargs)
        self.events: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        self.connect_errors: asyncio.Queue[Any] = asyncio.Queue()
        self.presence: dict[str, dict[str, list[dict[str, Any]]]] = {}  # room -> user -> metas
        self._presence_changed = asyncio.Event()
        self.sio.on("*", self._on_event)
        self.sio.on("connect_error", self._on_connect_error)

    async def _on_event(self, event: str, *args: Any) -> None:
        if event == "presence_state":
            state = args[0]["state"]
            self.presence[args[0]["room"]] = {user: list(entry["metas"]) for user, entry in state.items()}
        elif event == "presence_diff":
            self.presence[args[0]["room"]] = apply_diff(self.presence.get(args[0]["room"], {}), args[0])
        self._presence_changed.set()
        self.events.put_nowait((event, args))

    async def presence_until(self, room: str, predicate: Callable[[dict[str, list[dict[str, Any]]]], bool]) -> dict:
        """Wait until this client's view of `room`'s presence satisfies `predicate`; the view."""
        deadline = time.monotonic() + TIMEOUT
        while not predicate(self.presence.get(room, {})):
            self._presence_changed.clear()
            await asyncio.wait_for(self._presence_changed.wait(), max(deadline - time.monotonic(), 0.001))
        return self.presence[room]

    async def _on_connect_error(self, data: Any) -> None:
        self.connect_errors.put_nowait(data)

    async def connect(self, server: Server, token: str | None = None, **kwargs: Any) -> None:
        auth = {"token": token} if token is not None else None
        kwargs.setdefault("transports", ["websocket"])
        await self.sio.connect(server.url, auth=auth, wait_timeout=TIMEOUT, **kwargs)

    async def refused(self, server: Server, token: str | None = None, **kwargs: Any) -> Any:
        """Connect expecting a refusal; the `data` of the CONNECT_ERROR (`{"code": ...}`)."""
        with pytest.raises(socketio.exceptions.ConnectionError):
            await self.connect(server, token, **kwargs)
        error = await asyncio.wait_for(self.connect_errors.get(), TIMEOUT)
        assert error["message"] == error["data"]["code"]
        return error["data"]

    async def call(self, event: str, *args: Any) -> Any:
        data = args if len(args) > 1 else args[0] if args else None
        return await self.sio.call(event, data, timeout=TIMEOUT)

    async def join(self, room: str) -> Any:
        return await self.call("join", room)

    async def next(self, *names: str) -> tuple[str, tuple[Any, ...]]:
        """The next received event, skipping those not named (when names are given)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            event, args = await asyncio.wait_for(self.events.get(), max(remaining, 0.001))
            if not names or event in names:
                return event, args

    async def next_msg(self) -> Any:
        return (await self.next("new_msg"))[1][0]

    def drain(self, *names: str) -> list[tuple[str, tuple[Any, ...]]]:
        """What has arrived so far and is not yet read (of the named events, when given)."""
        out = []
        while not self.events.empty():
            event, args = self.events.get_nowait()
            if not names or event in names:
                out.append((event, args))
        return out

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[[], Client]]:
    clients: list[Client] = []

    def factory(**kwargs: Any) -> Client:
        client = Client(**kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def connect(
    client_factory: Callable[[], Client],
) -> Callable[..., Awaitable[Client]]:
    async def factory(server: Server, sub: str = "alice", rooms: list[str] | None = None, **kwargs: Any) -> Client:
        client = client_factory()
        await client.connect(server, make_token(sub, rooms=ALL_ROOMS if rooms is None else rooms), **kwargs)
        return client

    return factory


@pytest.fixture
async def processes(tmp_path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Starts `python -m sio_push` processes; at the end stops them and fails if a worker outlives them."""
    from .processes import ServerProcess, outliving

    started: list[ServerProcess] = []

    async def start(*args: str, **env: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server-{len(started)}.log", *args, env=env)
        started.append(server)
        return await server.start()

    yield start
    leftovers: list[int] = []
    for server in started:
        if server.process is not None and server.process.returncode is None:
            server.children()  # the workers running now join those seen during the test
        await server.stop()
        leftovers += await outliving(sorted(server.seen))
    for pid in leftovers:  # cleaned up, but reported: a worker that outlives its supervisor is a bug
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"workers {leftovers} outlived their supervisor"


@pytest.fixture
def redis_env(redis_server: RedisServer) -> dict[str, str]:
    """The environment of processes that share `redis_server`, under a prefix of their own."""
    return {"PUSH_REDIS_URL": redis_server.url, "PUSH_REDIS_PREFIX": f"proc-{uuid.uuid4().hex[:8]}:"}


@pytest.fixture
async def node_clients() -> AsyncIterator[Callable[..., Awaitable[NodeClient]]]:
    clients: list[NodeClient] = []

    async def start(*args: Any, **kwargs: Any) -> NodeClient:
        client = await NodeClient.start(*args, **kwargs)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
