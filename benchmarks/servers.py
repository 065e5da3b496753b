"""The two servers under test: how each is started, and waiting for it to answer /api/health."""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: its command and its environment on top of the common one."""

    name: str
    label: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def environment(self, port: int, keys: Secrets) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PORT=str(port),
            PUSH_HOST="127.0.0.1",
            PUSH_SERVICE_KEY=keys.service_key,
            PUSH_JWT_SECRET=keys.jwt_secret,
        )
        env.update(dict(self.env))
        return env


def sio_push_spec(extra_env: Mapping[str, str], extra_args: Sequence[str], command: Sequence[str] | None) -> ServerSpec:
    argv = tuple(command) if command else (sys.executable, "-m", "sio_push")
    label = " ".join(("sio-push", *extra_args, *(f"{k}={v}" for k, v in extra_env.items())))
    return ServerSpec(SIO_PUSH, label, (*argv, *extra_args), tuple(extra_env.items()))


def node_spec(node: str) -> ServerSpec:
    return ServerSpec(NODE, "Node socket.io 4.8", (node, str(BENCH_DIR / "peer" / "server.js")))


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


async def _health_ok(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return status.split(b" ")[1:2] == [b"200"]
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve(
    spec: ServerSpec, keys: Secrets, *, log: Path, cpus: frozenset[int] | None, start_timeout: float = 30.0
) -> AsyncIterator[Running]:
    """Starts the server on a free port, yields once /api/health answers 200, stops it on the way out."""
    port = procs.free_port()
    proc = await procs.start(spec.argv, env=spec.environment(port, keys), cwd=REPO_DIR, log=log, cpus=cpus)
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
        yield Running(spec, port, proc.pid, log)
    finally:
        await procs.stop(proc)
