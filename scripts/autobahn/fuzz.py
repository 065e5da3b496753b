"""Autobahn|Testsuite's fuzzing client against sio-push's websocket codec (see README.md beside this).

Starts the echo server of echo.py on a free loopback port, writes the fuzzingclient spec, runs
`wstest -m fuzzingclient`, then reads the report's index.json and prints the counts of each behaviour
per case group. Exits 1 when any case FAILED (in its behaviour or its closing behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter, defaultdict
from pathlib import Path

import echo

AGENT = "sio-push"
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
WSTEST_SECONDS = 1800  # the whole run; a healthy one takes a minute or two


def write_spec(outdir: Path, port: int, cases: list[str]) -> Path:
    """The fuzzingclient spec: every case of `cases` against the echo server, none excluded."""
    outdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "outdir": str(outdir / "reports"),
        "servers": [{"agent": AGENT, "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    path = outdir / "spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


async def fuzz(wstest: str, outdir: Path, cases: list[str]) -> int:
    server = await echo.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec_path = write_spec(outdir, port, cases)
    print(f"echo server (codec: {echo.CODEC}) on ws://127.0.0.1:{port}; wstest output in {outdir}/wstest.log")
    async with server:
        with (outdir / "wstest.log").open("wb") as output:
            proc = await asyncio.create_subprocess_exec(
                wstest, "-m", "fuzzingclient", "-s", str(spec_path), stdout=output, stderr=output, cwd=outdir
            )
            try:
                code = await asyncio.wait_for(proc.wait(), WSTEST_SECONDS)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                print(f"wstest did not finish in {WSTEST_SECONDS} s", file=sys.stderr)
                return 2
    if code != 0:
        print(f"wstest exited with {code}; see {outdir}/wstest.log", file=sys.stderr)
        return 2
    return summarize(outdir / "reports")


def _group(case: str) -> str:
    return case.split(".")[0]


def _order(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def summarize(reports: Path) -> int:
    """Print the behaviours per case group and every failed case; 1 if any case FAILED, else 0."""
    index = json.loads((reports / "index.json").read_text())[AGENT]
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    failed = []
    others: dict[str, list[str]] = defaultdict(list)  # the cases neither OK nor FAILED, by behaviour
    for case, result in index.items():
        groups[_group(case)][result["behavior"]] += 1
        if "FAILED" in (result["behavior"], result["behaviorClose"]):
            failed.append(case)
        elif result["behavior"] != "OK":
            others[result["behavior"]].append(case)
    print(f"{'group':>5} {'cases':>5} " + " ".join(f"{b:>13}" for b in BEHAVIORS))
    total: Counter[str] = Counter()
    for group in sorted(groups, key=int):
        counts = groups[group]
        total.update(counts)
        print(f"{group:>5} {sum(counts.values()):>5} " + " ".join(f"{counts[b]:>13}" for b in BEHAVIORS))
    print(f"{'all':>5} {sum(total.values()):>5} " + " ".join(f"{total[b]:>13}" for b in BEHAVIORS))
    for behavior, cases in sorted(others.items()):
        print(f"{behavior}: {' '.join(sorted(cases, key=_order))}")
    for case in sorted(failed, key=_order):
        result = index[case]
        detail = json.loads((reports / result["reportfile"]).read_text())
        print(f"\nFAILED {case} (behavior {result['behavior']}, close {result['behaviorClose']})")
        print(f"  {detail.get('description', '')}")
        print(f"  expected: {detail.get('expectation', detail.get('expected'))}")
        print(f"  result:   {detail.get('result')} {detail.get('resultClose', '')}")
    print(f"\n{len(failed)} FAILED" if failed else "\nno case FAILED")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wstest", help="the wstest command of Autobahn|Testsuite")
    parser.add_argument("--out", type=Path, required=True, help="folder for the spec, the log and the reports")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case patterns")
    parser.add_argument("--summary-only", action="store_true", help="only summarize the reports already in --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.summary_only:
        return summarize(args.out / "reports")
    if not args.wstest:
        parser.error("--wstest is needed to run the cases")
    return asyncio.run(fuzz(args.wstest, args.out, args.cases.split(",")))


if __name__ == "__main__":
    sys.exit(main())
