"""Admission of new connections (SPEC §6): a connect rate per process, a cap on open connections, and
no new connection while the event loop runs late.

After a deploy or a network blip thousands of clients reconnect at once; admitting them all at once makes
every handshake slow (and past socket.io-client's 20 s connect timeout, a retry that costs again), and
every push late. New connections (Socket.IO handshakes without a `sid`, Phoenix handshakes) beyond
`PUSH_CONNECT_RATE` a second (burst five times that), beyond `PUSH_MAX_CONNECTIONS` open ones, or while the
event loop runs its timers more than `PUSH_CONNECT_MAX_LAG_MS` late are answered 503 with `Retry-After`
before any work is done; socket.io-client retries after its own jittered delay. The rate is a ceiling;
the loop's lateness is what fits the pace to what this process can do (more without Redis than with it,
less while it also fans out a lot). Requests with a `sid` (polls, upgrades) and the push API are never
refused.

`transport.protocol.Front` asks it for the websocket handshakes it serves itself; `middleware` asks it
for those aiohttp serves (long-polling handshakes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .limits import TokenBucket

log = logging.getLogger(__name__)

BURST = 5.0  # the bucket holds this many seconds of the rate
FULL_RETRY = 5  # Retry-After, in seconds, when the process holds its most connections
LATE_RETRY = 1  # Retry-After, in seconds, while the loop runs late
LAG_EVERY = 0.02  # seconds between two measures of the loop's lateness


def default_max_connections() -> int | None:
    """90% of this process's file-descriptor limit (soft); None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else max(int(soft * 0.9), 1)


class LoopLag:
    """How late the running event loop runs a timer: measured every `every` seconds, while started.

    A loop busy with more than it can do comes back to its timers late; the lateness of the last measure is
    `late`, in seconds (a measure not yet taken because the loop is busy counts as far as it has come).
    """

    def __init__(self, every: float = LAG_EVERY) -> None:
        self._every = every
        self._due = 0.0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def late(self) -> float:
        if self._timer is None:
            return 0.0
        overdue = asyncio.get_running_loop().time() - self._due
        return max(self._last, overdue)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._every
        self._timer = loop.call_at(self._due, self._measure)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last = 0.0

    def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._last = now - self._due
        self._due = now + self._every
        self._timer = loop.call_at(self._due, self._measure)


class Admission:
    """Decides whether a new connection is taken now; counts the open connections.

    :param rate: new connections a second (the bucket holds `BURST` seconds of it).
    :param max_connections: the most open at once; None for no cap.
    :param max_lag: refuse while the event loop runs its timers later than this, in seconds (0: never).
    :param max_connecting: the most new connections being set up at once (0: no cap), as `count_connecting`
        counts them.
    """

    def __init__(self, rate: float, max_connections: int | None, max_lag: float = 0.0, max_connecting: int = 0) -> None:
        self._bucket = TokenBucket(rate, rate * BURST)
        self.max_connections = max_connections
        self.max_lag = max_lag
        self.lag = LoopLag()
        self.max_connecting = max_connecting
        self._connecting: Callable[[], int] = lambda: 0
        self._open = 0  # connections held by our own protocols (Front, Connection)
        self._others: Callable[[], int] = lambda: 0
        self.refused = 0

    def count_also(self, others: Callable[[], int]) -> None:
        """Count the connections `others()` says are open elsewhere (aiohttp's) as open too."""
        self._others = others

    def count_connecting(self, connecting: Callable[[], int]) -> None:
        """Count as being set up what `connecting()` says (the sessions whose Socket.IO CONNECT is not answered)."""
        self._connecting = connecting

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
        if self.max_connecting and self._connecting() >= self.max_connecting:
            return self._refuse(LATE_RETRY, "connections being set up")
        if self.max_lag and self.lag.late > self.max_lag:
            return self._refuse(LATE_RETRY, "event loop's lag")
        if not self._bucket.take():
            return self._refuse(max(math.ceil(self._bucket.wait_time()), 1), "connect rate")
        return 0

    def _refuse(self, seconds: int, why: str) -> int:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:  # one line per thousand in a storm
            log.warning("new connection refused (over the %s); %d refused so far", why, self.refused)
        return seconds

    async def watch_lag(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: the loop's lateness is measured while the app runs."""
        if self.max_lag:
            self.lag.start()
        yield
        self.lag.stop()

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
