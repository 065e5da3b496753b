"""The benchmark suite runs end to end (`python -m benchmarks --quick`) against sio-push and the Node peer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("connect", "memory", "fanout", "latency", "bigroom", "bigroom_burst", "storm")
METRIC_ROWS = (
    "fan-out burst",
    "push-to-delivery latency p99",
    "push-to-delivery latency p50",
    "memory per idle joined socket",
    "connect + auth + join rate",
    "big room, 64 in flight: connects",
    "big room, all at once: join ack p99",
    "storm: every socket back after",
    "storm: reconnect handshake p99",
)


def test_quick_benchmark_run_measures_both_servers_and_writes_the_table(tmp_path: Path) -> None:
    if not (REPO / "benchmarks" / "node_modules" / "socket.io").is_dir():
        pytest.fail("benchmarks/node_modules is missing: run `npm ci --prefix benchmarks` first")
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the benchmarks need Node 18 or newer")

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )

    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    table = (tmp_path / "quick.md").read_text()
    assert proc.stdout.strip() == table.strip()
    for line in ("- commit: ", "- command: python -m benchmarks --quick --out ", "- machine: "):
        assert f"\n{line}" in table, line
    assert "PUSH_SERVICE_KEY=(random, 32 bytes)" in table  # the settings are shown, the secrets are not
    for title in METRIC_ROWS:
        row = next((line for line in table.splitlines() if line.startswith(f"| {title} ")), None)
        assert row is not None, f"no row for {title} in:\n{table}"
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] != "—" and cells[2] != "—" and cells[3].endswith("x"), row
    results = json.loads((tmp_path / "quick.json").read_text())
    for row in results["rows"]:  # the ratio is that of the two medians shown beside it
        if row["ratio"] is not None:
            assert row["ratio"] == pytest.approx(row["sio_push"] / row["node"])
    runs = results["runs"]
    assert {(r["scenario"], r["server"]) for r in runs} == {
        (scenario, server) for scenario in SCENARIOS for server in ("sio-push", "node")
    }
    assert all(r["problems"] == [] for r in runs), [r["problems"] for r in runs]
    deliveries = [r for r in runs if r["scenario"] in ("fanout", "latency", "storm")]
    assert all(r["checks"]["delivered"] == r["checks"]["expected"] > 0 for r in deliveries)
    storm = [r for r in runs if r["scenario"] == "storm"]
    assert all(r["figures"]["recovered"] == r["checks"]["sockets"] for r in storm), storm
    assert (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")
