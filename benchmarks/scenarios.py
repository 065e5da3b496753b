"""The four scenarios, run against one freshly started server each time, and the metrics read from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import driver, procs
from benchmarks.servers import Running, Secrets, ServerSpec, serve


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. `--quick` shrinks them to a smoke run of a few seconds."""

    connect_sockets: int = 2000
    connect_room_size: int = 100
    memory_sockets: int = 5000
    memory_room_size: int = 100
    fanout_sockets: int = 2000
    fanout_pushes: int = 200
    latency_sockets: int = 1000
    latency_rate: float = 20.0
    latency_seconds: float = 10.0
    payload_bytes: int = 500
    connect_concurrency: int = 64
    push_concurrency: int = 8
    read_pace_ms: int = 100

    def with_overrides(self, overrides: dict[str, str]) -> Sizes:
        known = sorted(f.name for f in dataclasses.fields(self))
        changes: dict[str, Any] = {}
        for name, text in overrides.items():
            if name not in known:
                raise ValueError(f"unknown size {name!r}; known: {', '.join(known)}")
            changes[name] = float(text) if isinstance(getattr(self, name), float) else int(text)
        return dataclasses.replace(self, **changes)


FULL = Sizes()
QUICK = Sizes(
    connect_sockets=40,
    memory_sockets=60,
    fanout_sockets=40,
    fanout_pushes=10,
    latency_sockets=20,
    latency_rate=20.0,
    latency_seconds=1.0,
)


# Above this share of the measured window busy, the load generator may have been the limit.
SATURATED_LOOP = 0.95


@dataclass
class Context:
    """What every scenario run needs besides the server."""

    sizes: Sizes
    keys: Secrets
    node: str
    server_cpus: frozenset[int] | None
    loadgen_cpus: frozenset[int] | None
    logs: Path
    timeout: float = 300.0


@dataclass
class Outcome:
    """One scenario run against one server."""

    scenario: str
    server: str
    repetition: int
    figures: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    loadgen_cpu: dict[str, float] = field(default_factory=dict)
    server_cpu_pct: float | None = None
    error: str | None = None

    @property
    def warnings(self) -> list[str]:
        """Signs that a figure may say more about the load generator than about the server."""
        elu = self.loadgen_cpu.get("event_loop_utilization")
        if elu is not None and elu > SATURATED_LOOP:
            return [f"load generator busy {elu:.0%} of the window: the figure may understate the server"]
        return []

    @property
    def problems(self) -> list[str]:
        """What went wrong: any lost, duplicated or unexpected delivery, failure or error."""
        found = [self.error] if self.error else []
        for key in _PROBLEM_KEYS:
            count = self.checks.get(key, 0)
            if count:
                found.append(f"{key}={count}")
        if self.checks.get("setup_settled") is False:
            found.append("the traffic caused by connecting had not died down when the measurement began")
        return found


Runner = Callable[[Context, Running, Outcome], Awaitable[None]]

_PROBLEM_KEYS = (
    "lost",
    "duplicates",
    "unknown_seq",
    "malformed",
    "connect_failures",
    "push_failures",
    "unexpected_closes",
)
_CHECK_KEYS = (
    *_PROBLEM_KEYS,
    *("sockets", "expected", "delivered", "connect_errors", "push_statuses", "other_events", "other_event_names"),
    *("pings_answered", "setup_s", "setup_connect_s", "setup_settled"),
)


async def _drive(
    ctx: Context,
    server: Running,
    outcome: Outcome,
    config: dict[str, Any],
    on_checkpoint: driver.Checkpoint | None = None,
) -> dict[str, Any]:
    log = ctx.logs / f"{outcome.scenario}-{outcome.server}-{outcome.repetition}.loadgen.log"
    result, window = await driver.run(
        {"deadline_s": ctx.timeout, **config},
        server=server,
        keys=ctx.keys,
        node=ctx.node,
        cpus=ctx.loadgen_cpus,
        log=log,
        time_limit=ctx.timeout,
        on_checkpoint=on_checkpoint,
    )
    outcome.checks = {k: result[k] for k in _CHECK_KEYS if k in result}
    outcome.loadgen_cpu = dict(result.get("loadgen", {}))
    if window is not None:
        outcome.server_cpu_pct = window.server_cpu_pct
    return result


async def connect_rate(ctx: Context, server: Running, outcome: Outcome) -> None:
    s = ctx.sizes
    result = await _drive(
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

    await _drive(
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
    result = await _drive(ctx, server, outcome, config)
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
    result = await _drive(ctx, server, outcome, config)
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        value = result.get(key)
        outcome.figures[key] = float(value) if isinstance(value, int | float) else float("nan")


SCENARIOS: dict[str, Runner] = {"connect": connect_rate, "memory": idle_memory, "fanout": fanout, "latency": latency}


async def run_one(ctx: Context, spec: ServerSpec, scenario: str, repetition: int) -> Outcome:
    """Starts a fresh server, runs the scenario against it, stops it; errors end up in the outcome."""
    outcome = Outcome(scenario, spec.name, repetition)
    log = ctx.logs / f"{scenario}-{spec.name}-{repetition}.server.log"
    try:
        async with serve(spec, ctx.keys, log=log, cpus=ctx.server_cpus) as server:
            await SCENARIOS[scenario](ctx, server, outcome)
    except procs.BenchError as exc:
        outcome.error = str(exc)
    return outcome


@dataclass(frozen=True)
class Metric:
    """One row of the results table: a figure of one scenario and the ratio it should reach."""

    scenario: str
    figure: str
    title: str
    unit: str
    higher_is_better: bool
    target: float | None = None  # on the ratio sio-push / Node
    strict: bool = False  # the ratio must be strictly beyond the target

    def target_text(self) -> str:
        if self.target is None:
            return "(info)"
        if self.higher_is_better:
            return f"{'>' if self.strict else '≥'} {self.target:g}x"
        return f"{'<' if self.strict else '≤'} {self.target:g}x"

    def met(self, ratio: float) -> bool | None:
        if self.target is None or ratio != ratio:  # NaN: no ratio
            return None
        if self.higher_is_better:
            return ratio > self.target if self.strict else ratio >= self.target
        return ratio < self.target if self.strict else ratio <= self.target


METRICS = (
    Metric("fanout", "deliveries_per_s", "fan-out burst", "deliveries/s", True, 1.5),
    Metric("latency", "p99_ms", "push-to-delivery latency p99", "ms", False, 1.0),
    Metric("latency", "p50_ms", "push-to-delivery latency p50", "ms", False),
    Metric("memory", "kib_per_socket", "memory per idle joined socket", "KiB", False, 1.0, strict=True),
    Metric("connect", "connects_per_s", "connect + auth + join rate", "connects/s", True, 1.0),
)
