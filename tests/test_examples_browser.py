"""client_examples/browser in headless Chromium, served by its serve.py on another origin than sio-push."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from playwright.async_api import expect

from . import test_demo_browser
from .conftest import free_port
from .node_client import EXAMPLES

browser = test_demo_browser.browser  # the fixture: headless Chromium

WAIT = 10_000  # ms, for Playwright's expectations
ROOM = "room:topic:t1"


@pytest.fixture
async def page_server(make_server):
    """sio-push with the demo's token route, and the example page served by serve.py on its own origin."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(**settings):
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        server = await make_server(demo=True, cors_origins=(origin,), **settings)
        serve = EXAMPLES / "browser" / "serve.py"
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(serve), "--push-url", server.url, "--port", str(port), stdout=asyncio.subprocess.PIPE
        )
        processes.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.startswith(b"open http://127.0.0.1:"), line
        return server, origin

    yield start
    for process in processes:
        process.kill()
        await process.wait()


async def _open(browser, server, origin, user):
    page = await browser.new_page()
    await page.goto(f"{origin}/?server={server.url}&room={ROOM}&user={user}")
    await expect(page.locator("#status")).to_have_text(f"connected as {user}", timeout=WAIT)
    await expect(page.locator("#text")).to_be_enabled(timeout=WAIT)  # the join was acknowledged
    return page


def _message(message_id: str, author: str, body: str) -> str:
    return json.dumps({"id": message_id, "author": author, "body": body})


async def test_page_shows_messages_presence_typing_and_a_recovered_drop(browser, page_server):
    server, origin = await page_server()
    alice = await _open(browser, server, origin, "alice")
    bob = await _open(browser, server, origin, "bob")
    for page in (alice, bob):
        await expect(page.locator("#online li")).to_have_text(["alice", "bob"], timeout=WAIT)

    await alice.type("#text", "hel")
    await expect(bob.locator("#typing")).to_have_text("alice is typing…", timeout=WAIT)
    await expect(bob.locator("#typing")).to_have_text("", timeout=WAIT)  # 2 s without a key: typing false

    status, _ = await server.push("/api/message", thread_id="t1", message_id="m1", message=_message("m1", "ann", "hi"))
    assert status == 200
    for page in (alice, bob):
        await expect(page.locator("#messages li")).to_have_text(["ann: hi"], timeout=WAIT)

    # A network drop: the transport closes, socket.io-client reconnects with a fresh token and its pid/offset.
    # (The first retry waits 2 s here, so that the push below surely lands while the page is away.)
    await alice.evaluate(
        "socket.io.reconnectionDelay(2000); socket.io.randomizationFactor(0); socket.io.engine.close()"
    )
    await expect(alice.locator("#status")).to_have_text("disconnected (forced close)", timeout=WAIT)
    await server.push("/api/message", thread_id="t1", message_id="m2", message=_message("m2", "ann", "missed?"))
    await expect(alice.locator("#notice")).to_have_text(
        "Connection restored: missed messages were delivered.", timeout=WAIT
    )
    await expect(alice.locator("#messages li")).to_have_text(["ann: hi", "ann: missed?"], timeout=WAIT)
    assert await alice.evaluate("socket.recovered") is True
    assert await alice.evaluate("tokenFetches") == 2  # the auth function ran again for the reconnect
    await expect(alice.locator("#online li")).to_have_text(["alice", "bob"], timeout=WAIT)

    await bob.close()
    await expect(alice.locator("#online li")).to_have_text(["alice"], timeout=WAIT)


async def test_page_says_to_refetch_when_the_session_was_not_recovered(browser, page_server):
    server, origin = await page_server(recovery_seconds=0)
    carol = await _open(browser, server, origin, "carol")
    await carol.evaluate("socket.io.engine.close()")
    await expect(carol.locator("#notice")).to_contain_text("could not be recovered: refetching", timeout=WAIT)
    assert not await carol.evaluate("socket.recovered")  # false, or undefined with recovery turned off
    await expect(carol.locator("#text")).to_be_enabled(timeout=WAIT)
    await expect(carol.locator("#online li")).to_have_text(["carol"], timeout=WAIT)  # joined the room again
    await server.push("/api/message", thread_id="t1", message_id="m3", message=_message("m3", "ann", "after"))
    await expect(carol.locator("#messages li")).to_have_text(["ann: after"], timeout=WAIT)
