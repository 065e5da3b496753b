"""The crowd scenarios: one big room, a reconnect storm, a drain to another process, a soak.

The load generator does the clients' side (loadgen/crowd.js); this side starts what the scenario needs
besides the first server (the drain's second process), signals it, and samples the server during a soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import procs, redteam, soakchart
from benchmarks.common import Context, Outcome, drive
from benchmarks.servers import NODE, Running, serve

# What a crowd run reports from the load generator's result, by the figure's name there.
_BIGROOM_FIGURES = (
    "connects_per_s",
    "join_ack_ms_p50",
    "join_ack_ms_p99",
    "connect_ms_p99",
    "presence_bytes_mean",
    "presence_bytes_max",
    "state_bytes_mean",
    "state_bytes_max",
    "presence_settle_s",
    "large_join_bytes_p99",
    "large_join_bytes_max",
    "joined_large",
    "admission_refusals",
)
_RECONNECT_FIGURES = (
    "all_back_s",
    "handshake_ms_p50",
    "handshake_ms_p99",
    "peak_reconnects_per_s",
    "drops_spread_s",
    "reconnect_failures",
    "reconnect_attempts",
    "reconnect_refusals",
    "recovered",
    "not_recovered",
    "pushes_sent",
    "pushes_lost",
    "pushes_doubled",
    "sockets_with_loss",
    "max_lost_per_socket",
)
_STORM_FIGURES = (*_RECONNECT_FIGURES, "small_quiet_ms_p99", "small_storm_ms_p99", "small_quiet_ms_p50")
_DRAIN_FIGURES = (*_RECONNECT_FIGURES, "first_drop_s", "not_dropped")


def _take(outcome: Outcome, result: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = result.get(name)
        outcome.figures[name] = float(value) if isinstance(value, int | float) else math.nan


def _losses_are_figures(outcome: Outcome, result: dict[str, Any]) -> None:
    """Lost and doubled pushes are what storm and drain measure: figures of both servers, and the run's
    other figures stand. For sio-push (recovery on) any loss is also a problem; the peer's are reported."""
    result["pushes_lost"] = result.get("lost", 0)
    result["pushes_doubled"] = result.get("duplicates", 0)
    outcome.measured = ("lost", "duplicates")
    if outcome.server == NODE:
        outcome.tolerate = ("lost", "duplicates")


async def bigroom(ctx: Context, server: Running, outcome: Outcome, *, concurrency: int | None = None) -> None:
    s = ctx.sizes
    config = {
        "scenario": "bigroom",
        "sockets": s.bigroom_sockets,
        "concurrency": concurrency or s.connect_concurrency,
        "connect_timeout_s": 30,
    }
    result = await drive(ctx, server, outcome, config)
    result["connects_per_s"] = result.get("value")
    _take(outcome, result, _BIGROOM_FIGURES)
    outcome.checks["presence_settled"] = result.get("presence_settled")


async def bigroom_burst(ctx: Context, server: Running, outcome: Outcome) -> None:
    await bigroom(ctx, server, outcome, concurrency=ctx.sizes.bigroom_sockets)


async def storm(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    config = {
        "scenario": "storm",
        "sockets": s.storm_sockets,
        "rate": s.storm_rate,
        "small_sockets": s.storm_small_sockets,
        "small_rate": s.storm_small_rate,
        "quiet_s": s.crowd_quiet_s,
        "tail_s": s.crowd_tail_s,
        "concurrency": s.connect_concurrency,
        "payload_bytes": s.payload_bytes,
        "connect_timeout_s": 20,  # socket.io-client's default `timeout`
        "idle_timeout_s": 5,  # after the tail, what has not come within 5 s is lost
    }
    result = await drive(ctx, server, outcome, config)
    _losses_are_figures(outcome, result)
    _take(outcome, result, _STORM_FIGURES)


async def drain(ctx: Context, server: Running, outcome: Outcome) -> None:
    """M sockets on `server`; a second process of the same server on the same Redis; SIGTERM the first."""
    s = ctx.sizes
    log = ctx.logs / f"drain-{outcome.server}-{outcome.repetition}.server-b.log"
    async with serve(server.spec, ctx.keys, log=log, cpus=ctx.server_cpus, redis_url=server.redis_url) as other:

        async def terminate(name: str, _message: dict[str, Any]) -> None:
            if name == "drain":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGTERM)

        config = {
            "scenario": "drain",
            "sockets": s.drain_sockets,
            "rate": s.drain_rate,
            "port_b": other.port,
            "quiet_s": s.crowd_quiet_s,
            "tail_s": s.crowd_tail_s,
            "concurrency": s.connect_concurrency,
            "payload_bytes": s.payload_bytes,
            "connect_timeout_s": 20,
            "idle_timeout_s": 5,  # after the tail, what has not come within 5 s is lost
        }
        result = await drive(ctx, server, outcome, config, terminate)
    outcome.server_cpu_pct = None  # the measured server is the one that went away
    _losses_are_figures(outcome, result)
    _take(outcome, result, _DRAIN_FIGURES)


