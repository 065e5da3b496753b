"""Each user's sockets, counted over every process for `PUSH_MAX_SOCKETS_PER_USER`: Socket.IO's and
Phoenix's alike, so that one limit covers both.

A backend outage admits: a socket that cannot be counted is let in, one that cannot be released is
logged (the count of a process that dies is released by the engine's reaper).
"""

from __future__ import annotations

import logging

from ..engines import UserSockets
from ..errors import BackendUnavailable

log = logging.getLogger(__name__)


class UserCount:
    """The per-user socket limit.

    :param user_sockets: the engine's counts over every process.
    :param limit: the most sockets one user may have (0: no limit).
    """

    def __init__(self, user_sockets: UserSockets, limit: int) -> None:
        self._user_sockets = user_sockets
        self._limit = limit

    async def acquire(self, user_id: str, conn: str, replaces: str | None = None) -> bool:
        """Count connection `conn` of `user_id`, in place of `replaces` (the one a recovery takes over).

        False, and nothing counted, when the user is at the limit.
        """
        try:
            return await self._user_sockets.acquire(user_id, conn, self._limit, replaces)
        except BackendUnavailable:
            log.warning("sockets of user=%s not counted: backend unavailable", user_id)
            return True

    async def release(self, user_id: str, conn: str) -> None:
        try:
            await self._user_sockets.release(user_id, conn)
        except BackendUnavailable:
            log.warning("sockets of user=%s not released: backend unavailable", user_id)
