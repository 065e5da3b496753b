"""Webhooks to the backend (SPEC §8): rooms occupied and vacated, members added and removed; signed, batched, retried.

Each process sends the events of the transitions it made: the Occupancy Changes of its own sockets, and
those it reaped from a process that died. The occupancy's shared marks make each event go once over
every process: "occupied" and "added" are sent only by the Change that sets the mark, "vacated" and
"removed" only by the one that clears it, after the grace, and only if the room (or the user in it) is
still empty then; two processes racing on one room are ordered by the shared counters. Sockets and pushes
never wait for any of this: a Change is queued, and this process's own tasks do the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from .config import Settings
from .engines import Change, Occupancy
from .errors import BackendUnavailable
from .metrics import Metrics
from .tasks import stop

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sio-Push-Signature"
GATHER_SECONDS = 1.0  # the longest an event waits for others to share its request
MAX_EVENTS = 100  # events in one request
MAX_BACKOFF = 30.0
FLUSH_SECONDS = 2.0  # at shutdown, how long past the grace the last events may take to leave

Event = dict[str, str]


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _event(name: str, change: Change, member: bool) -> Event:
    return {"name": name, "room": change.room, **({"user_id": change.user_id} if member else {})}


class Webhooks:
    """Turns this process's Occupancy Changes of `room:*` rooms into signed webhook requests.

    :param occupancy: the engine's occupancy (its counts and shared marks).
    """

    def __init__(self, settings: Settings, occupancy: Occupancy, metrics: Metrics) -> None:
        if not settings.webhook_url or not settings.webhook_secret:
            raise ValueError("webhooks need a URL and a secret")
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret
        self._grace = settings.webhook_grace_seconds
        self._retry = settings.webhook_retry_seconds
        self._backoff = settings.webhook_backoff_seconds
        self._timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        self._max_pending = settings.webhook_max_pending
        self._occupancy = occupancy
        self._metrics = metrics
        self._changes: collections.deque[Change] = collections.deque()  # to be read against the shared marks
        self._graces: collections.deque[tuple[float, Change]] = collections.deque()  # exits, by deadline
        self._events: collections.deque[Event] = collections.deque()  # to be sent
        self._woken = {name: asyncio.Event() for name in ("changes", "graces", "events")}
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self._sending = False
        self._idle = asyncio.Event()  # set when nothing is queued, waiting or being sent
        self._idle.set()

    async def changed(self, change: Change) -> None:
        """A RoomWatch listener: note the Change and return at once."""
        if not change.room.startswith("room:") or not (change.room_changed or change.member_changed):
            return
        if len(self._changes) + len(self._graces) >= self._max_pending:
            self._dropped("queue_full")
            return
        self._changes.append(change)
        self._idle.clear()
        self._woken["changes"].set()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run("changes", self._read_changes), name="webhook changes"),
            loop.create_task(self._run("graces", self._end_graces), name="webhook graces"),
            loop.create_task(self._run("events", self._send_events), name="webhook sender"),
        ]

    async def close(self) -> None:
        """Let the last graces end and their events leave (bounded), then stop.

        Waiting out the grace is what keeps a drain silent and still correct: the users who reconnect
        elsewhere meanwhile are found back in the shared counts, and the others are reported gone.
        """
        if self._tasks:
            self._check_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._grace + FLUSH_SECONDS)
        await stop(*self._tasks)
        if self._http is not None:
            await self._http.close()
        pending = len(self._changes) + len(self._graces) + len(self._events)
        if pending:
            log.info("webhooks: %d pending changes and events not sent at shutdown", pending)

    async def _run(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Call `step` whenever its queue has something; a failing step is logged, never fatal.

        Each step takes the item it failed on off its queue, so trying again at once always ends.
        """
        woken = self._woken[name]
        while True:
            await woken.wait()
            woken.clear()
            try:
                await step()
            except BackendUnavailable as exc:
                self._dropped("backend")
                log.warning("webhooks: the shared backend is unavailable (%s); an event lost", exc)
                woken.set()
            except Exception:
                log.exception("webhooks: unexpected error in %s", name)
                woken.set()
            self._check_idle()

    def _check_idle(self) -> None:
        if self._changes or self._graces or self._events or self._sending:
            self._idle.clear()
        else:
            self._idle.set()

    async def _read_changes(self) -> None:
        """Enters send now (when they set a mark); exits wait for the grace."""
        while self._changes:
            change = self._changes[0]  # taken off when done, so that `close` sees work in progress
            try:
                if not change.entered:
                    self._graces.append((time.monotonic() + self._grace, change))
                    self._woken["graces"].set()
                    continue
                if change.room_changed and await self._occupancy.announce(change.room):
                    self._add(_event("room_occupied", change, member=False))
                if change.member_changed and await self._occupancy.announce(change.room, change.user_id):
                    self._add(_event("member_added", change, member=True))
            finally:
                self._changes.popleft()

    async def _end_graces(self) -> None:
        """An exit's events go once its grace has passed, if the user (room) is still gone: checked then."""
        while self._graces:
            deadline, change = self._graces[0]
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            try:
                if change.member_changed and await self._occupancy.retract(change.room, change.user_id):
                    self._add(_event("member_removed", change, member=True))
                if change.room_changed and await self._occupancy.retract(change.room):
                    self._add(_event("room_vacated", change, member=False))
            finally:
                self._graces.popleft()

    def _add(self, event: Event) -> None:
        if len(self._events) >= self._max_pending:
            self._dropped("queue_full")
            return
        self._events.append(event)
        self._woken["events"].set()

    def _dropped(self, reason: str, count: int = 1) -> None:
        self._metrics.webhook_events_dropped.labels(reason).inc(count)
        if reason == "queue_full":
            log.warning("webhooks: pending queue full (%d); an event was dropped", self._max_pending)

    async def _send_events(self) -> None:
        """Requests of up to 100 events, each event waiting at most a second for others; one at a time, in order."""
        woken = self._woken["events"]
        while self._events:
            gather_until = time.monotonic() + GATHER_SECONDS
            while len(self._events) < MAX_EVENTS and (left := gather_until - time.monotonic()) > 0:
                woken.clear()
                try:
                    await asyncio.wait_for(woken.wait(), left)
                except TimeoutError:
                    break
            batch = [self._events.popleft() for _ in range(min(MAX_EVENTS, len(self._events)))]
            self._sending = True
            try:
                await self._deliver(batch)
            finally:
                self._sending = False

    async def _deliver(self, events: list[Event]) -> None:
        """POST one request until a 2xx answer, backing off, for at most the retry time; then drop it."""
        body = json.dumps({"time_ms": int(time.time() * 1000), "events": events}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self._secret)}
        give_up = time.monotonic() + self._retry
        wait = self._backoff
        tries = 0
        while True:
            tries += 1
            if await self._post(body, headers):
                self._metrics.webhooks.labels("sent").inc()
                return
            self._metrics.webhooks.labels("failed").inc()
            if time.monotonic() + wait > give_up:
                log.warning("webhooks: dropped a request of %d events after %d tries", len(events), tries)
                self._metrics.webhooks.labels("dropped").inc()
                self._dropped("gave_up", len(events))
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_BACKOFF)

    async def _post(self, body: bytes, headers: dict[str, str]) -> bool:
        assert self._http is not None
        try:
            async with self._http.post(self._url, data=body, headers=headers, timeout=self._timeout) as resp:
                if 200 <= resp.status < 300:
                    return True
                log.info("webhooks: the receiver answered %d; will retry", resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("webhooks: the receiver did not answer (%s); will retry", type(exc).__name__)
        return False


def webhooks_ctx(webhooks: Webhooks) -> Any:
    """The app's cleanup_ctx for `webhooks`: started with the app, closed with it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await webhooks.start()
        yield
        await webhooks.close()

    return ctx
