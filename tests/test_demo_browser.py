"""The demo chat in headless Chromium (Debian's), driven by Playwright: two people, presence, typing, a message."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest
from playwright.async_api import async_playwright, expect

from sio_push.keys import SOCKETS
from sio_push.transport.protocol import Connection

CHROMIUM = os.environ.get("PUSH_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser():
    if not HAVE_CHROMIUM:
        pytest.fail(f"Chromium is needed at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        await browser.close()


async def _open(browser, server, name, protocol="socketio"):
    page = await browser.new_page()
    await page.goto(f"{server.url}/demo")
    await page.fill("#name", name)
    await page.select_option("#protocol", protocol)
    await page.click("#connect")
    await expect(page.locator("#status")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#text")).to_be_enabled(timeout=10_000)
    return page


@pytest.mark.parametrize("alice_over", ["socketio", "phoenix"])
async def test_demo_chat_end_to_end(make_server, browser, tmp_path, alice_over):
    """Two people in one channel; with "phoenix", alice speaks Phoenix Channels (phoenix.js) and bob Socket.IO."""
    server = await make_server(demo=True)
    alice = await _open(browser, server, "alice", alice_over)
    bob = await _open(browser, server, "bob")
    await expect(alice.locator("#online li")).to_have_text(["alice", "bob"], timeout=10_000)

    await alice.type("#text", "hel")
    await expect(bob.locator("#typing")).to_have_text("alice is typing…", timeout=10_000)
    await alice.fill("#text", "hello from alice")
    await alice.press("#text", "Enter")
    for page in (alice, bob):
        await expect(page.locator("#messages li")).to_have_text(["alicehello from alice"], timeout=10_000)
    await expect(alice.locator("#messages li.pending")).to_have_count(0)
    await expect(bob.locator("#typing")).to_have_text("", timeout=10_000)

    await bob.screenshot(path=str(tmp_path / "demo.png"))
    await bob.close()
    await expect(alice.locator("#online li")).to_have_text(["alice"], timeout=10_000)


async def test_demo_routes_exist_only_with_demo(server, make_server):
    status, _ = await server.post("/demo/token", {"user": "x"})
    assert status == 404
    demo = await make_server(demo=True)
    status, answer = await demo.post("/demo/token", {"user": "not valid!"})
    assert status == 400
    status, answer = await demo.post("/demo/send", {"channel_id": "general", "text": "hi"})
    assert status == 401 and answer["error"] == "token_missing"


UPGRADE_JS = """async () => {
  const answer = await fetch("/demo/token", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify({user: "upgrader"})});
  const {token} = await answer.json();
  const socket = io({auth: {token}, transports: ["polling", "websocket"]});
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no upgrade within 10 s")), 10000);
    socket.io.engine.on("upgrade", (transport) => { clearTimeout(timer); resolve(transport.name); });
  });
}"""


async def test_browser_upgrading_from_polling_ends_on_a_websocket_connection(make_server, browser):
    server = await make_server(demo=True)
    page = await browser.new_page()
    await page.goto(f"{server.url}/demo")
    assert await page.evaluate(UPGRADE_JS) == "websocket"
    sockets = server.app[SOCKETS].server.eio.sockets
    deadline = time.monotonic() + 10
    while not any(isinstance(socket.conn, Connection) for socket in sockets.values()):
        assert time.monotonic() < deadline, "the upgrade never reached the server"
        await asyncio.sleep(0.01)
    await page.close()
