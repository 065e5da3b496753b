"""Settings, read from the environment once by the entry point and checked as a whole.

Every problem is collected and reported together (the server then exits with status 2), so a
deployment is fixed in one round instead of one error at a time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .errors import ConfigError

MIN_SECRET_BYTES = 32
DEV_SERVICE_KEY = "dev-push-service-key-not-for-production"
_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
_SYMMETRIC = {"HS256", "HS384", "HS512"}


@dataclass(frozen=True)
class Settings:
    """Everything the server is configured with. Build it with `load_settings` or directly in tests."""

    service_key: str
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    auth_service_url: str | None = None
    auth_cache_seconds: float = 10.0
    auth_timeout_seconds: float = 5.0
    host: str = "0.0.0.0"
    port: int = 4000
    redis_url: str | None = None
    redis_prefix: str = "sio-push:"
    recovery_seconds: float = 120.0
    recovery_log_size: int = 100_000
    cors_origins: tuple[str, ...] = ()
    presence_batch_seconds: float = 0.1
    connect_timeout_seconds: float = 45.0
    max_body_bytes: int = 1024 * 1024
    max_socket_message_bytes: int = 64 * 1024
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    workers: int = 1
    transports: tuple[str, ...] = ("polling", "websocket")
    uvloop: bool = True
    # §6 large rooms, admission, drain
    presence_max_users: int = 500  # 0: no limit
    # Admission of new connections (admission.py; the defaults' measurements are in .env.example): a rate
    # (burst 5x) as a ceiling, and the pace fitted to the process by the connections being set up at once
    # and by how late the event loop runs.
    connect_rate: float = 1000.0
    max_connecting: int = 128  # 0: no cap
    connect_max_lag_ms: float = 250.0  # 0: never refuse for it
    max_connections: int | None = None  # None: 90% of the file-descriptor limit
    drain_seconds: float = 10.0
    # §7 limits, expiry, revocation
    max_rooms_per_socket: int = 100
    events_per_second: float = 20.0  # burst 2x
    max_sockets_per_user: int = 50  # 0: no limit
    typing_seconds: float = 5.0
    auth_recheck_seconds: float = 300.0
    revocation_seconds: float = 3600.0
    metrics_public: bool = False
    recovery_max_bytes: int = 256 * 1024 * 1024
    max_buffer_bytes: int = 8 * 1024 * 1024  # a socket's unsent bytes, websocket or polling
    heap_trim_seconds: float = 60.0  # freed heap memory given back to the system this often (0: never)
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # §8 webhooks
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_grace_seconds: float = 5.0
    webhook_retry_seconds: float = 300.0  # a failing request is retried for this long, then dropped
    webhook_backoff_seconds: float = 1.0  # the first wait between tries, doubling up to 30 s
    webhook_timeout_seconds: float = 10.0  # one try's timeout
    webhook_max_pending: int = 10_000  # events waiting to be sent; more are dropped (counted)
    # §9 Phoenix Channels
    phoenix_timeout_seconds: float = 60.0
    metrics_dir: str | None = None  # set by the entry point for --workers
    log_level: str = "INFO"
    log_format: str = "text"
    dev: bool = False
    demo: bool = False
    dev_notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def callback_auth(self) -> bool:
        return self.auth_service_url is not None


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, problems: list[str], *, minimum: float = 0) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number, got {raw!r}")
        return default
    if value < minimum:
        problems.append(f"{name} must be at least {minimum:g}, got {raw!r}")
        return default
    return value


def _whole(env: Mapping[str, str], name: str, default: int, problems: list[str], *, minimum: int = 0) -> int:
    value = _number(env, name, default, problems, minimum=minimum)
    if value != int(value):
        problems.append(f"{name} must be a whole number, got {env.get(name)!r}")
        return default
    return int(value)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    return raw.lower() not in ("0", "false", "no", "off")


def _read_key(value: str, problems: list[str]) -> str | None:
    """A PEM public key given inline (newlines may be written `\\n`) or as the path of a file holding it."""
    if value.lstrip().startswith("-----BEGIN"):
        pem = value.replace("\\n", "\n")
    else:
        try:
            pem = Path(value).read_text()
        except OSError as exc:
            problems.append(f"PUSH_JWT_PUBLIC_KEY is neither a PEM key nor a readable file ({exc.strerror})")
            return None
    try:
        serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        problems.append("PUSH_JWT_PUBLIC_KEY does not hold a PEM public key")
        return None
    return pem


def _workers(raw: str | None, problems: list[str]) -> int:
    if raw is None:
        return 1
    if raw == "auto":
        return os.cpu_count() or 1
    if raw.isdigit() and 1 <= int(raw) <= 256:
        return int(raw)
    problems.append(f"--workers (PUSH_WORKERS) must be a whole number from 1 to 256 or auto, got {raw!r}")
    return 1


def load_settings(
    env: Mapping[str, str], *, dev: bool = False, demo: bool = False, workers: str | None = None
) -> Settings:
    """Read and check the settings; raise ConfigError listing every problem found.

    `workers` is the `--workers` flag, which wins over `PUSH_WORKERS`.
    """
    problems: list[str] = []
    notes: list[str] = []
    dev = dev or demo

    service_key = _text(env, "PUSH_SERVICE_KEY")
    if service_key is None:
        if dev:
            service_key = DEV_SERVICE_KEY
            notes.append("PUSH_SERVICE_KEY is unset: using the well-known development key")
        else:
            problems.append("PUSH_SERVICE_KEY is required (the secret shared with the backend)")

    auth_service_url = _text(env, "AUTH_SERVICE_URL")
    if auth_service_url is not None:
        auth_service_url = auth_service_url.rstrip("/")
        if not auth_service_url.startswith(("http://", "https://")):
            problems.append(f"AUTH_SERVICE_URL must be an http(s) URL, got {auth_service_url!r}")

    jwt_secret = _text(env, "PUSH_JWT_SECRET")
    raw_public_key = _text(env, "PUSH_JWT_PUBLIC_KEY")
    jwt_public_key = _read_key(raw_public_key, problems) if raw_public_key else None
    if jwt_secret and jwt_public_key:
        problems.append("set PUSH_JWT_SECRET or PUSH_JWT_PUBLIC_KEY, not both")
    if jwt_secret is not None and len(jwt_secret.encode()) < MIN_SECRET_BYTES:
        problems.append(f"PUSH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
    if auth_service_url is None and not jwt_secret and not raw_public_key:
        if dev:
            jwt_secret = secrets.token_urlsafe(48)
            notes.append("PUSH_JWT_SECRET is unset: minted a throwaway secret (tokens die with the process)")
        else:
            problems.append("set PUSH_JWT_SECRET (HS256) or PUSH_JWT_PUBLIC_KEY (RS256/ES256), or AUTH_SERVICE_URL")

    raw_algorithms = _text(env, "PUSH_JWT_ALGORITHMS")
    if raw_algorithms is None:
        algorithms: tuple[str, ...] = ("RS256",) if jwt_public_key else ("HS256",)
    else:
        algorithms = tuple(a.strip() for a in raw_algorithms.split(",") if a.strip())
        allowed = _ASYMMETRIC if raw_public_key else _SYMMETRIC
        bad = [a for a in algorithms if a not in allowed]
        if bad or not algorithms:
            kind = "a public key" if raw_public_key else "a shared secret"
            problems.append(
                f"PUSH_JWT_ALGORITHMS has {', '.join(bad) or 'nothing'}; with {kind} use {', '.join(sorted(allowed))}"
            )

    port = _number(env, "PORT", 4000, problems)
    if not (0 <= port <= 65535) or port != int(port):
        problems.append(f"PORT must be a whole number from 0 to 65535, got {env.get('PORT')!r}")

    redis_url = _text(env, "PUSH_REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(f"PUSH_REDIS_URL must be a redis://, rediss:// or unix:// URL, got {redis_url!r}")

    log_format = (_text(env, "PUSH_LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        problems.append(f"PUSH_LOG_FORMAT must be text or json, got {log_format!r}")
    log_level = (_text(env, "PUSH_LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"PUSH_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    worker_count = _workers(workers or _text(env, "PUSH_WORKERS"), problems)
    if worker_count > 1 and redis_url is None:
        problems.append("several workers share rooms through Redis: set PUSH_REDIS_URL, or run one worker")
    raw_transports = _text(env, "PUSH_TRANSPORTS")
    if raw_transports is None:
        # Long-polling needs every request of a session on one process; several workers can't promise it.
        transports: tuple[str, ...] = ("polling", "websocket") if worker_count == 1 else ("websocket",)
    else:
        transports = tuple(t.strip() for t in raw_transports.split(",") if t.strip())
        if not transports or not set(transports) <= {"polling", "websocket"}:
            problems.append(f"PUSH_TRANSPORTS must list websocket and/or polling, got {raw_transports!r}")
        elif "polling" in transports and worker_count > 1:
            problems.append("PUSH_TRANSPORTS with polling needs one worker (polling is not safe across workers)")

    webhook_url = _text(env, "PUSH_WEBHOOK_URL")
    webhook_secret = _text(env, "PUSH_WEBHOOK_SECRET")
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        problems.append(f"PUSH_WEBHOOK_URL must be an http(s) URL, got {webhook_url!r}")
    if bool(webhook_url) != bool(webhook_secret):
        problems.append("PUSH_WEBHOOK_URL and PUSH_WEBHOOK_SECRET go together: set both or neither")
    raw_max_connections = _text(env, "PUSH_MAX_CONNECTIONS")
    max_connections = int(_number(env, "PUSH_MAX_CONNECTIONS", 0, problems, minimum=1)) if raw_max_connections else None

    cors = _text(env, "PUSH_CORS_ORIGINS")
    settings = Settings(
        service_key=service_key or "",
        jwt_secret=jwt_secret,
        jwt_public_key=jwt_public_key,
        jwt_algorithms=algorithms,
        jwt_audience=_text(env, "PUSH_JWT_AUDIENCE"),
        jwt_issuer=_text(env, "PUSH_JWT_ISSUER"),
        auth_service_url=auth_service_url,
        auth_cache_seconds=_number(env, "PUSH_AUTH_CACHE_SECONDS", 10, problems),
        auth_timeout_seconds=_number(env, "PUSH_AUTH_TIMEOUT_SECONDS", 5, problems, minimum=0.1),
        host=_text(env, "PUSH_HOST") or ("127.0.0.1" if dev else "0.0.0.0"),
        port=int(port) if 0 <= port <= 65535 else 4000,
        redis_url=redis_url,
        redis_prefix=_text(env, "PUSH_REDIS_PREFIX") or "sio-push:",
        recovery_seconds=_number(env, "PUSH_RECOVERY_SECONDS", 120, problems),
        recovery_log_size=int(_number(env, "PUSH_RECOVERY_MAX_EVENTS", 100_000, problems, minimum=1)),
        cors_origins=tuple(o.strip() for o in cors.split(",") if o.strip()) if cors else (),
        max_body_bytes=int(_number(env, "PUSH_MAX_BODY_BYTES", 1024 * 1024, problems, minimum=1024)),
        presence_batch_seconds=_number(env, "PUSH_PRESENCE_BATCH_MS", 100, problems) / 1000,
        connect_timeout_seconds=_number(env, "PUSH_CONNECT_TIMEOUT", 45, problems, minimum=1),
        ping_interval=_number(env, "PUSH_PING_INTERVAL", 25, problems, minimum=1),
        ping_timeout=_number(env, "PUSH_PING_TIMEOUT", 20, problems, minimum=1),
        workers=worker_count,
        uvloop=_flag(env, "PUSH_UVLOOP", True),
        transports=transports,
        presence_max_users=_whole(env, "PUSH_PRESENCE_MAX_USERS", 500, problems),
        connect_rate=_number(env, "PUSH_CONNECT_RATE", 1000, problems, minimum=0.1),
        connect_max_lag_ms=_number(env, "PUSH_CONNECT_MAX_LAG_MS", 250, problems, minimum=0),
        heap_trim_seconds=_number(env, "PUSH_HEAP_TRIM_SECONDS", 60, problems, minimum=0),
        max_connecting=int(_number(env, "PUSH_MAX_CONNECTING", 128, problems, minimum=0)),
        max_connections=max_connections,
        drain_seconds=_number(env, "PUSH_DRAIN_SECONDS", 10, problems),
        max_rooms_per_socket=_whole(env, "PUSH_MAX_ROOMS_PER_SOCKET", 100, problems, minimum=1),
        events_per_second=_number(env, "PUSH_EVENTS_PER_SECOND", 20, problems, minimum=0.1),
        max_sockets_per_user=_whole(env, "PUSH_MAX_SOCKETS_PER_USER", 50, problems),
        typing_seconds=_number(env, "PUSH_TYPING_SECONDS", 5, problems, minimum=0.1),
        auth_recheck_seconds=_number(env, "PUSH_AUTH_RECHECK_SECONDS", 300, problems, minimum=1),
        revocation_seconds=_number(env, "PUSH_REVOCATION_SECONDS", 3600, problems),
        metrics_public=_flag(env, "PUSH_METRICS_PUBLIC", False),
        recovery_max_bytes=_whole(env, "PUSH_RECOVERY_MAX_BYTES", 256 * 1024 * 1024, problems, minimum=1024),
        max_buffer_bytes=_whole(env, "PUSH_MAX_BUFFER_BYTES", 8 * 1024 * 1024, problems, minimum=64 * 1024),
        head_timeout_seconds=_number(env, "PUSH_HEAD_TIMEOUT_SECONDS", 10, problems, minimum=0.1),
        body_timeout_seconds=_number(env, "PUSH_BODY_TIMEOUT_SECONDS", 30, problems, minimum=0.1),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_grace_seconds=_number(env, "PUSH_WEBHOOK_GRACE_SECONDS", 5, problems),
        webhook_retry_seconds=_number(env, "PUSH_WEBHOOK_RETRY_SECONDS", 300, problems),
        webhook_backoff_seconds=_number(env, "PUSH_WEBHOOK_BACKOFF_SECONDS", 1, problems, minimum=0.01),
        webhook_timeout_seconds=_number(env, "PUSH_WEBHOOK_TIMEOUT_SECONDS", 10, problems, minimum=0.1),
        webhook_max_pending=_whole(env, "PUSH_WEBHOOK_MAX_PENDING", 10_000, problems, minimum=100),
        phoenix_timeout_seconds=_number(env, "PUSH_PHOENIX_TIMEOUT_SECONDS", 60, problems, minimum=1),
        log_level=log_level,
        log_format=log_format,
        dev=dev,
        demo=demo,
        dev_notes=tuple(notes),
    )
    if problems:
        raise ConfigError(problems)
    return settings
