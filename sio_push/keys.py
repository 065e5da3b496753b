"""Typed keys of the application's state, kept apart so that any module can read the state without cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .admission import Admission
    from .auth import Auth
    from .config import Settings
    from .engines import Engine
    from .metrics import Metrics
    from .sio import SocketLayer

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
AUTH: web.AppKey[Auth] = web.AppKey("auth")
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SOCKETS: web.AppKey[SocketLayer] = web.AppKey("sockets")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")
