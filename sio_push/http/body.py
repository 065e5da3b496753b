"""Reading a push request: size limit, service key, JSON, schema, in the order the contract gives.

A body over the limit is 413 before anything else; then a missing or wrong service key is 401; then a
bad body is 400 (415 for a content type that is not JSON).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from aiohttp import ClientPayloadError, web
from marshmallow import Schema

from ..codec import encodable, parse
from ..keys import SETTINGS
from .middleware import json_error

log = logging.getLogger(__name__)


async def _read_body(request: web.Request, limit: int, seconds: float) -> bytes | None:
    """The raw body, or None when it is over `limit` bytes (declared or actual).

    A body that does not arrive within `seconds` is 408, one the client abandons midway 400: the
    client's doing, answered (if it still listens) without a traceback.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while size <= limit:
                chunk = await request.content.read(limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError:
        raise json_error(web.HTTPRequestTimeout, error="body_timeout") from None
    except (ClientPayloadError, ConnectionError):
        raise json_error(web.HTTPBadRequest, error="incomplete_body") from None
    return None if size > limit else b"".join(chunks)


def bearer(request: web.Request) -> str | None:
    """The value of an `Authorization: Bearer <value>` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _is_json_type(request: web.Request) -> bool:
    if "Content-Type" not in request.headers:
        return True
    mime = request.content_type
    return mime == "application/json" or mime.endswith("+json")


def key_matches(key: str | None, expected: str) -> bool:
    """Constant-time comparison of a caller's key with the service key (any string, lone surrogates too)."""
    return key is not None and hmac.compare_digest(key.encode("utf-8", "surrogatepass"), expected.encode())


async def read_push(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The validated body, or the HTTP error the contract gives for it."""
    settings = request.app[SETTINGS]
    raw = await _read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    if raw is None:
        raise web.HTTPRequestEntityTooLarge(
            max_size=settings.max_body_bytes,
            actual_size=request.content_length or settings.max_body_bytes + 1,
            text=json.dumps({"status": 413, "error": "body_too_large", "limit": settings.max_body_bytes}),
            content_type="application/json",
        )
    body: Any = None
    parse_error: str | None = None
    if not _is_json_type(request):
        parse_error = "unsupported_media_type"
    else:
        try:
            body = parse(raw) if raw else None
        except ValueError:
            parse_error = "invalid_json"
    key = bearer(request)
    if key is None and isinstance(body, dict) and isinstance(body.get("token"), str):
        key = body["token"]
    if not key_matches(key, settings.service_key):
        log.info("push refused on %s: missing or wrong service key", request.path)
        raise json_error(web.HTTPUnauthorized, error="unauthorized")
    if parse_error == "unsupported_media_type":
        raise json_error(web.HTTPUnsupportedMediaType, error=parse_error)
    if parse_error is not None or not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, error="invalid_json", errors={"_schema": ["body must be a JSON object"]})
    if not encodable(body):
        raise json_error(
            web.HTTPBadRequest, error="invalid_json", errors={"_schema": ["body cannot be sent on as UTF-8 JSON"]}
        )
    errors = schema.validate(body)
    if errors:
        raise json_error(web.HTTPBadRequest, error="invalid_body", errors=errors)
    return body
