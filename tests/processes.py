"""sio-push as real processes (`python -m sio_push`), for the multi-process and entry-point tests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import SECRET, SERVICE_KEY, free_port

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """One `python -m sio_push` on 127.0.0.1 with a free port; its log goes to a file."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = args
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PUSH_", "AUTH_SERVICE"))},
            "PORT": str(self.port),
            "PUSH_HOST": "127.0.0.1",
            "PUSH_SERVICE_KEY": SERVICE_KEY,
            "PUSH_JWT_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.process: asyncio.subprocess.Process | None = None
        self.seen: set[int] = set()
        self._terminated = False

    async def start(self) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sio_push", *self.args, env=self.env, stdout=log, stderr=log, cwd=ROOT
            )
        await self.wait_ready()
        return self

    async def wait_ready(self, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"sio-push exited with {self.process.returncode}: {self.log()[-2000:]}")
                try:
                    async with http.get(self.url + "/api/health", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"sio-push did not answer on {self.url}: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.post(self.url + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def push(self, path: str, **fields: Any) -> tuple[int, Any]:
        return await self.post(path, {"token": SERVICE_KEY, **fields})

    def children(self) -> list[int]:
        """The pids of the worker processes (with --workers); every one seen is kept in `seen`."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:  # the supervisor has gone
            pids = []
        self.seen.update(pids)
        return pids

    async def workers(self, count: int, seconds: float = 15) -> list[int]:
        """The pids of the workers once `count` run and as many have logged that they listen (bounded)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            children = self.children()
            if len(children) == count and self.log().count("listening on") >= count:
                return children
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{count} workers did not start: {self.log()[-2000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.returncode is None:
            self._terminated = self._terminated or sig == signal.SIGTERM
            self.process.send_signal(sig)

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            if not self._terminated:  # a second SIGTERM would cut the graceful shutdown short
                self.kill(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


def alive(pid: int) -> bool:
    """Whether `pid` is a running sio-push (not a zombie, and not another process that reuses the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"sio_push" in command


async def outliving(pids: list[int], seconds: float = 5) -> list[int]:
    """The processes of `pids` still alive after waiting up to `seconds` for all of them to end."""
    deadline = time.monotonic() + seconds
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # nothing announces another process's end: poll /proc, bounded
        left = [pid for pid in left if alive(pid)]
    return left
