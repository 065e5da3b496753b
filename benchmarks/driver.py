"""Drives the Node load generator (loadgen/main.js) through one scenario and reads its JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.servers import BENCH_DIR, Running, Secrets

Checkpoint = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class Window:
    """The measured window as the harness saw it: wall time and the server's CPU time in it."""

    wall_s: float
    server_cpu_s: float

    @property
    def server_cpu_pct(self) -> float:
        return 100.0 * self.server_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


async def run(
    config: dict[str, Any],
    *,
    server: Running,
    keys: Secrets,
    node: str,
    cpus: frozenset[int] | None,
    log: Path,
    time_limit: float,
    on_checkpoint: Checkpoint | None = None,
) -> tuple[dict[str, Any], Window | None]:
    """Runs one scenario; returns the generator's result and the window it measured."""
    full = {**config, "port": server.port, "secret": keys.jwt_secret, "key": keys.service_key}
    full.setdefault("deadline_s", time_limit)
    argv = [node, str(BENCH_DIR / "loadgen" / "main.js"), json.dumps(full)]
    proc = await procs.start(argv, env=os.environ, cwd=BENCH_DIR, log=log, cpus=cpus, stdin=True, stdout=True)
    try:
        async with asyncio.timeout(time_limit + 30):
            return await _converse(proc, server, log, on_checkpoint)
    except TimeoutError as exc:
        raise procs.BenchError(f"load generator ran over {time_limit + 30:.0f}s:\n{procs.tail(log)}") from exc
    finally:
        await procs.stop(proc)


async def _converse(
    proc: asyncio.subprocess.Process, server: Running, log: Path, on_checkpoint: Checkpoint | None
) -> tuple[dict[str, Any], Window | None]:
    if proc.stdout is None or proc.stdin is None:
        raise procs.BenchError("load generator started without pipes")
    window: Window | None = None
    started: tuple[float, float] | None = None
    while line := await proc.stdout.readline():
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        event = message.get("event")
        if event == "window_start":
            started = (time.monotonic(), procs.cpu_seconds(server.pid))
        elif event == "window_end" and started is not None:
            window = Window(time.monotonic() - started[0], procs.cpu_seconds(server.pid) - started[1])
        elif event == "checkpoint":
            if on_checkpoint is not None:
                await on_checkpoint(str(message.get("name")), message)
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        elif event == "result":
            await proc.wait()
            return message, window
        elif event == "error":
            raise procs.BenchError(f"load generator failed: {message.get('message')}")
    await proc.wait()
    raise procs.BenchError(f"load generator exited with {proc.returncode} and no result:\n{procs.tail(log)}")
