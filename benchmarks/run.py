"""Command line of the benchmark suite: runs scenarios against sio-push and the Node peer, writes results.

python -m benchmarks                        # the core scenarios (a few minutes) -> results/core.md
python -m benchmarks --only crowd           # big room, storm, drain at 10,000 / 5,000 sockets
python -m benchmarks --only soak --repeat 1 --servers sio-push
python -m benchmarks --quick                # a smoke run of every scenario -> results/scratch/quick.md
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
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import procs, report
from benchmarks.common import FULL, QUICK, Context, Outcome
from benchmarks.scenarios import GROUPS, QUICK_SET, SCENARIOS, run_one
from benchmarks.servers import (
    BENCH_DIR,
    NODE,
    NODE_MODULES,
    REPO_DIR,
    SIO_PUSH,
    Secrets,
    ServerSpec,
    blaster_spec,
    node_spec,
    redis_version,
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
        help=f"run only these scenarios (repeatable or comma separated): {', '.join(SCENARIOS)}, "
        f"or the groups {', '.join(GROUPS)} (default: core; --quick: {', '.join(QUICK_SET)})",
    )
    p.add_argument(
        "--engine",
        choices=("memory", "redis"),
        default="memory",
        help="sio-push on PUSH_REDIS_URL and the peer on the redis-streams adapter, a fresh redis-server per run",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="N > 1: sio-push --workers N and a Node peer of N cluster workers, both on Redis (implies --engine redis)",
    )
    p.add_argument(
        "--peer-adapter",
        choices=("redis-streams", "cluster"),
        default=None,
        help="the multi-process peer's adapter (default redis-streams, on the same Redis as sio-push)",
    )
    p.add_argument("--name", default=None, help="the results' file name (default: from the scenarios and engine)")
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
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where NAME.md/.json/.png and logs/ go (default benchmarks/results/, quick runs results/scratch/)",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="instead: the fan-out against a do-nothing server, to show the load generator's own ceiling",
    )
    args = p.parse_args(argv)
    only = [name for item in args.only for name in item.split(",") if name]
    only = [scenario for name in only for scenario in GROUPS.get(name, (name,))]
    unknown = [n for n in only if n not in SCENARIOS]
    servers = [n for n in args.servers.split(",") if n]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if not servers or any(s not in SERVERS for s in servers):
        p.error(f"--servers takes {' and/or '.join(SERVERS)}")
    default = list(QUICK_SET if args.quick else GROUPS["core"])
    args.scenarios = list(dict.fromkeys(only)) or default
    args.servers = servers
    if args.processes < 1:
        p.error("--processes must be at least 1")
    if args.processes > 1:
        args.engine = "redis"
    if args.peer_adapter == "cluster" and args.processes < 2:
        p.error("--peer-adapter cluster needs --processes 2 or more")
    args.name = args.name or _name(args)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    try:
        args.sizes = (QUICK if args.quick else FULL).with_overrides(dict(args.size))
    except ValueError as exc:
        p.error(str(exc))
    return args


def _name(args: argparse.Namespace) -> str:
    """core, crowd, storm+drain, ... then -redis or -2proc: the results' file name."""
    if args.quick:
        return "quick"
    chosen = args.scenarios
    groups = [g for g, members in GROUPS.items() if list(members) == chosen]
    base = groups[0] if groups else "+".join(chosen)
    if args.processes > 1:
        return f"{base}-{args.processes}proc" + ("-cluster" if args.peer_adapter == "cluster" else "")
    return f"{base}-redis" if args.engine == "redis" else base


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
    redis = args.engine == "redis"
    n = args.processes
    specs = {
        SIO_PUSH: sio_push_spec(dict(args.sio_env), args.sio_arg, command, processes=n, redis=redis),
        NODE: node_spec(args.node, processes=n, redis=redis, adapter=args.peer_adapter),
    }
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
    pinning = "off"
    if server_cpus is not None:
        pinning = f"server on CPU {sorted(server_cpus)}, load generator on CPU {sorted(gen_cpus or ())}"
    return {
        "when": f"{args.started} to {datetime.datetime.now(datetime.UTC).strftime('%H:%M UTC')}",
        "commit": args.commit,
        "command": " ".join(("python -m benchmarks", shlex.join(args.argv))).strip(),
        "mode": f"{'quick' if args.quick else 'full'}, {args.repeat} repetition(s), a fresh server for every run",
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, Node {_node_version(args.node)}, {redis_version()}; "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "pinning": pinning,
        "engine": f"{args.engine}, {args.processes} process(es) per server"
        + ("; Redis: a fresh redis-server per run, on the server's CPUs" if args.engine == "redis" else "")
        + ("; drain always runs two processes per server on a fresh redis-server" if "drain" in args.scenarios else ""),
        "servers": "; ".join(f"{s.name}: {s.label}" for s in specs),
        "sizes": _sizes_text(args),
    }


