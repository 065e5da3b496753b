"""Admission of new connections (SPEC §6): a connect rate per process and a cap on open connections.

After a deploy or a network blip thousands of clients reconnect at once; admitting them all at once makes
every handshake slow (and past socket.io-client's 20 s connect timeout, a retry that costs again). New
connections (Socket.IO handshakes without a `sid`) beyond `PUSH_CONNECT_RATE` a second (burst five times
that) or beyond `PUSH_MAX_CONNECTIONS` open ones are answered 503 with `Retry-After` before any work is
done; socket.io-client retries after its own jittered delay. Requests with a `sid` (polls, upgrades) and
the push API are never refused.

`transport.protocol.Front` asks it for the websocket handshakes it serves itself; `middleware` asks it
for those aiohttp serves (long-polling handshakes).
"""

from __future__ import annotations

import logging
import math
import resource
from collections.abc import Awaitable, Callable

from aiohttp import web

from .limits import TokenBucket

log = logging.getLogger(__name__)

BURST = 5.0  # the bucket holds this many seconds of the rate
FULL_RETRY = 5  # Retry-After, in seconds, when the process holds its most connections


def default_max_connections() -> int | None:
    """90% of this process's file-descriptor limit (soft); None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else max(int(soft * 0.9), 1)


class Admission:
    """Decides whether a new connection is taken now; counts the open connections.

    :param rate: new connections a second (the bucket holds `BURST` seconds of it).
    :param max_connections: the most open at once; None for no cap.
    """

    def __init__(self, rate: float, max_connections: int | None) -> None:
        self._bucket = TokenBucket(rate, rate * BURST)
        self.max_connections = max_connections
        self._open = 0  # connections held by our own protocols (Front, Connection)
        self._others: Callable[[], int] = lambda: 0
        self.refused = 0

    def count_also(self, others: Callable[[], int]) -> None:
        """Count the connections `others()` says are open elsewhere (aiohttp's) as open too."""
        self._others = others

    @property
    def open(self) -> int:
        return self._open + self._others()

    def opened(self) -> None:
        self._open += 1

    def closed(self) -> None:
        self._open -= 1

    def retry_after(self) -> int:
        """0 to take a new connection now (using up its share of the rate), else seconds to come back after."""
        if self.max_connections is not None and self.open > self.max_connections:
            return self._refuse(FULL_RETRY, "open connections")
        if not self._bucket.take():
            return self._refuse(max(math.ceil(self._bucket.wait_time()), 1), "connect rate")
        return 0

    def _refuse(self, seconds: int, why: str) -> int:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:  # one line per thousand in a storm
            log.warning("new connection refused (over the %s); %d refused so far", why, self.refused)
        return seconds

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse an Engine.IO handshake that aiohttp serves (no `sid`) when over a limit."""
        if request.path.startswith("/socket.io/") and "sid" not in request.query:
            seconds = self.retry_after()
            if seconds:
                return web.Response(status=503, headers={"Retry-After": str(seconds)}, text="try again later")
        return await handler(request)
