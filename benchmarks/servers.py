"""The two servers under test: how each is started, and waiting for it to answer /api/health."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procs

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
NODE_MODULES = BENCH_DIR / "node_modules"
SIO_PUSH = "sio-push"
NODE = "node"


@dataclass(frozen=True)
class Secrets:
    """The shared secrets of one benchmark run, given to both servers and to the load generator."""

    service_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))


# Written in a spec's settings where the URL of the run's own Redis goes (known once it is started).
REDIS_URL = "{redis_url}"
# The only variables taken from the harness's own environment: what finds programs and the user's files.
_INHERITED = ("PATH", "HOME")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: its command and every setting it gets.

    The server's environment is built from scratch: PATH and HOME, the common settings (port, host,
    secrets) and `env`, nothing else, so that a stray PUSH_* variable in the harness's environment cannot
    change what is measured. `settings()` is what the results file reports.
    """

    name: str
    label: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    redis_env: tuple[tuple[str, str], ...] = ()  # what puts this server on Redis (see with_redis)

    @property
    def uses_redis(self) -> bool:
        return any(REDIS_URL in value for _, value in self.env)

    def with_redis(self) -> ServerSpec:
        """The same server on the run's Redis (for the scenarios that need two processes sharing it)."""
        if self.uses_redis:
            return self
        label = f"{self.label}, on Redis"
        return dataclasses.replace(self, label=label, env=(*self.env, *self.redis_env))

    def with_env(self, note: str, pairs: Mapping[str, str]) -> ServerSpec:
        """The same server with more settings (a scenario's own, such as the peer's recovery)."""
        if not pairs:
            return self
        return dataclasses.replace(self, label=f"{self.label}, {note}", env=(*self.env, *pairs.items()))

    def environment(self, port: int, keys: Secrets, redis_url: str | None = None) -> dict[str, str]:
        env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        env.update(
            PORT=str(port),
            PUSH_HOST="127.0.0.1",
            PUSH_SERVICE_KEY=keys.service_key,
            PUSH_JWT_SECRET=keys.jwt_secret,
        )
        for name, value in self.env:
            if REDIS_URL in value and redis_url is None:
                raise procs.BenchError(f"{self.name} needs a Redis and the run has none")
            env[name] = value.replace(REDIS_URL, redis_url or "")
        return env

    def settings(self) -> dict[str, str]:
        """The command and every setting, secrets replaced by a placeholder, for the results file."""
        shown = {"command": " ".join(_short(a) for a in self.argv), "PORT": "(a free port)", "PUSH_HOST": "127.0.0.1"}
        shown |= {"PUSH_SERVICE_KEY": "(random, 32 bytes)", "PUSH_JWT_SECRET": "(random, 32 bytes)"}
        own = "redis://127.0.0.1:(the run's own redis-server)"
        shown |= {
            name: value.replace(REDIS_URL, own).replace(str(REPO_DIR), "(the repository)") for name, value in self.env
        }
        return shown


def _short(arg: str) -> str:
    """A path inside the repository is shown relative to it; the Python and node binaries by name."""
    path = Path(arg)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return str(path.relative_to(REPO_DIR))
        if path.name.startswith(("python", "node")):
            return path.name
    return arg


def sio_push_spec(
    extra_env: Mapping[str, str],
    extra_args: Sequence[str],
    command: Sequence[str] | None,
    *,
    processes: int = 1,
    redis: bool = False,
) -> ServerSpec:
    """sio-push: `python -m sio_push` from the repository (PYTHONPATH set to it), plus what was asked."""
    argv = tuple(command) if command else (sys.executable, "-m", "sio_push")
    args = [*extra_args, *(("--workers", str(processes)) if processes > 1 else ())]
    base = (("PYTHONPATH", str(REPO_DIR)),)
    redis_env = (("PUSH_REDIS_URL", REDIS_URL),)
    env = (*base, *(redis_env if redis or processes > 1 else ()), *extra_env.items())
    label = " ".join(("sio-push", *args))
    if any(name == "PUSH_REDIS_URL" for name, _ in env):
        label += ", on Redis"
    return ServerSpec(SIO_PUSH, label, (*argv, *args), env, redis_env)


