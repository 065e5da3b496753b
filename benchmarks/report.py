"""Turns outcomes into the results: a markdown table of ratios, the per-run checks, a JSON dump, a chart."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Metric, Outcome
from benchmarks.scenarios import METRICS
from benchmarks.servers import NODE, SIO_PUSH

NAN = float("nan")


@dataclass
class Row:
    """One metric over every repetition: the median of each side, and their ratio (of those medians)."""

    metric: Metric
    sio_push: float
    node: float
    ratio: float
    runs: tuple[int, int]  # how many runs of each side the medians are taken over

    @property
    def met(self) -> bool | None:
        return self.metric.met(self.ratio)


def _figure(outcome: Outcome | None, figure: str) -> float:
    if outcome is None or not outcome.figures_valid:
        return NAN
    value = outcome.figures.get(figure, NAN)
    return value if math.isfinite(value) else NAN


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else NAN


def rows(outcomes: Sequence[Outcome]) -> list[Row]:
    """Each metric: the median over each server's runs (a run with a problem counts for nothing), and the
    ratio of the two medians shown, so that the ratio column follows from the columns beside it."""
    found: list[Row] = []
    for metric in METRICS:
        runs = [o for o in outcomes if o.scenario == metric.scenario]
        if not runs:
            continue
        sio = [v for o in runs if o.server == SIO_PUSH and math.isfinite(v := _figure(o, metric.figure))]
        node = [v for o in runs if o.server == NODE and math.isfinite(v := _figure(o, metric.figure))]
        a, b = _median(sio), _median(node)
        ratio = a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else NAN
        found.append(Row(metric, a, b, ratio, (len(sio), len(node))))
    return found


def _number(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "—"
    digits = {"KiB": 2, "ms": 1, "s": 2, "%": 1}.get(unit, 0)
    return f"{value:,.{digits}f}"


def _fmt(value: float, unit: str) -> str:
    text = _number(value, unit)
    return f"{text} {unit}".strip() if math.isfinite(value) else text


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.0f}%"


def markdown(outcomes: Sequence[Outcome], header: dict[str, str], title: str) -> str:
    """The whole report as markdown: how it was run, the ratio table, what each run checked and used."""
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "## Servers as started", "", *_settings(outcomes)]
    lines += [
        "",
        "## Figures",
        "",
        "Each server's column is the median of its runs (n = runs without a problem); ratio = sio-push's",
        "median / Node's median, the two numbers beside it. Higher is better for rates, lower for times,",
        "sizes and losses.",
        "",
        "| metric | sio-push | Node socket.io | ratio | target | met | n |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows(outcomes):
        m = row.metric
        better = "higher" if m.higher_is_better else "lower"
        ratio = f"{row.ratio:.2f}x" if math.isfinite(row.ratio) else "—"
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(
            f"| {m.title} ({better} is better) | {_fmt(row.sio_push, m.unit)} | {_fmt(row.node, m.unit)} "
            f"| {ratio} | {m.target_text()} | {met} | {row.runs[0]} / {row.runs[1]} |"
        )
    lines += [
        "",
        "## Every run: exactly-once checks and who was busy",
        "",
        "CPU % is over the measured window; 100% is one full core. The load generator kept up if its",
        "event-loop use stayed clearly under 1.0 while the server's CPU was near 100%.",
        "",
        "| scenario | server | run | sockets | delivered / expected | lost | dup | other events "
        "| server CPU | load gen CPU | load gen loop use | problems |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        c = o.checks
        delivered = f"{c.get('delivered', 0):,} / {c.get('expected', 0):,}" if c.get("expected") else "—"
        elu = o.loadgen_cpu.get("event_loop_utilization")
        problems = "; ".join([p.splitlines()[0] for p in o.problems] + o.warnings) or "none"
        lines.append(
            f"| {o.scenario} | {o.server} | {o.repetition + 1} | {c.get('sockets', '—')} | {delivered} "
            f"| {c.get('lost', 0)} | {c.get('duplicates', 0)} | {c.get('other_events', 0):,} "
            f"| {_pct(o.server_cpu_pct)} | {_pct(o.loadgen_cpu.get('cpu_pct'))} "
            f"| {'—' if elu is None else f'{elu:.2f}'} | {problems} |"
        )
    extra = _details(outcomes)
    if extra:
        lines += ["", "## Details", "", *extra]
    lines += _red_team(outcomes)
    return "\n".join(lines) + "\n"


def _red_team(outcomes: Sequence[Outcome]) -> list[str]:
    """The red-team inputs replayed during a soak (benchmarks/redteam.py), one row per input."""
    lines = []
    for o in outcomes:
        attacks = o.checks.get("redteam")
        if not attacks:
            continue
        lines += [
            "",
            f"## Red-team inputs replayed during the soak ({o.server}, run {o.repetition + 1})",
            "",
            "Started at the time shown (seconds into the measured soak, shaded red in the chart), one after",
            "another, while the soak's sockets, pushes and churn went on.",
            "",
            "| input | at (s) | took (s) | what the server did | as the contract says | healthy after |",
            "|---|---:|---:|---|---|---|",
        ]
        for a in attacks:
            lines.append(
                f"| {a.get('attack', '?')} | {a.get('at_s', math.nan):.0f} | {a.get('seconds', math.nan):.1f} "
                f"| {a.get('answer', '')} | {'yes' if a.get('ok') else 'NO'} | {'yes' if a.get('healthy') else 'NO'} |"
            )
    return lines


def _settings(outcomes: Sequence[Outcome]) -> list[str]:
    """Every distinct way a server was started, with the scenarios that started it so."""
    used: dict[tuple[str, str], list[str]] = {}
    for o in outcomes:
        key = (o.server, json.dumps(o.settings, sort_keys=True))
        if o.scenario not in used.setdefault(key, []):
            used[key].append(o.scenario)
    lines = []
    for (server, settings), scenarios in used.items():
        shown = json.loads(settings)
        command = shown.pop("command", "?")
        env = " ".join(f"{k}={v}" for k, v in shown.items())
        lines.append(f"- {server} ({', '.join(scenarios)}): `{command}` with only: `{env}`")
    return lines


def _details(outcomes: Sequence[Outcome]) -> list[str]:
    lines = []
    for o in outcomes:
        if o.error:
            continue
        figures = ", ".join(f"{k} {v:,.2f}" for k, v in o.figures.items() if math.isfinite(v))
        names = o.checks.get("other_event_names") or {}
        others = f"; other events: {json.dumps(names)}" if names else ""
        for key in ("flat", "chart", "reconnect_errors", "churn_errors", "presence_settled", "lost_examples"):
            if o.checks.get(key) not in (None, {}):
                others += f"; {key}: {json.dumps(o.checks[key])}"
        if o.tolerate:
            others += f"; reported, not counted as problems: {', '.join(o.tolerate)}"
        lines.append(f"- {o.scenario} / {o.server} / run {o.repetition + 1}: {figures}{others}")
    return lines


def write_json(path: Path, outcomes: Sequence[Outcome], header: dict[str, str]) -> None:
    data: dict[str, Any] = {
        "header": header,
        "rows": [
            {
                "metric": r.metric.title,
                "unit": r.metric.unit,
                "sio_push": r.sio_push,
                "node": r.node,
                "ratio": r.ratio,
                "runs": {"sio_push": r.runs[0], "node": r.runs[1]},
                "target": r.metric.target_text(),
                "met": r.met,
            }
            for r in rows(outcomes)
        ],
        "runs": [dataclasses.asdict(o) | {"problems": o.problems} for o in outcomes],
    }
    path.write_text(json.dumps(_no_nan(data), indent=2, default=str, allow_nan=False) + "\n")


def _no_nan(data: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _no_nan(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_no_nan(v) for v in data]
    return data


def chart(path: Path, outcomes: Sequence[Outcome], title: str) -> None:
    """One panel per metric: the two servers' medians side by side, the ratio and the target above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in rows(outcomes) if math.isfinite(r.sio_push) or math.isfinite(r.node)]
    if not table:
        return
    cols = min(5, len(table))
    lines = math.ceil(len(table) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(3.2 * cols, 4.2 * lines), squeeze=False)
    for ax in axes.flat[len(table) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, table, strict=False):
        m = row.metric
        values = [row.sio_push, row.node]
        shown = [v if math.isfinite(v) else 0.0 for v in values]
        bars = ax.bar(["sio-push", "Node"], shown, color=["#2f6db5", "#8a8a8a"])
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(_number(value, m.unit), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)  # fmt: skip
        ratio = f"{row.ratio:.2f}x" if math.isfinite(row.ratio) else "no ratio"
        colour = {True: "#1b7f2a", False: "#b3261e", None: "black"}[row.met]
        title = textwrap.fill(m.title, 34)  # long titles (the crowd's) would run into the next panel
        ax.set_title(f"{title}\n{ratio} (target {m.target_text()})", fontsize=8, color=colour)
        ax.set_ylabel(f"{m.unit} ({'higher' if m.higher_is_better else 'lower'} is better)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def calibration_markdown(outcomes: Sequence[Outcome], header: dict[str, str]) -> str:
    """The load generator's ceiling: fan-out against servers that do nothing but write."""
    lines = ["# Load generator calibration", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "The fan-out scenario against a stand-in server that only writes the frames. With one write per push",
        "and socket (what both real servers do) the two processes share the kernel's per-message work; with",
        "writes gathered, the load generator shows how far it goes when it is handed bigger reads.",
        "",
        "| server | run | deliveries/s | server CPU | load gen CPU | load gen loop use | problems |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        elu = o.loadgen_cpu.get("event_loop_utilization")
        lines.append(
            f"| {o.server} | {o.repetition + 1} | {_fmt(o.figures.get('deliveries_per_s', NAN), '')} "
            f"| {_pct(o.server_cpu_pct)} | {_pct(o.loadgen_cpu.get('cpu_pct'))} "
            f"| {'—' if elu is None else f'{elu:.2f}'} | {'; '.join(o.problems) or 'none'} |"
        )
    return "\n".join(lines) + "\n"
