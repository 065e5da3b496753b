"""The four core scenarios (connect, memory, fan-out, latency), the registry of every scenario, one run."""

from __future__ import annotations

import contextlib
from typing import Any

from benchmarks import crowd, procs
from benchmarks.common import Context, Metric, Outcome, Runner, drive
from benchmarks.servers import NODE, Running, ServerSpec, redis_server, serve


async def connect_rate(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    result = await drive(
        ctx,
        server,
        outcome,
        {
            "scenario": "connect",
            "sockets": s.connect_sockets,
            "room_size": s.connect_room_size,
            "concurrency": s.connect_concurrency,
        },
    )
    outcome.figures["connects_per_s"] = float(result["value"])


async def idle_memory(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    rss: dict[str, int] = {}

    async def measure(name: str, _message: dict[str, Any]) -> None:
        rss[name] = await procs.settled_rss(server.pid)

    await drive(
        ctx,
        server,
        outcome,
        {
            "scenario": "memory",
            "sockets": s.memory_sockets,
            "room_size": s.memory_room_size,
            "concurrency": s.connect_concurrency,
        },
        measure,
    )
    if "baseline" not in rss or "loaded" not in rss:
        raise procs.BenchError("memory scenario ended before both measurements")
    outcome.figures["rss_baseline_mib"] = rss["baseline"] / 1024
    outcome.figures["rss_loaded_mib"] = rss["loaded"] / 1024
    outcome.figures["kib_per_socket"] = (rss["loaded"] - rss["baseline"]) / s.memory_sockets


async def fanout(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    config = {
        "scenario": "fanout",
        "sockets": s.fanout_sockets,
        "pushes": s.fanout_pushes,
        "concurrency": s.connect_concurrency,
        "push_concurrency": s.push_concurrency,
        "payload_bytes": s.payload_bytes,
        "read_pace_ms": s.read_pace_ms,
    }
    result = await drive(ctx, server, outcome, config)
    outcome.figures["deliveries_per_s"] = float(result["value"])
    outcome.figures["elapsed_s"] = float(result["elapsed_s"])
    outcome.figures["payload_bytes"] = float(result["payload_bytes"])


async def latency(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    config = {
        "scenario": "latency",
        "sockets": s.latency_sockets,
        "pushes": max(1, round(s.latency_rate * s.latency_seconds)),
        "rate": s.latency_rate,
        "concurrency": s.connect_concurrency,
        "payload_bytes": s.payload_bytes,
    }
    result = await drive(ctx, server, outcome, config)
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        value = result.get(key)
        outcome.figures[key] = float(value) if isinstance(value, int | float) else float("nan")


SCENARIOS: dict[str, Runner] = {
    "connect": connect_rate,
    "memory": idle_memory,
    "fanout": fanout,
    "latency": latency,
    "bigroom": crowd.bigroom,
    "bigroom_burst": crowd.bigroom_burst,
    "storm": crowd.storm,
    "drain": crowd.drain,
    "soak": crowd.soak,
}
# Names `--only` also takes for several scenarios at once. With no `--only`, the core set runs.
GROUPS = {
    "core": ("connect", "memory", "fanout", "latency"),
    "crowd": ("bigroom", "bigroom_burst", "storm", "drain"),
}
# What --quick runs by default: every scenario that takes a few seconds at tiny sizes (drain and soak
# take longer; `--quick --only drain,soak` runs them).
QUICK_SET = (*GROUPS["core"], "bigroom", "bigroom_burst", "storm")
# Scenarios that run two processes sharing a Redis, whatever engine was asked for.
NEEDS_REDIS = frozenset({"drain"})


def scenario_spec(ctx: Context, spec: ServerSpec, scenario: str) -> ServerSpec:
    """The server as this scenario starts it: on Redis for the drain; the Node peer with recovery on in
    storm and drain (sio-push has it on by default), so that both are asked to lose nothing."""
    if scenario in NEEDS_REDIS:
        spec = spec.with_redis()
    if spec.name == NODE and scenario in ("storm", "drain"):
        seconds = str(ctx.sizes.recovery_seconds)
        spec = spec.with_env(f"connection state recovery {seconds} s", {"PEER_RECOVERY_SECONDS": seconds})
    return spec


async def run_one(ctx: Context, spec: ServerSpec, scenario: str, repetition: int) -> Outcome:
    """Starts a fresh server (and Redis, if it uses one), runs the scenario, stops both; errors end up
    in the outcome."""
    spec = scenario_spec(ctx, spec, scenario)
    outcome = Outcome(scenario, spec.name, repetition, settings=spec.settings())
    log = ctx.logs / f"{scenario}-{spec.name}-{repetition}.server.log"
    try:
        async with contextlib.AsyncExitStack() as stack:
            redis_url = None
            if spec.uses_redis:
                redis_log = ctx.logs / f"{scenario}-{spec.name}-{repetition}.redis.log"
                redis_url = await stack.enter_async_context(redis_server(log=redis_log, cpus=ctx.server_cpus))
            server = await stack.enter_async_context(
                serve(spec, ctx.keys, log=log, cpus=ctx.server_cpus, redis_url=redis_url)
            )
            await SCENARIOS[scenario](ctx, server, outcome)
    except procs.BenchError as exc:
        outcome.error = str(exc)
    return outcome


METRICS = (
    Metric("fanout", "deliveries_per_s", "fan-out burst", "deliveries/s", True, 1.5),
    Metric("latency", "p99_ms", "push-to-delivery latency p99", "ms", False, 1.0),
    Metric("latency", "p50_ms", "push-to-delivery latency p50", "ms", False),
    Metric("memory", "kib_per_socket", "memory per idle joined socket", "KiB", False, 1.0, strict=True),
    Metric("connect", "connects_per_s", "connect + auth + join rate", "connects/s", True, 1.0),
    *(
        metric
        for scenario, how in (("bigroom", "64 in flight"), ("bigroom_burst", "all at once"))
        for metric in (
            Metric(scenario, "connects_per_s", f"big room, {how}: connects", "connects/s", True, 1.0),
            Metric(scenario, "join_ack_ms_p50", f"big room, {how}: join ack p50", "ms", False),
            Metric(scenario, "join_ack_ms_p99", f"big room, {how}: join ack p99", "ms", False),
            Metric(scenario, "presence_bytes_mean", f"big room, {how}: presence bytes per joiner, mean", "B", False),
            Metric(scenario, "presence_bytes_max", f"big room, {how}: presence bytes per joiner, max", "B", False),
            Metric(
                scenario,
                "large_join_bytes_p99",
                f"big room, {how}: presence bytes per joiner once large (counts aside), p99",
                "B",
                False,
            ),
            Metric(scenario, "presence_settle_s", f"big room, {how}: presence traffic settled after", "s", False),
        )
    ),
    Metric("storm", "all_back_s", "storm: every socket back after", "s", False, 1.0),
    Metric("storm", "reconnect_failures", "storm: sockets that never came back", "", False),
    Metric("storm", "handshake_ms_p99", "storm: reconnect handshake p99", "ms", False),
    Metric("storm", "pushes_lost", "storm: pushes lost (all sockets)", "", False),
    Metric("storm", "pushes_doubled", "storm: pushes doubled (all sockets)", "", False),
    Metric("storm", "recovered", "storm: sessions recovered", "", True),
    Metric("storm", "small_quiet_ms_p99", "storm: small-room push latency p99, quiet", "ms", False),
    Metric("storm", "small_storm_ms_p99", "storm: small-room push latency p99, during the storm", "ms", False),
    Metric("drain", "all_back_s", "drain: every socket on the other process after", "s", False),
    Metric("drain", "drops_spread_s", "drain: first to last drop", "s", False),
    Metric("drain", "peak_reconnects_per_s", "drain: peak connects/s the other process took", "connects/s", False),
    Metric("drain", "pushes_lost", "drain: pushes lost (all sockets)", "", False),
    Metric("drain", "pushes_doubled", "drain: pushes doubled (all sockets)", "", False),
    Metric("soak", "rss_mib_growth_pct", "soak: RSS growth after warm-up", "%", False),
    Metric("soak", "fds_growth_pct", "soak: open files growth after warm-up", "%", False),
    Metric("soak", "sockets_metric_growth_pct", "soak: sio_push_sockets growth after warm-up", "%", False),
    Metric("soak", "tasks_growth_pct", "soak: asyncio tasks growth after warm-up", "%", False),
    Metric("soak", "churn_connect_failures", "soak: failed churn connects", "", False),
)
