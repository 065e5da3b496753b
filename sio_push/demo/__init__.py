"""A small demo chat at `/demo`, served only with `--demo` (development).

The server mints development tokens for any name, and the send box posts through the same push path as
the backend API (`http.publish`), so a newcomer sees a message travel HTTP -> broker -> sockets at once.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from aiohttp import web

from .. import http
from ..errors import AuthError
from ..keys import AUTH, SETTINGS
from ..rooms import RoomKind, is_valid_id, parse_room, room_for

HERE = Path(__file__).parent
TOKEN_SECONDS = 3600
MAX_TEXT = 2000


async def _json(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "invalid_json"}', content_type="application/json")
    return body


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(HERE / "index.html")


async def client_library(request: web.Request) -> web.FileResponse:
    return web.FileResponse(HERE / "socket.io.min.js")


async def phoenix_library(request: web.Request) -> web.FileResponse:
    """phoenix.js, for the demo's Phoenix Channels switch (how Linen's original frontend connected)."""
    return web.FileResponse(HERE / "phoenix.min.js")


async def token(request: web.Request) -> web.Response:
    """A development token for any valid name, allowed into every `room:*` room."""
    body = await _json(request)
    user = body.get("user")
    settings = request.app[SETTINGS]
    if not is_valid_id(user):
        return web.json_response({"error": "user must be 1-128 characters of A-Za-z0-9_.-"}, status=400)
    if not settings.jwt_secret:
        return web.json_response({"error": "the demo mints tokens only with a JWT secret"}, status=409)
    claims = {"sub": user, "exp": int(time.time()) + TOKEN_SECONDS, "rooms": ["room:*"]}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return web.json_response({"token": jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithms[0])})


async def send(request: web.Request) -> web.Response:
    """Post a message as the token's user into a channel it may join, Linen-shaped."""
    auth = request.app[AUTH]
    scheme, _, user_token = request.headers.get("Authorization", "").partition(" ")
    try:
        identity = await auth.authenticate(user_token if scheme.lower() == "bearer" else None)
    except AuthError as exc:
        return web.json_response({"error": exc.code}, status=401)
    body = await _json(request)
    channel, text = body.get("channel_id"), body.get("text")
    room = parse_room(room_for(RoomKind.LOBBY, channel)) if isinstance(channel, str) else None
    if room is None or not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
        return web.json_response({"error": f"channel_id and text (1-{MAX_TEXT} characters) are required"}, status=400)
    if not await auth.may_join(identity, room):
        return web.json_response({"error": "unauthorized"}, status=403)
    message_id = str(uuid.uuid4())
    message = {"id": message_id, "body": text, "author": identity.user_id, "sentAt": int(time.time() * 1000)}
    payload = {
        "channel_id": channel,
        "message_id": message_id,
        "imitation_id": body.get("imitation_id") if isinstance(body.get("imitation_id"), str) else None,
        "is_thread": True,
        "is_reply": False,
        "message": json.dumps(message),
    }
    return await http.publish(request, [room.name], "new_msg", payload)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/demo", page)
    app.router.add_get("/demo/socket.io.min.js", client_library)
    app.router.add_get("/demo/phoenix.min.js", phoenix_library)
    app.router.add_post("/demo/token", token)
    app.router.add_post("/demo/send", send)
