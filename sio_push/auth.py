"""Who a socket is and which rooms it may join: JWT checked locally, or Linen's backend callback.

Two backends behind one interface, chosen by configuration:

- `JwtAuth` (default) verifies a token with PyJWT. Algorithms come from configuration, never from the
  token. `sub` is the user; the optional `rooms` claim lists room names or fnmatch patterns.
- `CallbackAuth` asks the Linen Next.js backend (`AUTH_SERVICE_URL`): `/api/jwt/who` on connect,
  `/api/jwt/can` on join. Bodies go as JSON text with content type `text/plain`, because those routes
  `JSON.parse` the raw body. Definite answers (below 500) are cached briefly; a timeout or an error
  means no and is asked again next time.

Both raise `AuthError` with the code a client sees in `connect_error` data.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from .config import Settings
from .errors import AuthError
from .rooms import Room, RoomKind, is_valid_id

log = logging.getLogger(__name__)

TOKEN_MISSING = "token_missing"
TOKEN_INVALID = "token_invalid"
TOKEN_EXPIRED = "token_expired"
UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user. `room_patterns` is None when the backend decides each join.

    `issued_at` and `expires_at` are the token's `iat` and `exp` (unix seconds) when it has them.
    """

    user_id: str
    room_patterns: tuple[str, ...] | None = None
    issued_at: int | None = None
    expires_at: int | None = None


