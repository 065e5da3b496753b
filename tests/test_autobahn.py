"""Autobahn|Testsuite's fuzzing client (cases 1-7 and 10) against the websocket codec: 0 FAILED.

It needs Python 2.7 (pyenv's 2.7.18, `python2.7` or `PYTHON2`); scripts/autobahn/run sets the testsuite
up once outside the repository. Where no Python 2.7 is found the test is skipped, and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python2() -> bool:
    if os.environ.get("PYTHON2") or shutil.which("python2.7") or shutil.which("python2"):
        return True
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return False
    versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
    return "2.7.18" in versions.stdout.split()


@pytest.mark.timeout(600)
@pytest.mark.skipif(not _python2(), reason="Autobahn|Testsuite needs Python 2.7 (see scripts/autobahn/README.md)")
def test_the_codec_passes_autobahn_cases_1_to_7_and_10():
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/autobahn/run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=580
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = next(line.split() for line in run.stdout.splitlines() if line.split()[:1] == ["all"])
    assert summary[2] != "0" and summary[-1] == "0"  # cases ran as OK, and none FAILED
    assert "no case FAILED" in run.stdout
