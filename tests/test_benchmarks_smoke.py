"""The benchmark suite runs end to end (`python -m benchmarks --quick`) against sio-push and the Node peer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METRIC_ROWS = (
    "fan-out burst",
    "push-to-delivery latency p99",
    "push-to-delivery latency p50",
    "memory per idle joined socket",
    "connect + auth + join rate",
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
        timeout=110,
        check=False,
    )

    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    table = (tmp_path / "latest.md").read_text()
    assert proc.stdout.strip() == table.strip()
    for title in METRIC_ROWS:
        row = next((line for line in table.splitlines() if line.startswith(f"| {title} ")), None)
        assert row is not None, f"no row for {title} in:\n{table}"
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] != "—" and cells[2] != "—" and cells[3].endswith("x"), row
    results = json.loads((tmp_path / "latest.json").read_text())
    runs = results["runs"]
    assert {(r["scenario"], r["server"]) for r in runs} == {
        (scenario, server) for scenario in ("connect", "memory", "fanout", "latency") for server in ("sio-push", "node")
    }
    assert all(r["problems"] == [] for r in runs), [r["problems"] for r in runs]
    deliveries = [r for r in runs if r["scenario"] in ("fanout", "latency")]
    assert all(r["checks"]["delivered"] == r["checks"]["expected"] > 0 for r in deliveries)
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")