def node_spec(node: str, *, processes: int = 1, redis: bool = False, adapter: str | None = None) -> ServerSpec:
    """The Node peer: one process, or `processes` under node's cluster module with an adapter between them.

    On Redis (asked, or by default with several processes) the adapter is @socket.io/redis-streams-adapter
    on the same Redis as sio-push; `adapter="cluster"` uses @socket.io/cluster-adapter instead.
    """
    redis_env = (("PEER_ADAPTER", "redis-streams"), ("PEER_REDIS_URL", REDIS_URL))
    env: tuple[tuple[str, str], ...] = ()
    if processes > 1:
        env += (("PEER_PROCESSES", str(processes)),)
    chosen = adapter or ("redis-streams" if redis or processes > 1 else "none")
    if chosen == "redis-streams":
        env += redis_env
    elif chosen == "cluster":
        env += (("PEER_ADAPTER", "cluster"),)
    label = "Node socket.io 4.8" + (f", {processes} processes" if processes > 1 else "")
    label += "" if chosen == "none" else f", {chosen} adapter"
    return ServerSpec(NODE, label, (node, str(BENCH_DIR / "peer" / "server.js")), env, redis_env)


def blaster_spec(node: str, batch_ms: int) -> ServerSpec:
    """The do-nothing server of `--calibrate`: one write per push and socket, or gathered over `batch_ms`."""
    how = "a write per push and socket" if batch_ms <= 0 else f"writes gathered over {batch_ms} ms"
    argv = (node, str(BENCH_DIR / "peer" / "blaster.js"))
    return ServerSpec(f"blaster-{batch_ms}ms", f"blaster ({how})", argv, (("BLAST_BATCH_MS", str(batch_ms)),))


@dataclass
class Running:
    """A started server: its port and the pid whose process tree is measured."""

    spec: ServerSpec
    port: int
    pid: int
    log: Path
    redis_url: str | None = None


async def _first_line(port: int, request: bytes) -> bytes | None:
    """Sends `request` to 127.0.0.1:`port` and returns the first line of the answer (None if none came)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readline(), 2.0)
    except (TimeoutError, OSError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _health_ok(port: int) -> bool:
    status = await _first_line(port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return status is not None and status.split(b" ")[1:2] == [b"200"]


@contextlib.asynccontextmanager
async def serve(
    spec: ServerSpec,
    keys: Secrets,
    *,
    log: Path,
    cpus: frozenset[int] | None,
    redis_url: str | None = None,
    start_timeout: float = 30.0,
) -> AsyncIterator[Running]:
    """Starts the server on a free port, yields once /api/health answers 200, stops it on the way out."""
    port = procs.free_port()
    env = spec.environment(port, keys, redis_url)
    proc = await procs.start(spec.argv, env=env, cwd=REPO_DIR, log=log, cpus=cpus)
    try:
        deadline = time.monotonic() + start_timeout
        while not await _health_ok(port):
            if proc.returncode is not None:
                raise procs.BenchError(f"{spec.name} exited with {proc.returncode} at start:\n{procs.tail(log)}")
            if time.monotonic() > deadline:
                raise procs.BenchError(
                    f"{spec.name} did not answer /api/health in {start_timeout:.0f}s:\n{procs.tail(log)}"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
        yield Running(spec, port, proc.pid, log, redis_url)
    finally:
        await procs.stop(proc)


async def _redis_ping(port: int) -> bool:
    return await _first_line(port, b"PING\r\n") == b"+PONG\r\n"


def redis_version(binary: str = "redis-server") -> str:
    """`redis-server --version`, for the results file."""
    import subprocess

    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "not found"
    return " ".join(out.split()[:3])


@contextlib.asynccontextmanager
async def redis_server(*, log: Path, cpus: frozenset[int] | None, binary: str = "redis-server") -> AsyncIterator[str]:
    """A fresh, empty redis-server on a free port (no persistence), for one run; yields its URL."""
    port = procs.free_port()
    argv = (binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
    proc = await procs.start(argv, env={"PATH": os.environ.get("PATH", "")}, cwd=REPO_DIR, log=log, cpus=cpus)
    try:
        deadline = time.monotonic() + 10.0
        while not await _redis_ping(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise procs.BenchError(f"redis-server did not start:\n{procs.tail(log)}")
            await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        await procs.stop(proc)
