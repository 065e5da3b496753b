"""Could `websockets`' sans-I/O `ServerProtocol` or `picows` replace sio-push's websocket codec? Measured.

    python -m benchmarks.codecs [--sockets 5000] [--pushes 40] [--megabytes 16] [--repeat 3]

For each codec a server (benchmarks/codec_servers.py) runs pinned to CPU 0 and this process, the client,
to CPU 1. Per run and codec:

- memory: RSS of the server with N idle websockets open, minus its RSS before (after 100 connections
  came and went), over N;
- fan-out: K pushes of a ~500-byte message to all N (ours: framed once, written to each; websockets:
  `send_text` + `data_to_send()` per connection; picows: `send` per connection): server CPU time per
  delivery, and deliveries/s as the clients count them;
- parsing: the server CPU time to parse 1 MiB of masked client text frames (32 and 500-byte payloads),
  sent on one more connection.

Ratios are library / ours, each the median over the runs of that run's ratio. The figures go to
benchmarks/results/codecs.md. websockets and picows are not dependencies of sio-push: see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import procs
from .codec_servers import CODECS, END, PATH, PAYLOAD

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SERVER_CPUS, CLIENT_CPUS = frozenset({0}), frozenset({1})
PARSE_SIZES = (32, 500)  # payload bytes of the client frames parsed
OPENING = 100  # handshakes in flight
SECONDS = 120.0  # for any one step


def _frame(payload: bytes, mask: bytes | None = None) -> bytes:
    """A final text frame; masked (as a client sends it) when `mask` is given."""
    size = len(payload)
    length = bytes((size,)) if size < 126 else bytes((126,)) + size.to_bytes(2, "big")
    if mask is None:
        return bytes((0x81,)) + length + payload
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (size // 4 + 1))[:size], "big")).to_bytes(
        size, "big"
    )
    return bytes((0x81, length[0] | 0x80)) + length[1:] + mask + masked


class Client(asyncio.Protocol):
    """One raw websocket client: sends the handshake, then counts the bytes that come (and `end` replies)."""

    def __init__(self, port: int, done: Counter) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = bytearray()
        self.received = 0
        self.expected = 0
        self.first = b""  # the first bytes after the handshake, to check the frames
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(procs.BenchError(self.head[:end].decode("latin-1")))
                return
            self.opened.set_result(None)
            data = bytes(self.head[end + 4 :])
        if len(self.first) < 1024:
            self.first += data[:1024]
        before, self.received = self.received, self.received + len(data)
        if before < self.expected <= self.received:
            self.done.add()

    def expect(self, more: int) -> None:
        self.expected = self.received + more


@dataclass
class Counter:
    """Counts clients that got all they expect; `event` is set when `target` of them have."""

    target: int = 0
    count: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, target: int) -> None:
        self.target, self.count = target, 0
        self.event.clear()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.event.set()


class Server:
    """A running codec server and its command pipe."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0

    async def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        line = await asyncio.wait_for(self.proc.stdout.readline(), SECONDS)
        if not line:
            raise procs.BenchError(f"the server ended at {command!r}")
        return line.decode().strip()

    async def wait_count(self, count: int) -> None:
        for _ in range(int(SECONDS * 10)):
            if int(await self.ask("count")) == count:
                return
            await asyncio.sleep(0.1)
        raise procs.BenchError(f"the server never had {count} connections")


async def _open(port: int, count: int, done: Counter) -> list[Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPENING)

    async def one() -> Client:
        async with gate:
            client = Client(port, done)
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            await asyncio.wait_for(client.opened, SECONDS)
            return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _close(clients: list[Client]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.close()


async def run_codec(codec: str, args: argparse.Namespace, log: Path) -> dict[str, float]:
    """One run of every measurement against one codec's server."""
    proc = await procs.start(
        [sys.executable, "-m", "benchmarks.codec_servers", codec],
        env=os.environ,
        cwd=ROOT,
        log=log,
        cpus=SERVER_CPUS,
        stdin=True,
        stdout=True,
    )
    server = Server(proc)
    figures: dict[str, float] = {}
    clients: list[Client] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), SECONDS)).decode().split()
        if not line or line[0] != "port":
            raise procs.BenchError(f"{codec} server did not start:\n{procs.tail(log)}")
        server.port = int(line[1])
        done = Counter()
        _close(await _open(server.port, OPENING, done))  # lazy set-up goes into the baseline
        await server.wait_count(0)
        before = await procs.settled_rss(proc.pid)
        clients = await _open(server.port, args.sockets, done)
        await server.wait_count(args.sockets)
        figures["bytes/socket"] = (await procs.settled_rss(proc.pid) - before) * 1024 / args.sockets
        figures.update(await _fanout(server, clients, done, args.pushes))
        figures.update(await _parse(server, args.megabytes))
    finally:
        _close(clients)
        await procs.stop(proc)
    return figures


