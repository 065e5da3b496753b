"""Typed keys of the application's state, kept apart to avoid import cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .auth import Auth
    from .config import Settings
    from .engines import Engine
    from .fanout import Fanout
    from .metrics import Metrics
    from .server import PushServer
    from .sockets import Sockets

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SIO: web.AppKey[PushServer] = web.AppKey("sio")
AUTH: web.AppKey[Auth] = web.AppKey("auth")
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
FANOUT: web.AppKey[Fanout] = web.AppKey("fanout")
SOCKETS: web.AppKey[Sockets] = web.AppKey("sockets")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
