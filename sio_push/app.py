"""The application factory: `create_app(settings)` builds one complete server and touches no globals."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import api
from .auth import create_auth
from .config import Settings
from .engine import create_engine
from .fanout import Fanout
from .metrics import Metrics, get_metrics
from .server import PushServer
from .shims.aiohttp import SocketSite
from .shims.engineio import DirectSocket
from .sockets import Sockets
from .typedefs import AUTH, ENGINE, FANOUT, METRICS, SETTINGS, SIO, SOCKETS

log = logging.getLogger(__name__)

SOCKETIO_PATH = "socket.io"


def _cors(settings: Settings) -> str | list[str] | None:
    """Same-origin when unset; `*` for any origin; else the listed origins."""
    if not settings.cors_origins:
        return None
    return "*" if "*" in settings.cors_origins else list(settings.cors_origins)


def create_socket_server(settings: Settings) -> PushServer:
    return PushServer(
        async_mode="aiohttp",
        cors_allowed_origins=_cors(settings),
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_socket_message_bytes,
        transports=list(settings.transports),
        logger=logging.getLogger("socketio"),
        engineio_logger=logging.getLogger("engineio"),
    )


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start(app[FANOUT].deliver)
    yield
    await engine.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[AUTH].close()


async def _drain(app: web.Application) -> None:
    """On shutdown, close every transport so that clients reconnect (to another process) at once.

    An Engine.IO close, not a Socket.IO disconnect: the latter tells socket.io-client not to reconnect.
    """
    eio = app[SIO].eio
    sockets = list(eio.sockets.values())
    for socket in sockets:
        if isinstance(socket, DirectSocket):
            await socket.shut(eio.reason.SERVER_DISCONNECT)
        else:
            await socket.close(wait=False, abort=False, reason=eio.reason.SERVER_DISCONNECT)
    if sockets:
        log.info("closed %d sockets for shutdown", len(sockets))
    await app[SOCKETS].close()
    await app[SIO].shutdown()


def create_app(settings: Settings) -> web.Application:
    """Build the whole server: sockets at `/socket.io/`, the push API under `/api/`, the demo if asked."""
    app = web.Application(middlewares=[api.error_middleware])
    sio = create_socket_server(settings)
    sio.attach(app, SOCKETIO_PATH)
    engine = create_engine(settings)
    metrics = Metrics(settings.metrics_dir)
    fanout = Fanout(sio, metrics)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[SIO] = sio
    app[AUTH] = create_auth(settings)
    app[ENGINE] = engine
    app[FANOUT] = fanout
    app[SOCKETS] = Sockets(
        sio,
        app[AUTH],
        engine.presence,
        engine.broker,
        fanout,
        metrics=metrics,
        sessions=engine.sessions,
        node=engine.node_id,
        presence_batch=settings.presence_batch_seconds,
        connect_timeout=settings.connect_timeout_seconds,
    )
    app[SOCKETS].register()
    api.setup_routes(app)
    app.router.add_get("/metrics", get_metrics)
    if settings.demo:
        from .demo import setup_routes as setup_demo_routes

        setup_demo_routes(app)
    app.on_shutdown.append(_drain)
    app.cleanup_ctx.append(_engine_ctx)
    app.cleanup_ctx.append(_auth_ctx)
    return app


def create_site(runner: web.AppRunner, host: str | None, port: int, *, reuse_port: bool | None = None) -> SocketSite:
    """The listening site of an app of `create_app`: Socket.IO's websockets served by `transport.protocol.Front`."""
    app = runner.app
    return SocketSite(runner, app[SIO].eio, f"/{SOCKETIO_PATH}/", host, port, reuse_port=reuse_port)
