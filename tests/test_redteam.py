"""The red team's inputs (benchmarks/redteam.py), scaled down, against a real server: every attack is
answered as the contract says, the server is healthy after each, and a well-behaved client in another
room gets every push sent to it while they run."""

from __future__ import annotations

import asyncio
import contextlib
import time

from benchmarks.redteam import attack_all

from .conftest import SECRET, SERVICE_KEY
from .test_bounds import no_tracebacks

SCALE = 0.05


async def test_every_red_team_input_is_answered_as_the_contract_says(make_server, connect, caplog):
    # Bounds the scaled-down attacks reach: 4 pushes of 64 KiB fill the buffer, 16 the recovery log.
    server = await make_server(max_buffer_bytes=256 * 1024, recovery_max_bytes=1024 * 1024, head_timeout_seconds=1)
    bystander = await connect(server, "bystander")
    assert (await bystander.join("room:lobby:bystander"))["ok"]
    done = asyncio.Event()
    sent: list[int] = []

    async def keep_pushing() -> None:
        while not done.is_set():
            status, _ = await server.push("/api/channel", channel_id="bystander", n=len(sent))
            assert status == 200
            sent.append(len(sent))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)  # a push every 50 ms until the attacks are over

    pushing = asyncio.create_task(keep_pushing())
    started = time.monotonic()
    try:
        results = await attack_all(server.url, SERVICE_KEY, SECRET, scale=SCALE)
    finally:
        done.set()
        await pushing
    assert time.monotonic() - started < 30

    assert [r["attack"].split()[0] for r in results] == [str(n) for n in range(1, 12)]
    failed = [r for r in results if not (r["ok"] and r["healthy"])]
    assert not failed, failed
    assert "a fresh session" in results[10]["answer"]  # the log held fewer bytes than were pushed
    assert len(sent) > 10
    assert [(await bystander.next_msg())["n"] for _ in sent] == sent
    no_tracebacks(caplog)