async def _fanout(server: Server, clients: list[Client], done: Counter, pushes: int) -> dict[str, float]:
    frame = _frame(PAYLOAD)
    done.reset(len(clients))
    for client in clients:
        client.expect(pushes * len(frame))
    started = asyncio.get_running_loop().time()
    cpu = float(await server.ask(f"fanout {pushes}"))
    await asyncio.wait_for(done.event.wait(), SECONDS)
    elapsed = asyncio.get_running_loop().time() - started
    if any(not client.first.startswith(frame) for client in clients):
        raise procs.BenchError("a client's first frame is not the push")
    deliveries = pushes * len(clients)
    return {"fanout us/delivery": cpu / deliveries * 1e6, "deliveries/s": deliveries / elapsed}


async def _parse(server: Server, megabytes: int) -> dict[str, float]:
    """Server CPU time per MiB of masked client frames, for each of PARSE_SIZES."""
    figures = {}
    done = Counter()
    (client,) = await _open(server.port, 1, done)
    assert client.transport is not None
    reply = len(_frame(END.encode()))
    for size in PARSE_SIZES:
        payload = (PAYLOAD * (size // len(PAYLOAD) + 1))[:size]
        frames = [_frame(payload, os.urandom(4)) for _ in range(64)]
        mib = b"".join(frames) * ((1 << 20) // sum(map(len, frames)) + 1)
        done.reset(1)
        client.expect(reply)
        before = float(await server.ask("cpu"))
        for _ in range(megabytes):
            client.transport.write(mib)
        client.transport.write(_frame(END.encode(), os.urandom(4)))
        await asyncio.wait_for(done.event.wait(), SECONDS)
        cpu = float(await server.ask("cpu")) - before
        figures[f"parse ms/MiB ({size} B frames)"] = cpu * 1000 / (megabytes * len(mib) / (1 << 20))
    client.transport.close()
    return figures


def _versions() -> str:
    found = []
    for name in ("websockets", "picows"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found)


def _markdown(runs: list[dict[str, dict[str, float]]], args: argparse.Namespace, argv: list[str]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    names = list(runs[0]["ours"])
    others = [codec for codec in CODECS if codec != "ours"]
    lines = [
        "# Websocket codecs side by side: sio-push's, websockets' ServerProtocol, picows (2 read buffer sizes)",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {commit.stdout.strip()}"
        + (" with uncommitted changes" if dirty.stdout.strip() else ""),
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine is shared)",
        f"- command: `{' '.join(['python -m benchmarks.codecs', *argv])}`",
        f"- cores: {os.cpu_count()} ({cpu}); server pinned to CPU 0, client to CPU 1",
        f"- Python {platform.python_version()}, {_versions()}",
        f"- {args.sockets} sockets, {args.pushes} pushes of {len(PAYLOAD)} bytes, {args.megabytes} MiB parsed per "
        f"frame size; medians of {len(runs)} runs",
        "",
        "| figure | " + " | ".join(CODECS) + " | " + " | ".join(f"{codec} / ours" for codec in others) + " |",
        "|---|" + "---:|" * (2 * len(CODECS) - 1),
    ]
    for name in names:
        cells = [statistics.median(run[codec][name] for run in runs) for codec in CODECS]
        ratios = [statistics.median(run[codec][name] / run["ours"][name] for run in runs) for codec in CODECS]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{c:,.2f}" for c in cells)
            + " | "
            + " | ".join(f"{r:.2f}x" for r in ratios[1:])
            + " |"
        )
    lines += ["", "Every run:", ""]
    for i, run in enumerate(runs, 1):
        for codec, figures in run.items():
            lines.append(f"- run {i}, {codec}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()))
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace, argv: list[str]) -> int:
    procs.raise_fd_limit()
    os.sched_setaffinity(0, CLIENT_CPUS)
    runs = []
    for repetition in range(args.repeat):
        order = list(CODECS) if repetition % 2 == 0 else list(reversed(CODECS))
        run: dict[str, dict[str, float]] = {}
        for codec in order:
            run[codec] = await run_codec(codec, args, RESULTS / "logs" / f"codecs-{codec}-{repetition + 1}.log")
            print(f"run {repetition + 1} {codec}: {run[codec]}", flush=True)
        runs.append({codec: run[codec] for codec in CODECS})
    report = _markdown(runs, args, argv)
    (RESULTS / "codecs.md").write_text(report)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--pushes", type=int, default=40)
    parser.add_argument("--megabytes", type=int, default=16, help="MiB of client frames parsed per frame size")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args, argv))


if __name__ == "__main__":
    sys.exit(main())
