"""Child processes of the harness: starting them pinned, finding free ports, reading /proc, stopping them.

Every process is started in a session of its own and stopped by signalling that process group, so a
server with worker processes goes away whole, on success, on error and on Ctrl-C alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")

# Sets the CPU affinity, then becomes the real command: every thread the command starts inherits it.
_PIN = (
    "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


class BenchError(RuntimeError):
    """A benchmark could not run (a process failed to start, answered wrongly or ran out of time)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    """Raises this process's open-file limit (inherited by its children) to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def pinned(argv: Sequence[str], cpus: frozenset[int] | None) -> list[str]:
    """The command line that runs `argv` on `cpus` (unchanged when `cpus` is None)."""
    if cpus is None:
        return list(argv)
    return [sys.executable, "-c", _PIN, ",".join(str(c) for c in sorted(cpus)), *argv]


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS, KiB) of `pid` and its descendants, summed."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time (s) used so far by `pid` and its live descendants."""
    ticks = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLK_TCK


async def settled_rss(pid: int, *, interval: float = 0.25, samples: int = 6, max_seconds: float = 20.0) -> int:
    """RSS once it stopped moving: the last `samples` readings within 0.5% (or 256 KiB) of each other.

    Bounded by `max_seconds`; then the last reading is returned.
    """
    readings: list[int] = []
    deadline = time.monotonic() + max_seconds
    while True:
        readings.append(rss_kib(pid))
        recent = readings[-samples:]
        spread = max(recent) - min(recent)
        if len(recent) == samples and spread <= max(256, recent[-1] // 200):
            return recent[-1]
        if time.monotonic() > deadline:
            return readings[-1]
        await asyncio.sleep(interval)


async def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    cpus: frozenset[int] | None,
    stdin: bool = False,
    stdout: bool = False,
) -> asyncio.subprocess.Process:
    """Starts `argv` in a new session, stderr (and stdout unless piped) to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as log_file:
        return await asyncio.create_subprocess_exec(
            *pinned(argv, cpus),
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else log_file,
            stderr=log_file,
            start_new_session=True,
        )


async def stop(proc: asyncio.subprocess.Process, *, grace: float = 5.0) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds; waits for the process."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    # The group may outlive its leader (workers): make sure nothing of it is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
