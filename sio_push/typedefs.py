"""Typed keys of the application's state, kept apart to avoid import cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .auth import Auth
    from .broker import Broker
    from .config import Settings
    from .fanout import Fanout
    from .presence import Presence
    from .server import PushServer
    from .sockets import Sockets

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SIO: web.AppKey[PushServer] = web.AppKey("sio")
AUTH: web.AppKey[Auth] = web.AppKey("auth")
BROKER: web.AppKey[Broker] = web.AppKey("broker")
FANOUT: web.AppKey[Fanout] = web.AppKey("fanout")
PRESENCE: web.AppKey[Presence] = web.AppKey("presence")
SOCKETS: web.AppKey[Sockets] = web.AppKey("sockets")
