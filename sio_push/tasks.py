"""Background tasks: periodic work, capped retry waits, a bounded stop, and pacing (drains).

Every background loop of the package is a `Periodic` or retries with a `Backoff`, so each one re-raises
`CancelledError`, survives any other error, and is stopped within STOP_SECONDS, so a stuck I/O call
never holds up a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from .errors import BackendUnavailable

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0
PACE_TICK = 0.02  # items due within this many seconds are yielded together

T = TypeVar("T")


async def paced(items: Sequence[T], seconds: float) -> AsyncIterator[T]:
    """Yield `items` spread evenly over `seconds` (0: all at once): a drain's pace."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, item in enumerate(items):
        due = start + seconds * n / len(items)
        if due - loop.time() > PACE_TICK:
            await asyncio.sleep(due - loop.time())
        yield item


async def stop(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel `tasks` and wait for them to finish, at most STOP_SECONDS in all."""
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    if not running:
        return
    done, pending = await asyncio.wait(running, timeout=STOP_SECONDS)
    for task in done:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
    for task in pending:
        log.warning("background task %s did not stop in %.0fs", task.get_name(), STOP_SECONDS)


class Periodic:
    """Runs `work` every `every` seconds (the first time `every` seconds after `start`) until stopped.

    An error is logged and the next run comes as usual. A backend outage is logged at debug level only:
    the broker's reader already reports it once, and every periodic task would repeat it each second.

    :param name: names the task and the log lines.
    :param every: seconds between the end of one run and the start of the next.
    :param work: the coroutine function run each time.
    """

    def __init__(self, name: str, every: float, work: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.every = every
        self._work = work
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await stop(self._task)
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        failing = False  # an unexpected error is logged in full once, not at every run while it lasts
        while True:
            await asyncio.sleep(self.every)
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                log.debug("%s failed: backend unavailable (%s)", self.name, exc)
            except Exception:
                if failing:
                    log.debug("%s failed again", self.name, exc_info=True)
                else:
                    log.exception("%s failed; retrying every %.1fs", self.name, self.every)
                failing = True
            else:
                failing = False


class Backoff:
    """Waits between the retries of a failing call: `first` seconds, doubling up to `cap`.

    python-socketio's pub/sub managers retry their backend the same way.
    """

    def __init__(self, first: float = 0.05, cap: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    async def wait(self) -> None:
        """Count one more failure and wait before the next try."""
        self.failures += 1
        # The exponent is capped too: 2 ** a few thousand no longer converts to a float.
        await asyncio.sleep(min(self.cap, self.first * 2 ** min(self.failures - 1, 32)))

    def reset(self) -> bool:
        """The call worked: the next failure waits `first` again. Whether it had been failing."""
        failed, self.failures = self.failures > 0, 0
        return failed
