"""The one place a Redis error becomes `BackendUnavailable`: nothing above the Redis engine sees redis-py's.

`unavailable()` is a context manager for a block of Redis calls; `@translated` applies it to a whole
coroutine function. The new exception's message is only the Redis error's class name (the server's
address and the like stay in its `__cause__`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from ...errors import BackendUnavailable

P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def unavailable(error: type[BackendUnavailable] = BackendUnavailable) -> Iterator[None]:
    """Raise `error` (BackendUnavailable or a subclass) for any Redis error in the block."""
    try:
        yield
    except RedisError as exc:
        raise error(type(exc).__name__) from exc


def translated(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`func` raising BackendUnavailable for any Redis error."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:  # as `unavailable()` does, without a context manager's generator on every call
            return await func(*args, **kwargs)
        except RedisError as exc:
            raise BackendUnavailable(type(exc).__name__) from exc

    return wrapper
