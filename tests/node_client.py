"""Drives the npm socket.io-client through `client_examples/listen.js`: JSON lines out, commands in."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "client_examples"
TIMEOUT = 10.0


class NodeClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, url: str, token: str | None, *rooms: str, env: dict[str, str] | None = None, script: str = "listen.js"
    ) -> NodeClient:
        """Run `script` of client_examples (listen.js: socket.io-client; phoenix-listen.js: phoenix.js)."""
        node = shutil.which("node")
        if node is None or not (EXAMPLES / "node_modules" / "socket.io-client").exists():
            pytest.fail("node and `npm ci --prefix client_examples` are needed (.ci/run does both)")
        args = [str(EXAMPLES / script), url, token or "", *rooms]
        process = await asyncio.create_subprocess_exec(
            node,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
        )
        return cls(process)

    async def next(self, *events: str, wait: float = TIMEOUT) -> dict[str, Any]:
        """The next line whose event is one of `events` (any line when none are named)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            raw = await asyncio.wait_for(self.process.stdout.readline(), max(remaining, 0.001))
            if not raw:
                raise EOFError(f"the node client exited with {await self.process.wait()}")
            line = json.loads(raw)
            if not events or line["event"] in events:
                return line

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
