"""A client of sio-push's backend API (SPEC sections 2, 7 and 8) for Python backends: async and sync.

    async with AsyncPushClient("http://localhost:4000", key) as push:
        await push.push_channel("general", message_id="m1", message=json.dumps(message))

    push = PushClient("http://localhost:4000", key)
    push.push_user("u1", is_mention=True, mention_type="user")

Every method answers the server's JSON (`{"status": 200, ...}`) or raises a `PushError`: `Unauthorized`
(401, wrong key), `BadRequest` (400, with the field errors), `PayloadTooLarge` (413), `NotFound` (404, a
route this server does not have), `ServiceUnavailable` (503 still after the retries), `PushConnectionError`
(the server could not be reached). A 503 or a refused connection is retried with exponential backoff,
waiting what `Retry-After` says when the server says it; nothing else is retried, so a push is never sent
twice. The service key travels as `Authorization: Bearer` and is never put in an error or a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Generic, TypedDict, TypeVar

import aiohttp

__all__ = [
    "AsyncPushClient",
    "BadRequest",
    "BatchItem",
    "NotFound",
    "PayloadTooLarge",
    "PushClient",
    "PushConnectionError",
    "PushError",
    "Retry",
    "ServiceUnavailable",
    "Unauthorized",
]

Answer = dict[str, Any]
R = TypeVar("R")


class PushError(Exception):
    """An answer that is not a success; `status` is None when the server was not reached."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Unauthorized(PushError):
    """401: the service key is missing or wrong."""


class BadRequest(PushError):
    """400: the body or a parameter is invalid; `errors` holds marshmallow's field errors."""

    @property
    def errors(self) -> Any:
        return self.body.get("errors", {}) if isinstance(self.body, dict) else {}


class PayloadTooLarge(PushError):
    """413: the body is over the server's limit (`PUSH_MAX_BODY_BYTES`)."""


class NotFound(PushError):
    """404: this server has no such route (an older version) or no such resource."""


class ServiceUnavailable(PushError):
    """503 after every retry: the server could not take the request (its broker is down, or it drains)."""


class PushConnectionError(PushError):
    """The server could not be reached, after every retry."""


_ERRORS: dict[int, type[PushError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    503: ServiceUnavailable,
}


class BatchItem(TypedDict):
    """One push of `batch()`, as `/api/emit` takes it."""

    rooms: list[str]
    event: str
    data: Any


@dataclasses.dataclass(frozen=True)
class Retry:
    """How a 503 or a refused connection is retried.

    :param attempts: tries in all, the first included (1 = no retry).
    :param backoff: the first delay in seconds when the server gives no `Retry-After`; it doubles each
        time, with jitter, up to `max_backoff`.
    :param max_wait: the longest wait that a `Retry-After` may ask for; a longer one is cut to it.
    """

    attempts: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try number `attempt + 1` (`attempt` counts from 1)."""
        asked = _parse_retry_after(retry_after)
        if asked is not None:
            return min(asked, self.max_wait)
        return random.uniform(0.5, 1.0) * min(self.backoff * 2 ** (attempt - 1), self.max_backoff)


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclasses.dataclass(frozen=True)
class _Call:
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    query: Mapping[str, Any] | None = None

    def url(self, base: str) -> str:
        query = {k: str(v) for k, v in (self.query or {}).items() if v is not None}
        return base + self.path + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def data(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body, separators=(",", ":")).encode()


def _outcome(call: _Call, status: int, text: str) -> Answer:
    """The answer of a 2xx, else the `PushError` that says what went wrong."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = text
    if 200 <= status < 300:
        return body if isinstance(body, dict) else {"status": status, "body": body}
    error = body.get("error") if isinstance(body, dict) else None
    message = f"{call.method} {call.path} answered {status}" + (f": {error}" if error else "")
    raise _ERRORS.get(status, PushError)(message, status, body)


def _one_id(**ids: str | None) -> dict[str, str]:
    given = {name: value for name, value in ids.items() if value is not None}
    if len(given) != 1:
        raise ValueError(f"exactly one of {', '.join(ids)} is required")
    return given


class _Api(Generic[R]):
    """The routes, shared by both clients; `_send` makes them async or sync."""

    def __init__(self, url: str, key: str, *, timeout: float = 10.0, retry: Retry | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or Retry()
        self._headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self.url!r})"

    def _send(self, call: _Call) -> R:
        raise NotImplementedError

    def push_message(self, *, channel_id: str | None = None, thread_id: str | None = None, **fields: Any) -> R:
        """POST /api/message: `new_msg` to `room:lobby:<channel_id>` and `room:topic:<thread_id>` (one needed).

        `fields` go to the browsers untouched (`message_id`, `imitation_id`, `is_thread`, `is_reply`,
        `message` and `thread` as JSON strings, or anything else).
        """
        if channel_id is None and thread_id is None:
            raise ValueError("channel_id or thread_id is required")
        ids = {k: v for k, v in {"channel_id": channel_id, "thread_id": thread_id}.items() if v is not None}
        return self._send(_Call("POST", "/api/message", {**fields, **ids}))

    def push_channel(self, channel_id: str, **fields: Any) -> R:
        """POST /api/channel: `new_msg` to `room:lobby:<channel_id>`."""
        return self._send(_Call("POST", "/api/channel", {**fields, "channel_id": channel_id}))

    def push_community(self, community_id: str, **fields: Any) -> R:
        """POST /api/community: `new_msg` to `room:<community_id>`."""
        return self._send(_Call("POST", "/api/community", {**fields, "community_id": community_id}))

    def push_user(self, user_id: str, **fields: Any) -> R:
        """POST /api/user: `new_msg` to `user:<user_id>` (mentions, DMs, notifications)."""
        return self._send(_Call("POST", "/api/user", {**fields, "user_id": user_id}))

    def emit(self, rooms: Iterable[str], event: str, data: Any) -> R:
        """POST /api/emit: any event (not a reserved name) with `data` as its one argument, to any rooms."""
        return self._send(_Call("POST", "/api/emit", {"rooms": list(rooms), "event": event, "data": data}))

    def batch(self, pushes: Iterable[BatchItem | Mapping[str, Any]]) -> R:
        """POST /api/batch: 1-100 emits delivered in order, all or none; `results` has one answer each."""
        items = [{"rooms": list(p["rooms"]), "event": p["event"], "data": p["data"]} for p in pushes]
        return self._send(_Call("POST", "/api/batch", {"pushes": items}))

    def presence(self, room: str, limit: int | None = None) -> R:
        """GET /api/presence/<room>: `count` (users, sockets) and the `state` of the first `limit` users."""
        path = "/api/presence/" + urllib.parse.quote(room, safe=":")
        return self._send(_Call("GET", path, query={"limit": limit}))

    def rooms(self, prefix: str | None = None, limit: int | None = None, after: str | None = None) -> R:
        """GET /api/rooms: occupied rooms starting with `prefix`, in name order, after `after` (to page)."""
        return self._send(_Call("GET", "/api/rooms", query={"prefix": prefix, "limit": limit, "after": after}))

    def disconnect(self, *, user_id: str | None = None, sid: str | None = None) -> R:
        """POST /api/disconnect: close a user's (or one socket's) sockets everywhere; `sockets` says how many.

        A user's tokens issued before the call are refused for a while (SPEC section 7).
        """
        return self._send(_Call("POST", "/api/disconnect", _one_id(user_id=user_id, sid=sid)))

    def unsubscribe(self, user_id: str, room: str) -> R:
        """POST /api/unsubscribe: take `room` away from a user's sockets (they get `room_left`)."""
        return self._send(_Call("POST", "/api/unsubscribe", {"user_id": user_id, "room": room}))

    def health(self) -> R:
        """GET /api/health: `{"status": 200}` when the process answers."""
        return self._send(_Call("GET", "/api/health"))

    def ready(self) -> R:
        """GET /api/ready: `{"status": 200}` when a push can be taken now (else `ServiceUnavailable`)."""
        return self._send(_Call("GET", "/api/ready"))