def _sizes_text(args: argparse.Namespace) -> str:
    sizes = args.sizes
    chosen = set(args.scenarios)
    parts = {
        "connect": f"connect {sizes.connect_sockets} sockets ({sizes.connect_concurrency} in flight), "
        f"{_rooms(sizes.connect_room_size)}",
        "memory": f"memory {sizes.memory_sockets} idle joined sockets, {_rooms(sizes.memory_room_size)}",
        "fanout": f"fan-out {sizes.fanout_sockets} sockets x {sizes.fanout_pushes} pushes of ~{sizes.payload_bytes} B "
        f"({sizes.push_concurrency} POSTs in flight, each socket read at most every {sizes.read_pace_ms} ms "
        "until the last POST is answered)",
        "latency": f"latency {sizes.latency_sockets} sockets, {sizes.latency_rate:g} pushes/s "
        f"for {sizes.latency_seconds:g} s",
        "bigroom": f"bigroom {sizes.bigroom_sockets} sockets into room:bench, {sizes.connect_concurrency} in flight",
        "bigroom_burst": f"bigroom_burst {sizes.bigroom_sockets} sockets into room:bench, all at once",
        "storm": f"storm {sizes.storm_sockets} sockets in room:bench drop at once and reconnect (1 s +- 50%, "
        f"then socket.io-client's backoff) while {sizes.storm_rate:g} pushes/s go to it; "
        f"{sizes.storm_small_sockets} sockets in room:bench-small get {sizes.storm_small_rate:g} pushes/s; "
        f"pushes flow {sizes.crowd_quiet_s:g} s before the drop and {sizes.crowd_tail_s:g} s after the last return",
        "drain": f"drain {sizes.drain_sockets} sockets on one of two processes, SIGTERM, "
        f"{sizes.drain_rate:g} pushes/s through the other",
        "soak": f"soak {sizes.soak_sockets} sockets in rooms of {sizes.soak_room_size} for {sizes.soak_seconds:g} s, "
        f"{sizes.soak_rate:g} pushes/s, {sizes.soak_churn} connects and disconnects a second, "
        f"sampled every {sizes.soak_sample_s:g} s",
    }
    return "; ".join(text for name, text in parts.items() if name in chosen)


def _git(*argv: str) -> str:
    try:
        done = subprocess.run(["git", *argv], cwd=REPO_DIR, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def _commit() -> str:
    """The commit measured, and whether the tree differed from it (the results folder aside)."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    changed = [
        line for line in _git("status", "--porcelain").splitlines() if "benchmarks/results/" not in line and line
    ]
    return f"{commit}" + (f" plus uncommitted changes ({len(changed)} files)" if changed else " (clean tree)")


def _node_version(node: str) -> str:
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip()
    except OSError:
        return "?"


def _rooms(size: int) -> str:
    return "all in one room" if size <= 0 else f"rooms of {size}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    args.commit = _commit()  # before the run: what was measured, whatever changes while it runs
    args.started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    if not (NODE_MODULES / "socket.io").is_dir():
        print(f"benchmarks: {NODE_MODULES} is missing; install it with: npm ci --prefix benchmarks", file=sys.stderr)
        return 2
    s = args.sizes
    need = max(s.memory_sockets, s.fanout_sockets, s.connect_sockets, s.bigroom_sockets, s.storm_sockets) + 512
    limit = procs.raise_fd_limit()
    if limit < need:
        print(f"benchmarks: warning: open-file limit {limit} is under the {need} the sizes need", file=sys.stderr)
    pins = _pinning(args)
    specs = _specs(args)
    # Named results go in results/ and are meant to be committed; a quick run's go to results/scratch/.
    out: Path = args.out or (BENCH_DIR / "results" / ("scratch" if args.quick or args.calibrate else ""))
    logs = out / "logs" / args.name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    ctx = Context(args.sizes, Secrets(), args.node, pins[0], pins[1], logs, args.timeout, out, args.name)
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
    text = report.markdown(outcomes, header, f"sio-push vs Node socket.io 4.8: {args.name}")
    print(text)
    written = [out / f"{args.name}.md", out / f"{args.name}.json"]
    written[0].write_text(text)
    report.write_json(written[1], outcomes, header)
    if not args.no_chart:
        written.append(out / f"{args.name}.png")
        report.chart(written[-1], outcomes, f"sio-push vs Node socket.io 4.8, {args.name}: {header['when']}")
    print(f"written: {', '.join(str(p) for p in written)}; logs in {logs}", file=sys.stderr)
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
