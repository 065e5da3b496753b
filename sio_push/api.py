"""The backend's push API (HTTP, same port as the sockets).

The order of checks is part of the contract: a body over the limit is 413 before anything else; then a
missing or wrong service key is 401; then a bad body is 400 (415 for a content type that is not JSON).
A valid push becomes one `Push` handed to the broker. Errors become JSON answers in one middleware.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from marshmallow import Schema

from .engines import Push
from .errors import BrokerUnavailable
from .openapi import get_openapi
from .rooms import RoomKind, room_for
from .schemas import ChannelSchema, CommunitySchema, EmitSchema, MessageSchema, UserSchema
from .typedefs import ENGINE, METRICS, SETTINGS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answer(status: int, **fields: Any) -> web.Response:
    return web.json_response({"status": status, **fields}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of the API is a JSON answer; nothing internal reaches the caller."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            request.app[METRICS].push_errors.labels(str(exc.status)).inc()
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _answer(exc.status, error=exc.reason.lower().replace(" ", "_"))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _answer(500, error="internal_error")


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` bytes (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are not JSON; a browser could not parse them back."""
    raise ValueError(name)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _is_json_type(request: web.Request) -> bool:
    if "Content-Type" not in request.headers:
        return True
    mime = request.content_type
    return mime == "application/json" or mime.endswith("+json")


async def read_push(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The validated body, or the HTTP error the contract gives for it."""
    settings = request.app[SETTINGS]
    raw = await _read_body(request, settings.max_body_bytes)
    if raw is None:
        raise web.HTTPRequestEntityTooLarge(
            max_size=settings.max_body_bytes,
            actual_size=request.content_length or settings.max_body_bytes + 1,
            text=json.dumps({"status": 413, "error": "body_too_large", "limit": settings.max_body_bytes}),
            content_type="application/json",
        )
    body: Any = None
    parse_error: str | None = None
    if not _is_json_type(request):
        parse_error = "unsupported_media_type"
    else:
        try:
            body = json.loads(raw, parse_constant=_refuse_constant) if raw else None
        except (ValueError, UnicodeDecodeError):
            parse_error = "invalid_json"
    key = _bearer(request)
    if key is None and isinstance(body, dict) and isinstance(body.get("token"), str):
        key = body["token"]
    if key is None or not hmac.compare_digest(key.encode(), settings.service_key.encode()):
        log.info("push refused on %s: missing or wrong service key", request.path)
        raise _json_error(web.HTTPUnauthorized, error="unauthorized")
    if parse_error == "unsupported_media_type":
        raise _json_error(web.HTTPUnsupportedMediaType, error=parse_error)
    if parse_error is not None or not isinstance(body, dict):
        raise _json_error(web.HTTPBadRequest, error="invalid_json", errors={"_schema": ["body must be a JSON object"]})
    errors = schema.validate(body)
    if errors:
        raise _json_error(web.HTTPBadRequest, error="invalid_body", errors=errors)
    return body


def _json_error(cls: type[web.HTTPException], **fields: Any) -> web.HTTPException:
    status = cls.status_code
    return cls(text=json.dumps({"status": status, **fields}), content_type="application/json")


async def publish(request: web.Request, rooms: list[str], event: str, data: Any) -> web.Response:
    """Hand one push to the broker and answer 200 with its rooms (and offset), or 503 if the broker can't take it."""
    rooms = list(dict.fromkeys(rooms))
    metrics = request.app[METRICS]
    try:
        with metrics.push_seconds.time():
            offset = await request.app[ENGINE].broker.publish(Push(tuple(rooms), event, data))
    except BrokerUnavailable:
        log.warning("push to %s not accepted: broker unavailable", ",".join(rooms))
        raise _json_error(web.HTTPServiceUnavailable, error="broker_unavailable") from None
    log.info("pushed %s to %s", event, ",".join(rooms))
    metrics.pushes.labels(request.path).inc()
    extra = {"offset": offset} if offset is not None else {}
    return _answer(200, rooms=rooms, **extra)


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


async def get_health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return _answer(200)


async def get_ready(request: web.Request) -> web.Response:
    """Readiness: the broker can take a push now."""
    if await request.app[ENGINE].broker.check():
        return _answer(200)
    return _answer(503, error="broker_unavailable")


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/message", post_message)
    app.router.add_post("/api/channel", _single_room(ChannelSchema(), RoomKind.LOBBY))
    app.router.add_post("/api/community", _single_room(CommunitySchema(), RoomKind.COMMUNITY))
    app.router.add_post("/api/user", _single_room(UserSchema(), RoomKind.USER))
    app.router.add_post("/api/emit", post_emit)
    app.router.add_get("/api/health", get_health)
    app.router.add_get("/api/ready", get_ready)
    app.router.add_get("/api/openapi.json", get_openapi)
