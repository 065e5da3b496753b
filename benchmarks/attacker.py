"""The attacker's side of the wire for `benchmarks.redteam`: the server under attack and the ways to reach
it, a Socket.IO client on aiohttp's websocket that sends whatever it is told, and websockets written by
hand, frame by frame, for floods of frames no client library sends in one write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from sio_push.transport.frames import CLOSE, TEXT, ws_frame

PATH = "/socket.io/?EIO=4&transport="
WAIT = 5.0  # for one answer the server owes


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """`payload` in one frame as a client must send it: `ws_frame`'s frame, masked (RFC 6455 5.3)."""
    plain = ws_frame(payload, opcode)
    head, size = len(plain) - len(payload), len(payload)
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return bytes((plain[0], plain[1] | 0x80)) + plain[2:head] + mask + masked


@dataclass
class Target:
    """The server under attack, and what the attacks share to reach it."""

    url: str
    service_key: str
    jwt_secret: str
    scale: float
    http: aiohttp.ClientSession
    _users: itertools.count[int] = field(default_factory=itertools.count)

    def count(self, full: int) -> int:
        """`full` times the scale, at least 1."""
        return max(1, round(full * self.scale))

    def user(self) -> str:
        return f"redteam-{next(self._users)}"

    def auth(self, sub: str | None = None) -> dict[str, Any]:
        """A CONNECT payload with a token for `sub` (a new user if None), good for every room."""
        claims = {"sub": sub or self.user(), "rooms": ["room:*"], "exp": int(time.time()) + 600}
        return {"token": jwt.encode(claims, self.jwt_secret, algorithm="HS256")}

    async def post(self, path: str, body: bytes) -> tuple[int, str | None]:
        """POST a raw JSON body: the status, and Retry-After if the answer has one."""
        headers = {"Content-Type": "application/json"}
        async with self.http.post(self.url + path, data=body, headers=headers) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After")

    async def push(self, channel: str, **fields: Any) -> tuple[int, str | None]:
        body = {"token": self.service_key, "channel_id": channel, **fields}
        return await self.post("/api/channel", json.dumps(body).encode())

    async def healthy(self) -> bool:
        try:
            async with self.http.get(self.url + "/api/health", timeout=aiohttp.ClientTimeout(total=WAIT)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def tcp(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.url)
        return await asyncio.open_connection(parts.hostname, parts.port)


class Sio:
    """A Socket.IO client on aiohttp's websocket (namespace "/") that sends whatever it is told; it answers
    pings, and keeps the acks it is owed, the `new_msg` pushes it gets (payload, offset) and the close."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.closed = asyncio.Event()
        self.messages: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                text = message.data if message.type == aiohttp.WSMsgType.TEXT else ""
                if text == "2":
                    await self.ws.send_str("3")
                elif text.startswith(("40", "44")) and not self._reply.done():
                    self._reply.set_result(text)
                elif text.startswith('42["new_msg"'):
                    _, payload, *offset = json.loads(text[2:])
                    self.messages.put_nowait((payload, offset[0] if offset else None))
                elif text.startswith("43"):
                    ack_id, _, rest = text[2:].partition("[")
                    future = self._acks.pop(int(ack_id), None)
                    if future is not None and not future.done():
                        future.set_result((json.loads("[" + rest) or [None])[0])
        except (ConnectionError, aiohttp.ClientError):
            pass  # closed under a pong: the close is what the attack looks for
        finally:
            self.closed.set()
            if not self._reply.done():
                self._reply.set_result("")

    async def connect(self, auth: dict[str, Any]) -> dict[str, Any]:
        """Send CONNECT with `auth`; the data of the server's reply (`sid`, `pid`), or ConnectionRefusedError."""
        await self.ws.send_str("40" + json.dumps(auth))
        reply = await asyncio.wait_for(asyncio.shield(self._reply), WAIT)
        if not reply.startswith("40"):
            raise ConnectionRefusedError(f"CONNECT answered {reply[:100]!r}")
        return dict(json.loads(reply[2:]))

    async def emit(self, event: str, *args: Any) -> asyncio.Future[Any]:
        """Send `event` asking for an ack; the future of the ack's first argument."""
        ack_id = next(self._ids)
        future = self._acks[ack_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(f"42{ack_id}" + json.dumps([event, *args]))
        return future

    async def call(self, event: str, *args: Any) -> Any:
        return await asyncio.wait_for(await self.emit(event, *args), WAIT)

    async def next_message(self) -> tuple[Any, Any]:
        """The next push (payload, offset); ({}, None) if none comes within WAIT."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.messages.get(), WAIT)
        return {}, None

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def connected(t: Target, auth: dict[str, Any]) -> AsyncIterator[tuple[Sio, dict[str, Any]]]:
    """A `Sio` past its CONNECT, and the data of the server's reply (`sid`, `pid`); closed at the end."""
    sio = Sio(await t.http.ws_connect(t.url + PATH + "websocket", timeout=aiohttp.ClientWSTimeout(ws_close=WAIT)))
    try:
        yield sio, await sio.connect(auth)
    finally:
        await sio.close()


async def _text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The server's next text frame that is not a ping (pings are answered); None once it closes."""
    try:
        while True:
            first, second = await reader.readexactly(2)
            size = second & 0x7F
            if size > 125:
                size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
            payload = await reader.readexactly(size)
            if first & 0x0F == CLOSE:
                return None
            if payload == b"2":
                writer.write(client_frame(b"3"))
            elif first & 0x0F == TEXT:
                return payload
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def flood(t: Target, frames: bytes, last: int | None, seconds: float) -> tuple[dict[int, float], bool]:
    """Write `frames` (client frames) in one go on a websocket opened by hand, once it is connected, then
    read until the ack of event `last` (None: until the server closes), `seconds` at most in all: when
    each ack came, and whether the server closed the connection."""
    reader, writer = await t.tcp()
    acks: dict[int, float] = {}
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        head = f"GET {PATH}websocket HTTP/1.1\r\nHost: redteam\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        head += f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        writer.write(head.encode() + client_frame(b"40" + json.dumps(t.auth()).encode()))
        status = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).partition(b"\r\n")[0]
        if b" 101 " not in status:
            raise ConnectionRefusedError(f"handshake answered {status[:100]!r}")
        while not (text := await asyncio.wait_for(_text(reader, writer), WAIT) or b"").startswith(b"40"):
            if not text or text.startswith(b"44"):
                raise ConnectionRefusedError(f"CONNECT answered {text[:100]!r}")
        writer.write(frames)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while last is None or last not in acks:
                    if (message := await _text(reader, writer)) is None:
                        return acks, True
                    if message.startswith(b"43"):
                        acks[int(message[2:].partition(b"[")[0])] = time.monotonic()
        return acks, False
    finally:
        writer.transport.abort()  # what is still unsent goes nowhere


async def acks_within(futures: list[asyncio.Future[Any]], seconds: float) -> list[Any]:
    """The acks of `futures` that came within `seconds` (None for the others, which are cancelled)."""
    if futures:
        await asyncio.wait(futures, timeout=seconds)
    for future in futures:
        future.cancel()
    return [f.result() if f.done() and not f.cancelled() else None for f in futures]
