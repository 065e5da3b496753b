"""Background tasks: stopped within a bound, so a stuck I/O call never holds up a shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0


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
