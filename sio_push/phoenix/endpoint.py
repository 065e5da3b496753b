"""The Phoenix handshake, `GET /socket/websocket?token=...&vsn=2.0.0`, taken over from `transport.protocol.Front`.

The token comes as the `token` parameter (phoenix.js `params`), or as phoenix 1.8's `authToken`: the
subprotocol `base64url.bearer.phx.<base64 of the token, padding stripped>` offered with `phoenix`, which
the answer then names. phoenix.js encodes it with `btoa`, so both base64 alphabets are read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

from ..transport.handshake import origin_environ, parse_websocket, unavailable_response
from ..transport.protocol import Gate
from .channels import Channels
from .serializer import V1, V2
from .socket import FORBIDDEN, PhoenixSocket

log = logging.getLogger(__name__)

PATH = "/socket/websocket"
SUBPROTOCOL = "phoenix"
AUTH_TOKEN_PREFIX = "base64url.bearer.phx."


def serializer_version(query: dict[str, list[str]]) -> str | None:
    """The serializer a client asks for with `vsn` (none: 1.0.0, as Phoenix); None for one not served."""
    vsn = query.get("vsn", [V1])[-1]
    if vsn.startswith("2.0."):
        return V2
    if vsn.startswith("1.0."):
        return V1
    return None


def token_of(query: dict[str, list[str]], protocols: str | None) -> tuple[object, str | None]:
    """The token and the subprotocol to answer with: `authToken` if offered, else the `token` parameter.

    A subprotocol list with `phoenix` is answered `phoenix` (a client that offers subprotocols fails a
    handshake that names none). An `authToken` that is not base64 gives an empty token, refused later.
    """
    token: object = None
    chosen = None
    offered = [part.strip() for part in protocols.split(",")] if protocols else []
    if SUBPROTOCOL in offered:
        chosen = SUBPROTOCOL
        for part in offered:
            if part.startswith(AUTH_TOKEN_PREFIX):
                token = _unbase64(part[len(AUTH_TOKEN_PREFIX) :])
                break
    if token is None:
        values = query.get("token")
        token = values[0] if values else None
    return token, chosen


def _unbase64(text: str) -> str:
    standard = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return ""


class PhoenixEndpoint:
    """`transport.protocol.Endpoint` for Phoenix Channels: takes the handshakes of `PATH`.

    :param channels: what the sockets may do.
    :param allowed_origin: the origin check Socket.IO's handshakes get (`PUSH_CORS_ORIGINS`), applied
                           to these too, so one setting governs both.
    """

    path = PATH

    def __init__(self, channels: Channels, allowed_origin: Callable[[dict[str, str]], bool]) -> None:
        self._channels = channels
        self._allowed_origin = allowed_origin

    def take(self, transport: asyncio.Transport, head: bytes, rest: bytes, gate: Gate) -> bool:
        ws = parse_websocket(head, PATH)
        if ws is None:
            return False  # aiohttp answers what is not a websocket handshake
        retry_after = gate.retry_after()
        if retry_after:  # admission (SPEC §6): as a Socket.IO handshake over the limits
            transport.write(unavailable_response(retry_after))
            transport.close()
            return True
        query = parse_qs(ws.query)
        vsn = serializer_version(query)
        scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        if vsn is None or not self._allowed_origin(origin_environ(ws.headers, scheme)):
            log.info("phoenix handshake refused: %s", "serializer version" if vsn is None else "origin")
            transport.write(FORBIDDEN)
            transport.close()
            return True
        token, protocol = token_of(query, ws.headers.get("sec-websocket-protocol"))
        PhoenixSocket(transport, self._channels, vsn, gate).open(ws.key, token, protocol, rest)
        return True
