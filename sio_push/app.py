"""The application factory: `create_app(settings)` builds one complete server and touches no globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import http
from .auth import create_auth
from .config import Settings
from .engines import create_engine
from .keys import AUTH, ENGINE, METRICS, SETTINGS, SOCKETS
from .logs import install_client_error_filter
from .metrics import Metrics
from .shims.aiohttp import SocketSite
from .sio import create_socket_layer

SOCKETIO_PATH = "socket.io"


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start(app[SOCKETS].fanout.deliver)
    yield
    await engine.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[AUTH].close()


async def _close_sockets(app: web.Application) -> None:
    await app[SOCKETS].close()


def create_app(settings: Settings) -> web.Application:
    """Build the whole server: sockets at `/socket.io/`, the push API under `/api/`, the demo if asked."""
    install_client_error_filter()  # aiohttp's lines about malformed requests: one line, no request text
    app = web.Application(middlewares=[http.error_middleware])
    engine = create_engine(settings)
    metrics = Metrics(settings.metrics_dir)
    auth = create_auth(settings)
    sockets = create_socket_layer(settings, auth, engine, metrics)
    sockets.server.attach(app, SOCKETIO_PATH)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[AUTH] = auth
    app[ENGINE] = engine
    app[SOCKETS] = sockets
    http.setup_routes(app)
    if settings.demo:
        from .demo import setup_routes as setup_demo_routes

        setup_demo_routes(app)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_engine_ctx)
    app.cleanup_ctx.append(_auth_ctx)
    return app


def create_site(runner: web.AppRunner, host: str | None, port: int, *, reuse_port: bool | None = None) -> SocketSite:
    """The listening site of an app of `create_app`: Socket.IO's websockets served by our own transport."""
    eio = runner.app[SOCKETS].server.eio
    return SocketSite(runner, eio, f"/{SOCKETIO_PATH}/", host, port, reuse_port=reuse_port)
