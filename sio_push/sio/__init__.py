"""The Socket.IO layer: the CONNECT path and recovery, the event handlers, presence sending, the fan-out.

`create_socket_layer` builds it on an engine; `SocketLayer` holds its parts for the app and the HTTP API.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..auth import Auth
from ..config import Settings
from ..engines import Engine
from ..metrics import Metrics
from ..shims.engineio import DirectSocket
from ..shims.socketio import PushServer
from ..tasks import paced
from ..transport.protocol import Bounds
from .connect import Connector
from .counting import UserCount
from .expiry import Expiry
from .fanout import Fanout
from .handlers import Handlers
from .members import Members
from .occupancy import RoomWatch
from .presence import PresenceTracker
from .revocation import Revoked, Revoker

log = logging.getLogger(__name__)

# Frames or Engine.IO packets a connection may send per client event of its rate (pongs, acks of
# upgrades, and some slack): what bounds the CPU one connection costs, whatever it sends.
PACKETS_PER_EVENT = 10
ENDING_SECONDS = 5.0  # after a drain, how long the disconnect handlers of the closed sockets may take


def _cors(settings: Settings) -> str | list[str] | None:
    """Same-origin when unset; `*` for any origin; else the listed origins."""
    if not settings.cors_origins:
        return None
    return "*" if "*" in settings.cors_origins else list(settings.cors_origins)


def create_server(settings: Settings) -> PushServer:
    server = PushServer(
        async_mode="aiohttp",
        cors_allowed_origins=_cors(settings),
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_socket_message_bytes,
        transports=list(settings.transports),
        logger=logging.getLogger("socketio"),
        engineio_logger=logging.getLogger("engineio"),
    )
    server.eio.bounds = Bounds(
        head_seconds=settings.head_timeout_seconds,
        body_seconds=settings.body_timeout_seconds,
        max_buffer=settings.max_buffer_bytes,
        packets_per_second=PACKETS_PER_EVENT * settings.events_per_second,
    )
    return server


@dataclass(frozen=True)
class SocketLayer:
    """The Socket.IO side of one app."""

    server: PushServer
    members: Members
    fanout: Fanout
    tracker: PresenceTracker
    watch: RoomWatch
    connector: Connector
    handlers: Handlers
    revoker: Revoker

    async def close(self, drain_seconds: float = 0.0) -> None:
        """On shutdown, close every transport so that clients reconnect (to another process), spread evenly
        over `drain_seconds` so that the others take them at a bearable rate (0: all at once).

        An Engine.IO close, not a Socket.IO disconnect: the latter tells socket.io-client not to reconnect.
        """
        eio = self.server.eio
        sockets = list(eio.sockets.values())
        if sockets:
            log.info("closing %d sockets for shutdown over %gs", len(sockets), drain_seconds)
        # A websocket is closed first, its disconnect handler (presence, counts, the session: on Redis,
        # round trips) left to run after, so that clients leave at the window's pace, not the handlers'.
        closing = []
        async for socket in paced(sockets, drain_seconds):
            if socket.closed:
                continue
            if isinstance(socket, DirectSocket):
                if not socket.drop():  # no websocket of ours (long polling): closed the Engine.IO way
                    closing.append(asyncio.create_task(socket.shut(eio.reason.SERVER_DISCONNECT)))
            else:
                closing.append(
                    asyncio.create_task(socket.close(wait=False, abort=False, reason=eio.reason.SERVER_DISCONNECT))
                )
        await asyncio.gather(*closing)
        for _ in range(int(ENDING_SECONDS / 0.05)):  # the dropped ones' handlers, for a few seconds at most
            if not eio.sockets:
                break
            await asyncio.sleep(0.05)
        if sockets:
            log.info("closed %d sockets for shutdown", len(sockets))
        await self.tracker.close()
        await self.server.shutdown()


def create_socket_layer(settings: Settings, auth: Auth, engine: Engine, metrics: Metrics) -> SocketLayer:
    server = create_server(settings)
    members = Members()
    fanout = Fanout(server, metrics)
    watch = RoomWatch(engine.occupancy)
    tracker = PresenceTracker(
        engine.presence, engine.broker, fanout, settings.presence_batch_seconds, settings.typing_seconds, watch
    )
    revoked = Revoked(engine.revocations)
    connector = Connector(
        server,
        auth,
        members,
        tracker,
        engine.broker,
        fanout,
        metrics,
        sessions=engine.sessions,
        node=engine.node_id,
        events_per_second=settings.events_per_second,
        revoked=revoked,
        user_count=UserCount(engine.user_sockets, settings.max_sockets_per_user),
    )
    server.attach_connector(connector, settings.connect_timeout_seconds)
    revoker = Revoker(server, auth, members, tracker, fanout, connector, engine.sessions)
    engine.control.serve(revoker.handle)
    expiry = Expiry(server, auth, members, revoked, revoker, settings.auth_recheck_seconds)
    connector.expiry = expiry
    handlers = Handlers(
        server,
        auth,
        members,
        connector,
        tracker,
        metrics,
        settings.max_rooms_per_socket,
        revoked=revoked,
        expiry=expiry,
    )
    handlers.register()
    return SocketLayer(server, members, fanout, tracker, watch, connector, handlers, revoker)
