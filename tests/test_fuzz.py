"""Fuzzing, bounded to a few seconds each: Engine.IO and Socket.IO packets that hypothesis makes up, valid
and not, over websocket and long polling; the push API against its own OpenAPI document (schemathesis).

What must hold: no traceback in the log, each connection either still served or closed, and a
bystander served throughout.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from .conftest import SERVICE_KEY, TIMEOUT, make_token
from .test_bounds import Polling, bystander, no_tracebacks
from .test_limits import RawSocket
from .test_websocket import RawWs

EXAMPLES = 40  # batches per transport: a few seconds
API_EXAMPLES = 15  # cases per operation, with and without the key

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_events = st.sampled_from(["join", "leave", "user:typing", "refresh", "disconnect", "x", ""])


@st.composite
def _socketio_packet(draw: Any) -> str:
    """A Socket.IO packet as text, often well formed, often not."""
    kind = draw(st.sampled_from("0123456789"))
    attachments = draw(st.sampled_from(["", "", "1-", "99999999999-", "-", "x-"]))
    namespace = draw(st.sampled_from(["", "", "/", "/other,", "/,"]))
    ack = draw(st.sampled_from(["", "", "1", "99999999999999999999"]))
    body = draw(
        st.one_of(
            st.builds(lambda e, d: json.dumps([e, d]), _events, _json),
            _json.map(json.dumps),
            st.text(max_size=30),
        )
    )
    return kind + attachments + namespace + ack + body


_engineio_text = st.one_of(
    _socketio_packet().map(lambda packet: "4" + packet),
    st.builds(lambda kind, rest: kind + rest, st.sampled_from("0123456789x"), st.text(max_size=30)),
)
_packet = st.one_of(_engineio_text, _engineio_text, st.binary(max_size=40))


def _batches() -> list[list[str | bytes]]:
    """`EXAMPLES` batches of packets, as hypothesis generates them."""
    batches: list[list[str | bytes]] = []

    @given(st.lists(_packet, min_size=1, max_size=8))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def collect(batch: list[str | bytes]) -> None:
        batches.append(batch)

    collect()
    return batches


async def _still_served(raw: RawSocket) -> None:
    """Send an event after the batch: answered if the connection is still served, else closed.

    A batch may also have left Socket.IO's namespace (a DISCONNECT packet) on an open Engine.IO
    session, which answers nothing: a timeout is that, not a failure.
    """
    try:
        answer = await raw.ack('421["join","room:lobby:f"]')
    except (ConnectionError, aiohttp.ClientError, TimeoutError):
        return
    assert isinstance(answer, dict) and "ok" in answer


async def test_made_up_packets_over_websocket(server, connect, caplog):
    served = await bystander(server, connect)
    token = make_token("fuzz", rooms=["room:*"])
    for n, batch in enumerate(_batches()):
        raw = await RawSocket.open(server.url, token)
        try:
            for packet in batch:
                if raw.ws.closed:
                    break
                try:
                    await (raw.ws.send_bytes(packet) if isinstance(packet, bytes) else raw.ws.send_str(packet))
                except (ConnectionError, aiohttp.ClientError):
                    break
            await _still_served(raw)
        finally:
            await raw.close()
        if n % 10 == 0:
            await served(n)
    await served(-1)
    no_tracebacks(caplog)


async def test_made_up_packets_over_polling(server, connect, caplog):
    served = await bystander(server, connect)
    token = make_token("fuzz", rooms=["room:*"])
    for n, batch in enumerate(_batches()):
        polling = await Polling.open(server, token)
        try:
            encoded = [p if isinstance(p, str) else "b" + base64.b64encode(p).decode() for p in batch]
            assert await polling.post("\x1e".join(encoded)) in (200, 400)
            assert await polling.post("42" + json.dumps(["join", "room:lobby:f"])) in (200, 400)
        finally:
            await polling.close()
        if n % 10 == 0:
            await served(n)
    await served(-1)
    no_tracebacks(caplog)


@pytest.mark.parametrize("garbage", [b"\x00" * 20, b"\xff" * 20, b"\x81\x7f" + b"\xff" * 8, b"\x88\x02\x03\xe8"])
async def test_made_up_frames_close_the_websocket_cleanly(server, connect, caplog, garbage):
    served = await bystander(server, connect)
    ws = await RawWs.open(server)
    try:
        await ws.connect()
        ws.raw(garbage)  # unmasked, reserved bits, a length past the limit, a close: each ends the websocket
        assert await asyncio.wait_for(ws.closed_with(), TIMEOUT) >= 1000
    finally:
        ws.close()
    await served(1)
    no_tracebacks(caplog)


def _fuzz_api(url: str, document: dict[str, Any]) -> None:
    """Every operation of `document`, with and without the service key: no 5xx, answers as documented.

    Runs in a thread (schemathesis's calls block) while the server runs on the test's event loop.
    """
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here: the document is broken
        for key in (None, SERVICE_KEY):
            _fuzz_operation(operation, url, {"Authorization": f"Bearer {key}"} if key else {})


def _fuzz_operation(operation: Any, url: str, headers: dict[str, str]) -> None:
    checks = (not_a_server_error, response_schema_conformance, status_code_conformance)

    @given(case=operation.as_strategy())
    @settings(
        max_examples=API_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=10)
        case.validate_response(response, checks=checks)

    call()


async def test_the_api_answers_as_its_openapi_document_says(server, caplog):
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/openapi.json") as response:
        document = await response.json()
    await asyncio.to_thread(_fuzz_api, server.url, document)
    no_tracebacks(caplog)


async def test_made_up_packets_over_a_websocket_aiohttp_serves(server, connect, caplog):
    # A handshake this server's own transport does not take (a repeated parameter) goes to aiohttp and
    # python-engineio's websocket handler: the same packets must be as harmless there.
    served = await bystander(server, connect)
    token = make_token("fuzz", rooms=["room:*"])
    for n, batch in enumerate(_batches()[:15]):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket&transport=websocket")
            raw = RawSocket(ws, http)
            assert (await raw.receive()).startswith("0{")
            await ws.send_str("40" + json.dumps({"token": token}))
            assert (await raw.receive()).startswith("40{")
            for packet in ["9", "", "4", *batch]:
                if ws.closed:
                    break
                try:
                    await (ws.send_bytes(packet) if isinstance(packet, bytes) else ws.send_str(packet))
                except (ConnectionError, aiohttp.ClientError):
                    break
            await _still_served(raw)
            await ws.close()
        if n % 5 == 0:
            await served(n)
    await served(-1)
    no_tracebacks(caplog)
