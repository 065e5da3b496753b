"""What every scenario shares: sizes, the run's context, an outcome, driving the load generator, metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import driver
from benchmarks.servers import Running, Secrets


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
    # the crowd scenarios (crowd.py): one big room, a reconnect storm, a drain, a soak
    bigroom_sockets: int = 10_000
    storm_sockets: int = 10_000
    storm_rate: float = 10.0  # pushes/s to the big room during the storm
    storm_small_sockets: int = 5
    storm_small_rate: float = 20.0
    crowd_quiet_s: float = 5.0  # storm, drain: pushes flow this long before the drop
    crowd_tail_s: float = 3.0  # storm, drain: and this long after every socket is back
    drain_sockets: int = 5000
    drain_rate: float = 10.0
    soak_sockets: int = 10_000
    soak_seconds: float = 600.0
    soak_churn: int = 50  # connects and disconnects a second
    soak_rate: float = 10.0  # pushes/s, each to one room of soak_room_size in turn
    soak_room_size: int = 100
    soak_sample_s: float = 10.0
    soak_redteam_scale: float = 1.0  # the red-team inputs replayed a third of the way in (0: none)
    recovery_seconds: int = 120  # the Node peer's connectionStateRecovery window in storm and drain

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
    bigroom_sockets=40,
    storm_sockets=40,
    crowd_quiet_s=1.0,
    crowd_tail_s=0.5,
    drain_sockets=40,
    soak_sockets=40,
    soak_seconds=3.0,
    soak_churn=5,
    soak_room_size=10,
    soak_sample_s=0.5,
    soak_redteam_scale=0.0,
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
    out: Path | None = None  # where a scenario writes files of its own (the soak's chart)
    name: str = "results"  # the results' name, which those files start with


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
    settings: dict[str, str] = field(default_factory=dict)  # how the server was started (secrets hidden)
    tolerate: tuple[str, ...] = ()  # checks reported but not counted as problems (the peer's losses)
    measured: tuple[str, ...] = ()  # checks that are problems, but leave the run's other figures valid
    series: list[dict[str, float]] = field(default_factory=list)  # the soak's samples

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
            if key in self.tolerate:
                continue
            count = self.checks.get(key, 0)
            if count:
                found.append(f"{key}={count}")
        if self.checks.get("setup_settled") is False:
            found.append("the traffic caused by connecting had not died down when the measurement began")
        return found

    @property
    def figures_valid(self) -> bool:
        """Whether the figures count: no problem, or only those the scenario measures (storm's losses)."""
        return not [p for p in self.problems if p.split("=", 1)[0] not in self.measured]


Runner = Callable[[Context, Running, Outcome], Awaitable[None]]

_PROBLEM_KEYS = (
    "lost",
    "duplicates",
    "unknown_seq",
    "malformed",
    "connect_failures",
    "push_failures",
    "unexpected_closes",
    "reconnect_failures",
    "redteam_not_as_contract",
)
_CHECK_KEYS = (
    *_PROBLEM_KEYS,
    *("sockets", "expected", "delivered", "connect_errors", "push_statuses", "other_events", "other_event_names"),
    *("pings_answered", "setup_s", "setup_connect_s", "setup_settled"),
    *("reconnect_errors", "churn_errors", "lost_examples"),
)


async def drive(
    ctx: Context,
    server: Running,
    outcome: Outcome,
    config: dict[str, Any],
    on_checkpoint: driver.Checkpoint | None = None,
    *,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """Runs the load generator through one scenario; keeps its checks and CPU figures in `outcome`."""
    limit = time_limit or ctx.timeout
    log = ctx.logs / f"{outcome.scenario}-{outcome.server}-{outcome.repetition}.loadgen.log"
    result, window = await driver.run(
        {"deadline_s": limit, **config},
        server=server,
        keys=ctx.keys,
        node=ctx.node,
        cpus=ctx.loadgen_cpus,
        log=log,
        time_limit=limit,
        on_checkpoint=on_checkpoint,
    )
    outcome.checks = {k: result[k] for k in _CHECK_KEYS if k in result}
    outcome.loadgen_cpu = dict(result.get("loadgen", {}))
    if window is not None:
        outcome.server_cpu_pct = window.server_cpu_pct
    return result


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
