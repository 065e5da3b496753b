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
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable

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
from .api import (
    Answer,
    BadRequest,
    BatchItem,
    NotFound,
    PayloadTooLarge,
    PushConnectionError,
    PushError,
    Retry,
    ServiceUnavailable,
    Unauthorized,
    _Api,
    _Call,
    _outcome,
)

__all__ = [
    "Answer",
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
