"""client_examples/react: type-checked with `tsc --strict`, then its hooks run in Node (react-test-renderer)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import SERVICE_KEY, make_token
from .node_client import EXAMPLES
from .test_examples_backends import node_binary, run

REACT = EXAMPLES / "react"
TSC = EXAMPLES / "node_modules" / ".bin" / "tsc"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> str:
    """The example compiled by tsc (strict, from its tsconfig.json); where the JavaScript went."""
    if not TSC.exists():
        pytest.fail("`npm ci --prefix client_examples` is needed (make node)")
    out = tmp_path_factory.mktemp("react-build")
    done = subprocess.run(
        [node_binary(), str(TSC), "-p", str(REACT / "tsconfig.json"), "--strict", "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return str(out)


@pytest.mark.parametrize("recovery", ["recovered", "fresh"])
async def test_hooks_share_one_socket_release_rooms_and_recover_or_refetch(make_server, built, recovery):
    server = await make_server(recovery_seconds=120 if recovery == "recovered" else 0)
    rooms = ["room:*"]
    args = [server.url, SERVICE_KEY, make_token("rae", rooms=rooms), make_token("sam", rooms=rooms), recovery]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_PATH": str(EXAMPLES / "node_modules")}
    code, out, err = await run(node_binary(), os.path.join(built, "test", "hooks.test.js"), *args, env=env)
    steps = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0, out + err
    assert [s["step"] for s in steps] == [
        "one socket for four views",
        "messages routed to their views",
        "typing both ways",
        "reconnected",
        "a room is left when its last view unmounts",
        "the socket closes with the last view",
        "done",
    ]
    assert steps[3]["recovered"] is (True if recovery == "recovered" else None)
