"""The operators' commands (SPEC §8): mint a token, post a push to a running server, check the configuration.

Each takes the checked settings and returns what the entry point prints and its exit status; none of
them prints a secret.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt

from .config import Settings
from .rooms import is_valid_id

OK, FAILED, INVALID = 0, 1, 2


def token(settings: Settings, sub: str, rooms: list[str], ttl: float) -> tuple[str, int]:
    """A JWT for user `sub` signed with the configured secret (HS*), with the configured audience and issuer."""
    if not settings.jwt_secret:
        return "sio-push token: needs PUSH_JWT_SECRET (a public key can verify tokens, not sign them)", INVALID
    if not is_valid_id(sub):
        return f"sio-push token: --sub must be 1-128 characters of A-Za-z0-9_.-, got {sub!r}", INVALID
    if ttl <= 0:
        return "sio-push token: --ttl must be a positive number of seconds", INVALID
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl)}
    if rooms:
        claims["rooms"] = rooms
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithms[0]), OK


def default_url(settings: Settings) -> str:
    """This configuration's own server: its port, on loopback when it listens on every address."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}"


def push(settings: Settings, route: str, url: str | None, body: str, timeout: float = 10.0) -> tuple[str, int]:
    """POST `body` (a JSON object) to `route` (`emit` or `/api/emit`) with the service key; the answer's text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "sio-push push: the body is not JSON", INVALID
    if not isinstance(parsed, dict):
        return "sio-push push: the body must be a JSON object", INVALID
    path = route if route.startswith("/") else f"/api/{route}"
    request = urllib.request.Request(
        (url or default_url(settings)).rstrip("/") + path,
        data=json.dumps(parsed).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.service_key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.read().decode(errors="replace"), OK
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace"), FAILED
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"sio-push push: cannot reach {request.full_url}: {reason}", FAILED


def check(settings: Settings) -> tuple[str, int]:
    """The configuration is valid (it was loaded); reach Redis when one is configured."""
    auth = "the backend's callback" if settings.callback_auth else "JWT " + ",".join(settings.jwt_algorithms)
    lines = [f"port {settings.port} on {settings.host}", f"auth: {auth}"]
    if settings.redis_url:
        import redis  # loaded only by those who use it

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        except redis.RedisError as exc:
            return f"sio-push check: cannot reach Redis ({type(exc).__name__})", INVALID
        finally:
            client.close()
        lines.append("redis: reachable")
    else:
        lines.append("redis: none (one process, memory)")
    lines.append(f"webhooks: {'on' if settings.webhook_url else 'off'}")
    return "configuration ok: " + "; ".join(lines), OK
