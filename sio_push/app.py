"""The application factory: `create_app(settings)` builds one complete server and touches no globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import http
from .admission import Admission, default_max_connections
from .auth import create_auth
from .config import Settings
from .engines import create_engine
from .heap import HeapTrim
from .keys import ADMISSION, AUTH, ENGINE, METRICS, PHOENIX, SETTINGS, SOCKETS
from .logs import install_client_error_filter
from .metrics import Metrics
from .phoenix import create_phoenix
from .shims.aiohttp import SocketSite, open_connections
from .sio import create_socket_layer
from .webhooks import Webhooks, webhooks_ctx

SOCKETIO_PATH = "socket.io"
# The kernel's queue of connections not yet accepted, as long as the kernel allows (it caps it at
# net.core.somaxconn, 4096 by default since Linux 5.4). In a crowd of handshakes a short queue overflows:
# a dropped SYN is retried by the client's kernel after 1, 3, 7 s... (past socket.io-client's 20 s timeout
# before the server ever sees it), and once SYN cookies are in play the kernel resets some connections
# outright (10,000 handshakes at once on Redis: 618 reset with 2048, none with 4096). Node uses 511.
BACKLOG = 65535


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start(app[SOCKETS].fanout.deliver)
    yield
    await engine.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[AUTH].close()


async def _close_sockets(app: web.Application) -> None:
    # One drain window for both protocols, shared in proportion to their sockets. Phoenix's go first, so
    # that their presence leaves are sent before the Socket.IO layer sends its last diffs and stops.
    drain, phoenix, sockets = app[SETTINGS].drain_seconds, app[PHOENIX].channels, app[SOCKETS]
    total = len(phoenix.hub) + len(sockets.server.eio.sockets)
    share = drain * len(phoenix.hub) / total if total else 0.0
    await phoenix.close(share)
    await sockets.close(drain - share)


def create_app(settings: Settings) -> web.Application:
    """Build the whole server: sockets at `/socket.io/` (Socket.IO) and `/socket/websocket` (Phoenix Channels),
    the push API under `/api/`, the demo if asked."""
    install_client_error_filter()  # aiohttp's lines about malformed requests: one line, no request text
    max_connections = settings.max_connections if settings.max_connections is not None else default_max_connections()
    admission = Admission(
        settings.connect_rate, max_connections, settings.connect_max_lag_ms / 1000, settings.max_connecting
    )
    app = web.Application(middlewares=[admission.middleware, http.error_middleware])
    app.cleanup_ctx.append(admission.watch_lag)
    app.cleanup_ctx.append(HeapTrim(settings.heap_trim_seconds).ctx)
    engine = create_engine(settings)
    metrics = Metrics(settings.metrics_dir)
    auth = create_auth(settings)
    sockets = create_socket_layer(settings, auth, engine, metrics)
    sockets.server.attach(app, SOCKETIO_PATH)
    app[SETTINGS] = settings
    app[ADMISSION] = admission
    app[METRICS] = metrics
    app[AUTH] = auth
    app[ENGINE] = engine
    app[SOCKETS] = sockets
    admission.count_connecting(lambda: len(sockets.server.connecting))
    app[PHOENIX] = create_phoenix(settings, auth, engine, sockets, metrics)
    http.setup_routes(app)
    if settings.demo:
        from .demo import setup_routes as setup_demo_routes

        setup_demo_routes(app)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_engine_ctx)
    app.cleanup_ctx.append(_auth_ctx)
    if settings.webhook_url and settings.webhook_secret:
        webhooks = Webhooks(settings, engine.occupancy, metrics)
        sockets.watch.add_listener(webhooks.changed)
        app.cleanup_ctx.append(webhooks_ctx(webhooks))
    return app


def create_site(runner: web.AppRunner, host: str | None, port: int, *, reuse_port: bool | None = None) -> SocketSite:
    """The listening site of an app of `create_app`: Socket.IO's and Phoenix's websockets served by our own
    transport."""
    app = runner.app
    admission = app[ADMISSION]
    server = runner.server
    if server is not None:
        admission.count_also(lambda: open_connections(server))
    eio = app[SOCKETS].server.eio
    path = f"/{SOCKETIO_PATH}/"
    endpoint = app[PHOENIX].endpoint
    return SocketSite(
        runner, eio, path, host, port, reuse_port=reuse_port, backlog=BACKLOG, gate=admission, endpoint=endpoint
    )
