"""The backend's push API (HTTP, same port as the sockets): each valid push becomes one `Push` for the broker."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from marshmallow import Schema
from prometheus_client import CONTENT_TYPE_LATEST

from ..engines import Push
from ..errors import BackendUnavailable, BrokerUnavailable
from ..keys import ENGINE, METRICS, SETTINGS
from ..rooms import RoomKind, room_for
from .body import bearer, key_matches, read_push
from .middleware import Handler, answer, json_error
from .openapi import get_openapi
from .queries import get_presence, get_rooms
from .schemas import (
    BatchSchema,
    ChannelSchema,
    CommunitySchema,
    DisconnectSchema,
    EmitSchema,
    MessageSchema,
    UnsubscribeSchema,
    UserSchema,
)

log = logging.getLogger(__name__)


async def hand_over(request: web.Request, rooms: list[str], event: str, data: Any) -> dict[str, Any]:
    """Hand one push to the broker: the `/api/emit` answer (rooms, offset). Raises BrokerUnavailable."""
    rooms = list(dict.fromkeys(rooms))
    metrics = request.app[METRICS]
    with metrics.push_seconds.time():
        offset = await request.app[ENGINE].broker.publish(Push(tuple(rooms), event, data))
    log.debug("pushed %s to %s", event, ",".join(rooms))
    metrics.pushes.labels(request.path).inc()
    extra = {"offset": offset} if offset is not None else {}
    return {"status": 200, "rooms": rooms, **extra}


def _unavailable(rooms: list[str], **fields: Any) -> web.HTTPException:
    log.warning("push to %s not accepted: broker unavailable", ",".join(rooms))
    return json_error(web.HTTPServiceUnavailable, error="broker_unavailable", **fields)


async def publish(request: web.Request, rooms: list[str], event: str, data: Any) -> web.Response:
    """Hand one push to the broker and answer 200 with its rooms (and offset), or 503 if the broker can't take it."""
    try:
        return web.json_response(await hand_over(request, rooms, event, data))
    except BrokerUnavailable:
        raise _unavailable(rooms) from None


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    """What the browsers get: the body exactly as posted, less the service key."""
    return {k: v for k, v in body.items() if k != "token"}


async def post_message(request: web.Request) -> web.Response:
    body = await read_push(request, MessageSchema())
    rooms = []
    if body.get("channel_id"):
        rooms.append(room_for(RoomKind.LOBBY, body["channel_id"]))
    if body.get("thread_id"):
        rooms.append(room_for(RoomKind.TOPIC, body["thread_id"]))
    return await publish(request, rooms, "new_msg", _payload(body))


def _single_room(schema: Schema, kind: RoomKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await read_push(request, schema)
        return await publish(request, [room_for(kind, body[kind.value])], "new_msg", _payload(body))

    return handler


async def post_emit(request: web.Request) -> web.Response:
    body = await read_push(request, EmitSchema())
    return await publish(request, body["rooms"], body["event"], body["data"])


async def post_batch(request: web.Request) -> web.Response:
    """Every push of the batch, in order, each with its own offset; the whole batch was checked first.

    If the broker fails midway, the 503 lists the answers of the pushes it had accepted (in `results`).
    """
    body = await read_push(request, BatchSchema())
    results: list[dict[str, Any]] = []
    for push in body["pushes"]:
        try:
            results.append(await hand_over(request, push["rooms"], push["event"], push["data"]))
        except BrokerUnavailable:
            raise _unavailable(push["rooms"], results=results) from None
    return answer(200, results=results)


async def post_disconnect(request: web.Request) -> web.Response:
    """Disconnect a user's sockets (or one socket) on every process; older tokens of the user are refused."""
    body = await read_push(request, DisconnectSchema())
    engine = request.app[ENGINE]
    try:
        if "user_id" in body:
            await engine.revocations.revoke_user(body["user_id"], time.time())
            command = {"op": "disconnect", "user_id": body["user_id"]}
        else:
            command = {"op": "disconnect", "sid": body["sid"]}
        sockets = await engine.control.request(command)
    except BackendUnavailable:
        raise json_error(web.HTTPServiceUnavailable, error="backend_unavailable") from None
    log.info("disconnect of %s: %d sockets", "a user" if "user_id" in body else "a sid", sockets)
    return answer(200, sockets=sockets)


async def post_unsubscribe(request: web.Request) -> web.Response:
    """Take a room from a user on every process; joins with older tokens of the user are refused."""
    body = await read_push(request, UnsubscribeSchema())
    engine = request.app[ENGINE]
    user_id, room = body["user_id"], body["room"]
    try:
        await engine.revocations.revoke_room(user_id, room, time.time())
        sockets = await engine.control.request({"op": "unsubscribe", "user_id": user_id, "room": room})
    except BackendUnavailable:
        raise json_error(web.HTTPServiceUnavailable, error="backend_unavailable") from None
    log.info("unsubscribe from %s: %d sockets", room, sockets)
    return answer(200, sockets=sockets)


async def get_health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return answer(200)


async def get_ready(request: web.Request) -> web.Response:
    """Readiness: the broker can take a push now."""
    if await request.app[ENGINE].broker.check():
        return answer(200)
    return answer(503, error="broker_unavailable")


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus metrics; the service key is required (`Authorization: Bearer`) unless PUSH_METRICS_PUBLIC."""
    settings = request.app[SETTINGS]
    if not settings.metrics_public and not key_matches(bearer(request), settings.service_key):
        raise json_error(web.HTTPUnauthorized, error="unauthorized")
    metrics = request.app[METRICS]
    metrics.tasks.set(len(asyncio.all_tasks()))
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/message", post_message)
    app.router.add_post("/api/channel", _single_room(ChannelSchema(), RoomKind.LOBBY))
    app.router.add_post("/api/community", _single_room(CommunitySchema(), RoomKind.COMMUNITY))
    app.router.add_post("/api/user", _single_room(UserSchema(), RoomKind.USER))
    app.router.add_post("/api/emit", post_emit)
    app.router.add_post("/api/batch", post_batch)
    app.router.add_get("/api/presence/{room}", get_presence)
    app.router.add_get("/api/rooms", get_rooms)
    app.router.add_post("/api/disconnect", post_disconnect)
    app.router.add_post("/api/unsubscribe", post_unsubscribe)
    app.router.add_get("/api/health", get_health)
    app.router.add_get("/api/ready", get_ready)
    app.router.add_get("/api/openapi.json", get_openapi)
    app.router.add_get("/metrics", get_metrics)