def _seconds(value: object) -> int | None:
    """A claim in unix seconds as a whole number, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


class Auth:
    """The interface: authenticate a token, decide a join. Personal rooms are decided here for all."""

    async def authenticate(self, token: object) -> Identity:
        if not isinstance(token, str) or not token:
            raise AuthError(TOKEN_MISSING)
        if not token.isascii():  # JWTs and HTTP bearer tokens are ASCII; a lone surrogate would not encode
            raise AuthError(TOKEN_INVALID)
        return await self._authenticate(token)

    async def may_join(self, identity: Identity, room: Room) -> bool:
        if room.kind is RoomKind.USER:
            return room.id == identity.user_id
        return await self._may_join(identity, room)

    async def close(self) -> None:
        """Release what the backend holds (HTTP connections)."""

    def forget(self, user_id: str, room: str) -> None:
        """Forget a cached decision that `user_id` may join `room` (the backend revoked it)."""

    async def recheck(self, token: str, user_id: str) -> bool | None:
        """Whether `token` still names `user_id`, asked again now: False only on a definite refusal.

        None when it cannot be told (a timeout, a 5xx), or when the backend does not recheck (JWT:
        the token's `exp` decides).
        """
        return None

    async def _authenticate(self, token: str) -> Identity:
        raise NotImplementedError

    async def _may_join(self, identity: Identity, room: Room) -> bool:
        raise NotImplementedError


VERIFIED_SECONDS = 300.0  # how long a verified token is remembered (never past its `exp`)
VERIFIED_SIZE = 10_000


class JwtAuth(Auth):
    """Local verification with PyJWT.

    A token verified once is remembered (at most `VERIFIED_SIZE` of them, for `VERIFIED_SECONDS`, never past
    its `exp`): in a reconnect storm every client comes back with the token it had, and checking a
    signature is most of what a connect costs here. Only the exact same token is taken from memory (by
    its 128-bit BLAKE2b digest).

    :param settings: gives the secret or public key, the pinned algorithms, and the audience and
                     issuer to check when they are set.
    """

    def __init__(self, settings: Settings) -> None:
        key = settings.jwt_secret or settings.jwt_public_key
        if not key:
            raise ValueError("JwtAuth needs a secret or a public key")
        self._key = key
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._verified = _TtlCache(VERIFIED_SECONDS, VERIFIED_SIZE)

    async def _authenticate(self, token: str) -> Identity:
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()  # 49 bytes; a token is 200 or more
        known: Identity | None = self._verified.get(digest)
        if known is not None and known.expires_at is not None and known.expires_at > time.time():
            return known
        identity = self._verify(token)
        self._verified.put(digest, identity)
        return identity

    def _verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise AuthError(TOKEN_INVALID) from None
        user_id = claims.get("sub")
        patterns = claims.get("rooms", [])
        if not isinstance(user_id, str) or not is_valid_id(user_id):
            raise AuthError(TOKEN_INVALID)
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise AuthError(TOKEN_INVALID)
        return Identity(user_id, tuple(patterns), _seconds(claims.get("iat")), _seconds(claims.get("exp")))

    async def _may_join(self, identity: Identity, room: Room) -> bool:
        patterns = identity.room_patterns or ()
        return any(fnmatch.fnmatchcase(room.name, p) for p in patterns)


class _TtlCache:
    """A small bounded cache of definite answers; the oldest entries go first when it is full."""

    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return value

    def drop(self, key: Any) -> None:
        self._entries.pop(key, None)

    def put(self, key: Any, value: Any) -> None:
        if self._seconds <= 0:
            return
        if len(self._entries) >= self._size:
            for old in list(self._entries)[: self._size // 10 or 1]:
                del self._entries[old]
        self._entries[key] = (time.monotonic() + self._seconds, value)


class CallbackAuth(Auth):
    """Linen's backend decides: `/api/jwt/who` names the user, `/api/jwt/can` allows each join.

    :param settings: gives `AUTH_SERVICE_URL`, the service key sent as `push_token`, the cache time
                     and the request timeout.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.auth_service_url:
            raise ValueError("CallbackAuth needs AUTH_SERVICE_URL")
        self._url = settings.auth_service_url
        self._service_key = settings.service_key
        self._timeout = aiohttp.ClientTimeout(total=settings.auth_timeout_seconds)
        self._cache = _TtlCache(settings.auth_cache_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, path: str, body: dict[str, str], headers: dict[str, str]) -> tuple[int, str] | None:
        """POST a JSON text body; the status and text, or None on a timeout or a network error."""
        headers = {"Content-Type": "text/plain;charset=UTF-8", **headers}
        try:
            async with self._client().post(self._url + path, data=json.dumps(body), headers=headers) as resp:
                return resp.status, await resp.text()
        except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
            log.warning("auth service %s failed: %s", path, type(exc).__name__)
            return None

    async def _who(self, token: str, cached: bool = True) -> str | None:
        """The user `/api/jwt/who` names for `token` ("" for a definite no), None when it cannot tell.

        A definite answer is cached; with `cached` False the backend is asked even if one is.
        """
        key = ("who", hashlib.sha256(token.encode()).hexdigest())
        user_id: str | None = self._cache.get(key) if cached else None
        if user_id is not None:
            return user_id
        bearer = {"Authorization": f"Bearer {token}"}
        answer = await self._post("/api/jwt/who", {"push_token": self._service_key}, bearer)
        if answer is None or answer[0] >= 500:
            return None
        status, text = answer
        user_id = text.strip() if status == 200 else ""
        if status == 200 and not is_valid_id(user_id):
            log.warning("auth service named a user id that is not valid; refusing")
            user_id = ""
        self._cache.put(key, user_id)
        return user_id

    async def _authenticate(self, token: str) -> Identity:
        user_id = await self._who(token)
        if not user_id:
            raise AuthError(UNAUTHORIZED)
        return Identity(user_id, issued_at=_issued_at(token))

    def forget(self, user_id: str, room: str) -> None:
        self._cache.drop(("can", user_id, room))

    async def recheck(self, token: str, user_id: str) -> bool | None:
        named = await self._who(token, cached=False)
        return None if named is None else named == user_id

    async def _may_join(self, identity: Identity, room: Room) -> bool:
        key = ("can", identity.user_id, room.name)
        allowed = self._cache.get(key)
        if allowed is None:
            body = {
                "push_token": self._service_key,
                "current_user": identity.user_id,
                room.kind.value: room.id,
            }
            answer = await self._post("/api/jwt/can", body, {})
            if answer is None:
                return False
            allowed = answer[0] == 200
            if answer[0] < 500:
                self._cache.put(key, allowed)
        return bool(allowed)


def _issued_at(token: str) -> int | None:
    """The `iat` of a token the backend accepted, if it is a JWT that has one (for revocations).

    The backend verified the token; its claims are only read here, never trusted for identity.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except (jwt.InvalidTokenError, ValueError):
        return None
    return _seconds(claims.get("iat"))


def create_auth(settings: Settings) -> Auth:
    return CallbackAuth(settings) if settings.callback_auth else JwtAuth(settings)
