"""The OpenAPI document of the push API, built from the same marshmallow schemas that validate it.

Served at `GET /api/openapi.json`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from .. import __version__
from .schemas import (
    BatchSchema,
    ChannelSchema,
    CommunitySchema,
    DisconnectSchema,
    EmitSchema,
    MessageSchema,
    PresenceQuerySchema,
    RoomsQuerySchema,
    UnsubscribeSchema,
    UserSchema,
)

_ROUTES = [
    ("/api/message", MessageSchema, "new_msg to room:lobby:<channel_id> and room:topic:<thread_id>"),
    ("/api/channel", ChannelSchema, "new_msg to room:lobby:<channel_id>"),
    ("/api/community", CommunitySchema, "new_msg to room:<community_id>"),
    ("/api/user", UserSchema, "new_msg to user:<user_id>"),
    ("/api/emit", EmitSchema, "any event, with data as its one argument, to any rooms"),
    ("/api/batch", BatchSchema, "1-100 /api/emit bodies, delivered in order, each with its own offset"),
]
_COUNTED = {"users": {"type": "integer"}, "sockets": {"type": "integer"}}
_COUNTS = {"type": "object", "properties": _COUNTED}

_ERRORS = {
    "401": "missing or wrong service key",
    "400": "a bad body: `errors` holds the problems by field",
    "413": "a body over the size limit",
    "415": "a body that is not JSON",
    "503": "the broker cannot take the push now; retry",
}

_REVOCATIONS = [
    (
        "/api/disconnect",
        DisconnectSchema,
        "disconnect every socket of `user_id` (or the one socket `sid`) on every process, for good: no "
        "recovery; for PUSH_REVOCATION_SECONDS the user's tokens issued before it are refused (token_revoked)",
    ),
    (
        "/api/unsubscribe",
        UnsubscribeSchema,
        "take `room` from `user_id` on every process (room_left, reason revoked); for PUSH_REVOCATION_SECONDS "
        "the user's tokens issued before it may not join it again",
    ),
]


def _answer(description: str, **extra: Any) -> dict[str, Any]:
    properties = {"status": {"type": "integer"}, **extra}
    return {"description": description, "content": {"application/json": {"schema": {"properties": properties}}}}


def _post(spec: APISpec, path: str, schema: type, summary: str, ok: dict[str, Any], description: str) -> None:
    """A POST route of the API: the service key, a JSON body of `schema`, `ok` or one of the errors."""
    spec.path(
        path=path,
        operations={
            "post": {
                "summary": summary,
                "description": description,
                "security": [{"serviceKey": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
                "responses": {"200": ok, **{code: _answer(text) for code, text in _ERRORS.items()}},
            }
        },
    )


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="sio-push push API",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "The backend's HTTP API: every push becomes a Socket.IO event in rooms."},
    )
    spec.components.security_scheme("serviceKey", {"type": "http", "scheme": "bearer"})
    ok = _answer(
        "accepted",
        rooms={"type": "array", "items": {"type": "string"}},
        offset={"type": "string", "description": "the push's place in the recovery log"},
    )
    push_note = "The key may also come as the body field `token`. Other fields pass through."
    for path, schema, summary in _ROUTES:
        _post(spec, path, schema, summary, ok, push_note)
    counted = _answer("done", sockets={"type": "integer", "description": "sockets acted on, over every process"})
    for path, schema, summary in _REVOCATIONS:
        _post(spec, path, schema, summary, counted, "The key may also come as the body field `token`.")
    _reads(spec)
    spec.path(path="/api/health", operations={"get": {"summary": "liveness", "responses": {"200": _answer("up")}}})
    spec.path(
        path="/api/ready",
        operations={
            "get": {
                "summary": "readiness: the broker can take a push",
                "responses": {"200": _answer("ready"), "503": _answer("broker unavailable")},
            }
        },
    )
    return spec.to_dict()


def _reads(spec: APISpec) -> None:
    """The GET routes of SPEC §8: key as `Authorization: Bearer` only, query checked by its schema."""
    room = {"in": "path", "name": "room", "required": True, "schema": {"type": "string"}, "description": "room:*"}
    listed = {"type": "array", "items": {"type": "object", "properties": {"room": {"type": "string"}, **_COUNTED}}}
    reads = [
        (
            "/api/presence/{room}",
            "a presence room's counts and the state of its first `limit` users by user id",
            [room, {"in": "query", "schema": PresenceQuerySchema}],
            _answer("the room", room={"type": "string"}, count=_COUNTS, state={"type": "object"}),
        ),
        (
            "/api/rooms",
            "occupied rooms whose names start with `prefix`, in name order, after `after`",
            [{"in": "query", "schema": RoomsQuerySchema}],
            _answer("the rooms", rooms=listed),
        ),
    ]
    errors = {"401": _answer("missing or wrong service key"), "400": _answer("a bad query or room")}
    for path, summary, parameters, ok in reads:
        get = {"summary": summary, "security": [{"serviceKey": []}], "parameters": parameters}
        spec.path(path=path, operations={"get": {**get, "responses": {"200": ok, **errors}}})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec())
