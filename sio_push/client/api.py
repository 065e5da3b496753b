"""The backend API's routes, errors and retry rule, shared by the async and the blocking client."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypedDict, TypeVar

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
