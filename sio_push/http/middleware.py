"""The one place where an API error becomes an HTTP answer: JSON with a status, nothing internal leaked."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import BackendUnavailable
from ..keys import METRICS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


RETRY_AFTER = "1"  # seconds, on every 503: the backend or broker is expected back soon


def _headers(status: int) -> dict[str, str] | None:
    """A 503 says when to retry."""
    return {"Retry-After": RETRY_AFTER} if status == 503 else None


def answer(status: int, **fields: Any) -> web.Response:
    """The API's JSON answer: `{"status": status, ...fields}` with that HTTP status."""
    return web.json_response({"status": status, **fields}, status=status, headers=_headers(status))


def json_error(cls: type[web.HTTPException], **fields: Any) -> web.HTTPException:
    """An HTTP error carrying the API's JSON body, to raise from a handler."""
    status = cls.status_code
    return cls(text=json.dumps({"status": status, **fields}), content_type="application/json", headers=_headers(status))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of the API is a JSON answer; nothing internal reaches the caller."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            request.app[METRICS].push_errors.labels(str(exc.status)).inc()
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return answer(exc.status, error=exc.reason.lower().replace(" ", "_"))
    except BackendUnavailable as exc:
        log.warning("%s %s: shared backend unavailable (%s)", request.method, request.path, exc)
        return answer(503, error="backend_unavailable")
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return answer(500, error="internal_error")
