"""Phoenix Channels on the same port, rooms, auth, presence and pushes as Socket.IO (SPEC §9).

The original Linen frontend speaks Phoenix Channels (`new Socket(URL + "/socket", {params: {token}})`);
this package serves it over the project's own websocket codec (`transport/`), so that frontend works
unchanged. `serializer.py` is the pure wire format, `endpoint.py` the handshake, `socket.py` one
connection, `channels.py` what a socket may do, `hub.py` the rooms. `create_phoenix` wires them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import Auth
from ..config import Settings
from ..engines import Engine
from ..metrics import Metrics
from ..sio import SocketLayer
from ..sio.counting import UserCount
from ..sio.revocation import Revoked
from .channels import Channels
from .endpoint import PhoenixEndpoint
from .hub import Hub


@dataclass(frozen=True)
class PhoenixLayer:
    """The Phoenix side of one app: its endpoint for the listening site, its channels for shutdown."""

    endpoint: PhoenixEndpoint
    channels: Channels


def create_phoenix(
    settings: Settings, auth: Auth, engine: Engine, sockets: SocketLayer, metrics: Metrics
) -> PhoenixLayer:
    """Serve Phoenix Channels beside Socket.IO layer `sockets`: its rooms, joins, presence, fan-out, and the
    engine's revocations and per-user socket counts."""
    hub = Hub()
    channels = Channels(
        auth,
        sockets.handlers.joins,
        sockets.tracker,
        hub,
        metrics,
        timeout=settings.phoenix_timeout_seconds,
        events_per_second=settings.events_per_second,
        max_message_bytes=settings.max_socket_message_bytes,
        max_buffer=settings.max_buffer_bytes,
        recheck_seconds=settings.auth_recheck_seconds if settings.callback_auth else 0.0,
        revoked=Revoked(engine.revocations),
        user_count=UserCount(engine.user_sockets, settings.max_sockets_per_user),
    )
    sockets.fanout.others = hub
    sockets.revoker.others = channels
    return PhoenixLayer(PhoenixEndpoint(channels, sockets.server.eio.allowed_origin), channels)
