"""Command line of the benchmark suite: runs every scenario against sio-push and the Node peer, writes results.

python -m benchmarks            # the full suite (a few minutes)
python -m benchmarks --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import shlex
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import procs, report
from benchmarks.scenarios import FULL, QUICK, SCENARIOS, Context, Outcome, run_one
from benchmarks.servers import (
    BENCH_DIR,
    NODE,
    NODE_MODULES,
    SIO_PUSH,
    Secrets,
    ServerSpec,
    blaster_spec,
    node_spec,
    sio_push_spec,
)

SERVERS = (SIO_PUSH, NODE)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _cpus(text: str) -> frozenset[int]:
    try:
        return frozenset(int(c) for c in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 0 or 0,1, got {text!r}") from exc


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these scenarios (repeatable or comma separated): {', '.join(SCENARIOS)}",
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="which servers, comma separated (default: both)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions of each scenario (default 3, quick 1)")
    p.add_argument(
        "--size",
        action="append",
        default=[],
        type=_pair,
        metavar="NAME=VALUE",
        help="override a scenario size, e.g. fanout_sockets=5000 (see scenarios.Sizes)",
    )
    p.add_argument(
        "--sio-env",
        action="append",
        default=[],
        type=_pair,
        metavar="NAME=VALUE",
        help="extra environment for sio-push, e.g. PUSH_REDIS_URL=redis://127.0.0.1:6379/5",
    )
    p.add_argument(
        "--sio-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for sio-push, e.g. --sio-arg=--workers --sio-arg=2",
    )
    p.add_argument("--sio-cmd", default=None, help="command that starts sio-push (default: python -m sio_push)")
    p.add_argument("--node", default=shutil.which("node") or "node", help="the node binary")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and the load generator to CPUs")
    p.add_argument("--server-cpus", type=_cpus, default=frozenset({0}), help="CPUs of the server (default 0)")
    p.add_argument(
        "--loadgen-cpus",
        type=_cpus,
        default=frozenset({1}),
        help="CPUs of the load generator and the harness (default 1)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="bound on one scenario run, seconds")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="where latest.md/.json/.png and logs go")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="instead: the fan-out against a do-nothing server, to show the load generator's own ceiling",
    )
    args = p.parse_args(argv)
    only = [name for item in args.only for name in item.split(",") if name]
    unknown = [n for n in only if n not in SCENARIOS]
    servers = [n for n in args.servers.split(",") if n]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if not servers or any(s not in SERVERS for s in servers):
        p.error(f"--servers takes {' and/or '.join(SERVERS)}")
    args.scenarios = only or list(SCENARIOS)
    args.servers = servers
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    try:
        args.sizes = (QUICK if args.quick else FULL).with_overrides(dict(args.size))
    except ValueError as exc:
        p.error(str(exc))
    return args


def _pinning(args: argparse.Namespace) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """CPUs for the server and the load generator, or (None, None) when pinning is off or impossible."""
    available = os.sched_getaffinity(0)
    server, gen = args.server_cpus, args.loadgen_cpus
    if args.no_pin or not (server <= available and gen <= available) or len(available) < 2:
        return None, None
    os.sched_setaffinity(0, gen)  # the harness itself mostly waits; keep it off the server's CPU
    return server, gen


def _specs(args: argparse.Namespace) -> list[ServerSpec]:
    if args.calibrate:
        return [blaster_spec(args.node, 0), blaster_spec(args.node, 2)]
    command = shlex.split(args.sio_cmd) if args.sio_cmd else None
    specs = {SIO_PUSH: sio_push_spec(dict(args.sio_env), args.sio_arg, command), NODE: node_spec(args.node)}
    return [specs[name] for name in args.servers]


async def _run_all(ctx: Context, specs: list[ServerSpec], scenarios: list[str], repeat: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for rep in range(repeat):
        for scenario in scenarios:
            # Alternate which server goes first, so a drifting machine favours neither.
            order = specs if rep % 2 == 0 else specs[::-1]
            for spec in order:
                outcome = await run_one(ctx, spec, scenario, rep)
                outcomes.append(outcome)
                _progress(outcome)
    return outcomes


def _progress(o: Outcome) -> None:
    figures = ", ".join(f"{k}={v:,.2f}" for k, v in o.figures.items())
    busy = f"server CPU {o.server_cpu_pct:.0f}%, " if o.server_cpu_pct is not None else ""
    gen = o.loadgen_cpu.get("cpu_pct")
    busy += f"load generator CPU {gen:.0f}%" if gen is not None else ""
    problems = f"  PROBLEMS: {'; '.join(p.splitlines()[0] for p in o.problems)}" if o.problems else ""
    problems += "".join(f"  WARNING: {w}" for w in o.warnings)
    print(
        f"[{o.scenario}] {o.server} run {o.repetition + 1}: {figures or '-'} ({busy.strip(', ')}){problems}",
        file=sys.stderr,
        flush=True,
    )
    if o.error:
        print(o.error, file=sys.stderr, flush=True)


def _header(
    args: argparse.Namespace, specs: list[ServerSpec], pins: tuple[frozenset[int] | None, frozenset[int] | None]
) -> dict[str, str]:
    server_cpus, gen_cpus = pins
    sizes = args.sizes
    pinning = "off"
    if server_cpus is not None:
        pinning = f"server on CPU {sorted(server_cpus)}, load generator on CPU {sorted(gen_cpus or ())}"
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": f"{'quick' if args.quick else 'full'}, {args.repeat} repetition(s), a fresh server for every run",
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "pinning": pinning,
        "servers": "; ".join(f"{s.name}: {s.label}" for s in specs),
        "sizes": (
            f"connect {sizes.connect_sockets} sockets ({sizes.connect_concurrency} in flight), "
            f"{_rooms(sizes.connect_room_size)}; "
            f"memory {sizes.memory_sockets} idle joined sockets, {_rooms(sizes.memory_room_size)}; "
            f"fan-out {sizes.fanout_sockets} sockets x {sizes.fanout_pushes} pushes of ~{sizes.payload_bytes} B "
            f"({sizes.push_concurrency} POSTs in flight, each socket read at most every {sizes.read_pace_ms} ms "
            "until the last POST is answered); "
            f"latency {sizes.latency_sockets} sockets, {sizes.latency_rate:g} pushes/s for {sizes.latency_seconds:g} s"
        ),
    }


def _rooms(size: int) -> str:
    return "all in one room" if size <= 0 else f"rooms of {size}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (NODE_MODULES / "socket.io").is_dir():
        print(f"benchmarks: {NODE_MODULES} is missing; install it with: npm ci --prefix benchmarks", file=sys.stderr)
        return 2
    need = max(args.sizes.memory_sockets, args.sizes.fanout_sockets, args.sizes.connect_sockets) + 512
    limit = procs.raise_fd_limit()
    if limit < need:
        print(f"benchmarks: warning: open-file limit {limit} is under the {need} the sizes need", file=sys.stderr)
    pins = _pinning(args)
    specs = _specs(args)
    out: Path = args.out
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    ctx = Context(args.sizes, Secrets(), args.node, pins[0], pins[1], logs, args.timeout)
    scenarios = ["fanout"] if args.calibrate else args.scenarios
    try:
        outcomes = asyncio.run(_main_task(ctx, specs, scenarios, args.repeat))
    except KeyboardInterrupt:
        print("benchmarks: interrupted; every started process was stopped", file=sys.stderr)
        return 130
    header = _header(args, specs, pins)
    if args.calibrate:
        text = report.calibration_markdown(outcomes, header)
        print(text)
        (out / "calibration.md").write_text(text)
        return 1 if any(o.problems for o in outcomes) else 0
    text = report.markdown(outcomes, header)
    print(text)
    (out / "latest.md").write_text(text)
    report.write_json(out / "latest.json", outcomes, header)
    if not args.no_chart:
        report.chart(out / "latest.png", outcomes, f"sio-push vs Node socket.io 4.8 — {header['when']}")
    print(
        f"written: {out / 'latest.md'}, latest.json{'' if args.no_chart else ', latest.png'}; logs in {logs}",
        file=sys.stderr,
    )
    return 1 if any(o.problems for o in outcomes) else 0


async def _main_task(ctx: Context, specs: list[ServerSpec], scenarios: list[str], repeat: int) -> list[Outcome]:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await _run_all(ctx, specs, scenarios, repeat)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
