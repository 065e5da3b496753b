"""The background-task helpers: a periodic task survives its errors and stops; retry waits stay capped."""

from __future__ import annotations

import asyncio
import logging

from sio_push.errors import BackendUnavailable
from sio_push.tasks import Backoff, Periodic

from .conftest import TIMEOUT


async def test_periodic_work_goes_on_after_errors_and_stops(caplog):
    runs: asyncio.Queue[int] = asyncio.Queue()
    count = 0

    async def work() -> None:
        nonlocal count
        count += 1
        runs.put_nowait(count)
        if count == 1:
            raise RuntimeError("first run fails")
        if count == 2:
            raise BackendUnavailable("ConnectionError")

    periodic = Periodic("test work", 0.01, work)
    with caplog.at_level(logging.DEBUG, logger="sio_push.tasks"):
        periodic.start()
        assert [await asyncio.wait_for(runs.get(), TIMEOUT) for _ in range(3)] == [1, 2, 3]
        await periodic.stop()
    assert not periodic.running
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "test work failed" in errors[0].getMessage()
    assert any("backend unavailable" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


async def test_backoff_waits_stay_capped_however_long_the_outage():
    backoff = Backoff(first=0.001, cap=0.002)
    backoff.failures = 5000  # 0.001 * 2 ** 5000 would not even convert to a float
    await asyncio.wait_for(backoff.wait(), TIMEOUT)
    assert backoff.failures == 5001
    assert backoff.reset() is True and backoff.reset() is False
