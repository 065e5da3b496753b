#!/usr/bin/env python3
"""Connect to sio-push with a token, join rooms, and print every event received as one JSON line.

    python listen.py http://localhost:4000 "$TOKEN" room:lobby:general room:topic:t1

Needs `pip install "python-socketio[asyncio_client]"` (sio-push's own install has it). The server joins
the token's `user:<sub>` room by itself, so personal pushes arrive too. python-socketio has no connection
state recovery: after a reconnect this client joins its rooms again and a real app would refetch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

import socketio


def show(**line: Any) -> None:
    print(json.dumps(line), flush=True)


async def listen(url: str, token: str, rooms: list[str]) -> None:
    sio = socketio.AsyncClient(reconnection_delay=1, reconnection_delay_max=5)

    @sio.event
    async def connect() -> None:
        show(event="connect", sid=sio.get_sid())
        for room in rooms:
            show(event="ack", what="join", room=room, answer=await sio.call("join", room, timeout=10))

    @sio.event
    async def connect_error(error: Any) -> None:
        # a refusal says why in error["data"]["code"]: token_expired means fetch a new token and retry
        error = error if isinstance(error, dict) else {"message": str(error)}
        show(event="connect_error", message=error.get("message"), data=error.get("data"))

    @sio.event
    async def disconnect(reason: str = "") -> None:
        show(event="disconnect", reason=str(reason))

    @sio.on("*")
    async def any_event(event: str, *args: Any) -> None:
        # new_msg, presence_state, presence_diff, room_left, and whatever the backend emits
        show(event=event, args=list(args))

    try:
        await sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        show(event="failed", error=str(exc))
        sys.exit(1)
    await sio.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("rooms", nargs="*")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(listen(args.url, args.token, args.rooms))


if __name__ == "__main__":
    main()