class AsyncPushClient(_Api[Awaitable[Answer]]):
    """The asyncio client, on aiohttp; use it as `async with`, or call `close()`.

    :param url: the server's base URL, e.g. `http://localhost:4000`.
    :param key: the service key (`PUSH_SERVICE_KEY`).
    :param timeout: seconds for one try, connection included.
    :param retry: how 503s and refused connections are retried (`Retry()` by default).
    :param session: an `aiohttp.ClientSession` to share; it is left open by `close()`.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(url, key, timeout=timeout, retry=retry)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> AsyncPushClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _send(self, call: _Call) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        headers = {**self._headers, **({"Content-Type": "application/json"} if call.body is not None else {})}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            try:
                async with self._session.request(
                    call.method, call.url(self.url), data=call.data(), headers=headers, timeout=timeout
                ) as resp:
                    text = await resp.text()
                    if resp.status != 503 or last:
                        return _outcome(call, resp.status, text)
                    retry_after = resp.headers.get("Retry-After")
            except aiohttp.ClientConnectorError as exc:
                if last:
                    raise PushConnectionError(f"{call.method} {call.path}: {exc.os_error}") from None
                retry_after = None
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The request may have reached the server: not retried, so a push is never sent twice.
                raise PushConnectionError(f"{call.method} {call.path}: {exc!r}") from None
            await asyncio.sleep(self.retry.delay(attempt, retry_after))


class PushClient(_Api[Answer]):
    """The blocking client, for WSGI apps, Celery tasks and scripts.

    It uses `urllib.request` from the standard library rather than running the async client in an event
    loop: it works the same inside a thread, under a framework that already runs a loop, and without
    one, and it needs nothing installed. One connection per call; for many pushes at once, prefer
    `batch()` or the async client.

    :param url: the server's base URL, e.g. `http://localhost:4000`.
    :param key: the service key (`PUSH_SERVICE_KEY`).
    :param timeout: seconds for one try.
    :param retry: how 503s and refused connections are retried (`Retry()` by default).
    """

    def _send(self, call: _Call) -> Answer:
        headers = {**self._headers, **({"Content-Type": "application/json"} if call.body is not None else {})}
        request = urllib.request.Request(call.url(self.url), call.data(), headers, method=call.method)
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return _outcome(call, resp.status, resp.read().decode("utf-8", "replace"))
            except urllib.error.HTTPError as exc:
                with exc:
                    text = exc.read().decode("utf-8", "replace")
                if exc.code != 503 or last:
                    return _outcome(call, exc.code, text)
                retry_after = exc.headers.get("Retry-After")
            except urllib.error.URLError as exc:
                # Only a refused connection is retried: the request surely did not reach the server.
                if last or not isinstance(exc.reason, ConnectionRefusedError):
                    raise PushConnectionError(f"{call.method} {call.path}: {exc.reason}") from None
                retry_after = None
            except (OSError, TimeoutError) as exc:
                raise PushConnectionError(f"{call.method} {call.path}: {exc!r}") from None
            time.sleep(self.retry.delay(attempt, retry_after))
