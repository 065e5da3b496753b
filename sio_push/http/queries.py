"""The backend's read routes (SPEC §8): who is in a presence room, which rooms are occupied, over every process.

GET routes take the service key as `Authorization: Bearer` only (a GET has no body); a missing or wrong
key is 401 before any check of the request, then a bad query is 400 with marshmallow's field errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from marshmallow import Schema

from ..keys import ENGINE, SETTINGS
from ..rooms import parse_room
from .body import bearer, key_matches
from .middleware import answer, json_error
from .schemas import PresenceQuerySchema, RoomsQuerySchema

log = logging.getLogger(__name__)


def read_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The checked query parameters of a GET route, or 401 / 400 in the contract's order."""
    if not key_matches(bearer(request), request.app[SETTINGS].service_key):
        log.info("read refused on %s: missing or wrong service key", request.path)
        raise json_error(web.HTTPUnauthorized, error="unauthorized")
    query: Mapping[str, str] = request.query
    errors = schema.validate(query)
    if errors:
        raise json_error(web.HTTPBadRequest, error="invalid_query", errors=errors)
    loaded: dict[str, Any] = schema.load(query)
    return loaded


async def get_presence(request: web.Request) -> web.Response:
    """`GET /api/presence/<room>`: the room's counts and the state of its first `limit` users by user id."""
    query = read_query(request, PresenceQuerySchema())
    name = request.match_info["room"]
    room = parse_room(name)
    if room is None or not room.has_presence:
        raise json_error(web.HTTPBadRequest, error="invalid_room")
    engine = request.app[ENGINE]
    counts = await engine.occupancy.counts(name)
    state = await engine.presence.first(name, query["limit"])
    return answer(200, room=name, count={"users": counts.users, "sockets": counts.sockets}, state=state)


async def get_rooms(request: web.Request) -> web.Response:
    """`GET /api/rooms`: occupied rooms whose names start with `prefix`, in name order, after `after`."""
    query = read_query(request, RoomsQuerySchema())
    found = await request.app[ENGINE].occupancy.rooms(query["prefix"], query["after"], query["limit"])
    rooms = [{"room": name, "sockets": counts.sockets, "users": counts.users} for name, counts in found]
    return answer(200, rooms=rooms)
