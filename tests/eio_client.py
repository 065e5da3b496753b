"""A Socket.IO client written against the wire protocol, over aiohttp's websocket client.

python-socketio's client never sends `{pid, offset}` on CONNECT, so it cannot recover a session; this
one sends whatever CONNECT payload a test gives it, and keeps each event's offset (its last argument),
so that a test can present any offset it chooses.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

TIMEOUT = 5.0


class EioClient:
    """One Engine.IO session on a websocket, namespace "/", answering pings by itself."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self.events: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._next_ack = 0
        self._reply: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        self.sid = ""
        self.pid: str | None = None

    @classmethod
    async def connect(cls, url: str, auth: dict[str, Any]) -> EioClient:
        """Open a session and send CONNECT with `auth`; raises `Refused` with the CONNECT_ERROR's data."""
        http = aiohttp.ClientSession()
        try:
            ws = await asyncio.wait_for(http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket"), TIMEOUT)
        except BaseException:
            await http.close()
            raise
        client = cls(http, ws)
        try:
            await ws.send_str("40" + json.dumps(auth))
            kind, data = await asyncio.wait_for(asyncio.shield(client._reply), TIMEOUT)
            if kind == "error":
                raise Refused(data)
        except BaseException:
            await client.close()
            raise
        client.sid, client.pid = data["sid"], data.get("pid")
        return client

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            text: str = message.data
            if text == "2":
                await self._ws.send_str("3")
            elif text.startswith(("40", "44")) and not self._reply.done():
                self._reply.set_result(("ok" if text[1] == "0" else "error", json.loads(text[2:])))
            elif text.startswith("42"):
                event, *args = json.loads(text[2:])
                self.events.put_nowait((event, args))
            elif text.startswith("43"):
                ack_id, _, rest = text[2:].partition("[")
                future = self._acks.pop(int(ack_id), None)
                if future is not None and not future.done():
                    future.set_result(json.loads("[" + rest))

    async def call(self, event: str, data: Any) -> Any:
        """Emit `event` with an ack; the ack's first argument."""
        ack_id, self._next_ack = self._next_ack, self._next_ack + 1
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        await self._ws.send_str(f"42{ack_id}" + json.dumps([event, data]))
        return (await asyncio.wait_for(future, TIMEOUT))[0]

    async def join(self, room: str) -> Any:
        return await self.call("join", room)

    async def messages(self, count: int, wait: float = TIMEOUT) -> list[tuple[Any, str]]:
        """The next `count` `new_msg` events as (payload, offset), skipping other events, within `wait` s."""
        out: list[tuple[Any, str]] = []
        deadline = time.monotonic() + wait
        while len(out) < count:
            event, args = await asyncio.wait_for(self.events.get(), max(deadline - time.monotonic(), 0.001))
            if event == "new_msg":
                out.append((args[0], args[-1]))
        return out

    def pending(self, event: str = "new_msg") -> list[list[Any]]:
        """The arguments of the `event` events received and not yet read."""
        out = []
        while not self.events.empty():
            name, args = self.events.get_nowait()
            if name == event:
                out.append(args)
        return out

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()


class Refused(Exception):
    """A CONNECT answered with CONNECT_ERROR; `data` is its payload (`{"message", "data": {"code"}}`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.data = data