def _fd_count(pid: int) -> int:
    total = 0
    for p in procs.tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def _metrics(port: int, key: str) -> dict[str, float]:
    """sio_push_sockets and sio_push_asyncio_tasks from /metrics (the Node peer has no /metrics: NaN)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {key}"})
    found = {"sockets_metric": math.nan, "tasks": math.nan}
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # loopback, our own URL
            text = response.read().decode()
    except OSError:
        return found
    for line in text.splitlines():
        if line.startswith("sio_push_sockets "):
            found["sockets_metric"] = float(line.split()[-1])
        elif line.startswith("sio_push_asyncio_tasks "):
            found["tasks"] = float(line.split()[-1])
    return found


async def _sample(server: Running, key: str, every: float, into: list[dict[str, float]], t0: float) -> None:
    while True:
        metrics = await asyncio.to_thread(_metrics, server.port, key)
        into.append(
            {
                "t_s": time.monotonic() - t0,
                "rss_mib": procs.rss_kib(server.pid) / 1024,
                "fds": float(_fd_count(server.pid)),
                **metrics,
            }
        )
        await asyncio.sleep(every)


async def soak(ctx: Context, server: Running, outcome: Outcome) -> None:
    """S sockets for T seconds with pushes and churn; RSS, open files and /metrics sampled every few seconds."""
    s = ctx.sizes
    samples: list[dict[str, float]] = []
    sampler: list[asyncio.Task[None]] = []
    attacks: list[dict[str, Any]] = []
    t0 = time.monotonic()

    async def red_team() -> None:
        """The red-team inputs, replayed one after another a third of the way into the soak."""
        await asyncio.sleep(s.soak_seconds / 3)
        began = time.monotonic() - t0
        url = f"http://127.0.0.1:{server.port}"
        for attack in await redteam.attack_all(url, ctx.keys.service_key, ctx.keys.jwt_secret, scale=scale):
            attacks.append({**attack, "at_s": began + attack["started_s"]})

    scale = s.soak_redteam_scale

    async def sample(name: str, _message: dict[str, Any]) -> None:
        nonlocal t0
        if name == "soak_start":
            t0 = time.monotonic()
            sampler.append(asyncio.create_task(_sample(server, ctx.keys.service_key, s.soak_sample_s, samples, t0)))
            if scale > 0 and outcome.server != NODE:  # the peer has no push API to attack
                sampler.append(asyncio.create_task(red_team()))
        elif name == "soak_end":
            for task in sampler:
                task.cancel()
            await asyncio.gather(*sampler, return_exceptions=True)

    config = {
        "scenario": "soak",
        "sockets": s.soak_sockets,
        "seconds": s.soak_seconds,
        "churn": s.soak_churn,
        "rate": s.soak_rate,
        "room_size": s.soak_room_size,
        "concurrency": s.connect_concurrency,
        "payload_bytes": s.payload_bytes,
        "deadline_s": s.soak_seconds + ctx.timeout,
    }
    result = await drive(ctx, server, outcome, config, sample, time_limit=s.soak_seconds + ctx.timeout)
    outcome.series = samples
    for name in ("rss_mib", "fds", "sockets_metric", "tasks"):
        growth, spread = soakchart.flatness([row[name] for row in samples])
        outcome.figures[f"{name}_growth_pct"] = growth
        outcome.figures[f"{name}_spread_pct"] = spread
    outcome.figures["churn_connects"] = float(result.get("churn_connects", 0))
    outcome.figures["churn_connect_failures"] = float(result.get("churn_connect_failures", 0))
    outcome.figures["churn_refusals"] = float(result.get("churn_refusals", 0))
    outcome.figures["pushes_sent"] = float(result.get("pushes_sent", 0))
    outcome.checks["flat"] = soakchart.verdicts(outcome.figures)
    marked = None
    if attacks:
        outcome.checks["redteam"] = attacks
        outcome.checks["redteam_not_as_contract"] = sum(not (a["ok"] and a["healthy"]) for a in attacks)
        outcome.figures["redteam_inputs"] = float(len(attacks))
        marked = (attacks[0]["at_s"], max(a["at_s"] + a["seconds"] for a in attacks))
    if ctx.out is not None and samples:
        path = Path(ctx.out) / f"{ctx.name}-soak-{outcome.server}-{outcome.repetition + 1}.png"
        with contextlib.suppress(ImportError):
            soakchart.chart(path, samples, f"soak: {outcome.server}, run {outcome.repetition + 1}", marked)
            outcome.checks["chart"] = path.name
