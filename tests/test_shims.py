"""Pins of every library private the shims (`sio_push.shims.*`) rely on: an upgrade that moves one fails here.

Each test names the shim code that depends on what it checks. Behaviour through these privates is tested
end to end elsewhere (test_websocket.py, test_sockets.py); these say which library detail broke.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from engineio import async_server, async_socket
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

from sio_push.shims.aiohttp import SocketSite, bounded_handler, open_connections, websocket_transport
from sio_push.shims.engineio import BadPayload, DirectSocket, LightQueue, PushEngine
from sio_push.shims.socketio import IndexedManager, PushServer

TIMEOUT = 5.0


def _shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """A signature without annotations: names, kinds and defaults."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _source(function: Callable[..., Any]) -> str:
    return textwrap.dedent(inspect.getsource(function))


# ---------------------------------------------------------------------------------------------------------
# python-engineio (sio_push/shims/engineio.py)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "base", "name"),
    [
        (DirectSocket, AsyncSocket, "close"),
        (DirectSocket, AsyncSocket, "send"),
        (DirectSocket, AsyncSocket, "poll"),
        (DirectSocket, AsyncSocket, "schedule_ping"),
        (DirectSocket, AsyncSocket, "_websocket_handler"),
        (DirectSocket, AsyncSocket, "handle_post_request"),
        (PushEngine, engineio.AsyncServer, "create_queue"),
        (PushEngine, engineio.AsyncServer, "handle_request"),
    ],
)
def test_overridden_engineio_methods_keep_their_signatures(ours, base, name):
    theirs, mine = getattr(base, name), getattr(ours, name)
    assert mine is not theirs
    assert _shape(mine) == _shape(theirs)
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs)


def test_engineio_paths_the_polling_bounds_rely_on():
    # DirectSocket.handle_post_request replaces the whole of python-engineio's: it reads the body of
    # `CONTENT_LENGTH` from `wsgi.input` (aiohttp's StreamReader), decodes a Payload and receives each packet.
    post = _source(AsyncSocket.handle_post_request)
    assert "wsgi.input" in post and "CONTENT_LENGTH" in post and "self.receive(pkt)" in post
    # Its errors: an EngineIOError is a 400 (and the session disconnected); disconnect closes with the
    # default wait, which DirectSocket.close never honours for polling; the POST path looks the session up
    # again with `_get_socket`, which raises KeyError for one that closed (PushEngine.handle_request).
    handle = _source(engineio.AsyncServer.handle_request)
    assert "socket.handle_post_request(environ)" in handle and "except exceptions.EngineIOError" in handle
    assert "socket = self._get_socket(sid)" in handle
    assert "raise KeyError" in _source(engineio.AsyncServer._get_socket)
    assert issubclass(BadPayload, engineio.exceptions.EngineIOError)
    # _CheckedWebSocket: python-engineio's websocket handler reads every message with `ws.wait()` and
    # decodes it with `packet.Packet(encoded_packet=...)` outside any `try`.
    handler = _source(AsyncSocket._websocket_handler)
    assert "await ws.wait()" in handler and "packet.Packet(encoded_packet=p)" in handler
    # LightQueue.held: python-engineio takes packets out with get / get_nowait only.
    assert "self.queue.get()" in _source(AsyncSocket.poll) and "self.queue.get_nowait()" in _source(AsyncSocket.poll)


def test_engineio_server_privates_used_by_push_engine():
    # DirectSocket.accept: the connect handler, run as python-engineio's own connect runs it.
    assert inspect.iscoroutinefunction(engineio.AsyncServer._trigger_event)
    assert _shape(engineio.AsyncServer._trigger_event)[:2] == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("event", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
    ]
    assert "run_async" in _source(engineio.AsyncServer._trigger_event)
    # PushEngine.open_direct: the sweep of timed-out sockets, started once as python-engineio's connect does.
    assert inspect.iscoroutinefunction(engineio.AsyncServer._service_task)
    assert _shape(engineio.AsyncServer._service_task) == _shape(lambda self: None)
    connect = _source(async_server.AsyncServer._handle_connect)
    assert "self.start_service_task = False" in connect
    assert "self.service_task_handle = self.start_background_task(" in connect
    assert PushEngine(monitor_clients=False).start_service_task is False
    eio = PushEngine(monitor_clients=True)
    assert eio.start_service_task is True and eio.service_task_handle is None
    # PushEngine.allowed_origin
    assert _shape(engineio.AsyncServer._cors_allowed_origins) == _shape(lambda self, environ: None)


def test_engineio_makes_plain_async_sockets_that_adopt_can_swap():
    # PushEngine.adopt: python-engineio builds AsyncSocket itself, with no hook for the class.
    assert "async_socket.AsyncSocket(self, sid)" in _source(async_server.AsyncServer._handle_connect)
    eio = PushEngine()
    eio.sockets["a"] = AsyncSocket(eio, "a")
    socket = eio.adopt("a")
    assert type(socket) is DirectSocket and socket is eio.sockets["a"] and socket.batch is eio.batch
    assert isinstance(socket.queue, LightQueue)
    assert eio.adopt("nobody") is None


def test_engineio_socket_state_the_shim_reads_and_sets():
    socket = AsyncSocket(PushEngine(), "s")
    for name in ("server", "sid", "queue", "last_ping", "connected", "upgrading", "upgraded", "closing", "closed"):
        assert hasattr(socket, name), name
    assert inspect.iscoroutinefunction(AsyncSocket.check_ping_timeout)  # DirectSocket.send
    # DirectSocket.poll: the websocket writer task of python-engineio's handler calls poll() for its packets.
    assert "await self.poll()" in _source(async_socket.AsyncSocket._websocket_handler)


def test_light_queue_has_every_method_engineio_calls_on_a_queue():
    used = set()
    for module in (async_socket, async_server):
        used |= set(re.findall(r"\bqueue\.(\w+)\(", inspect.getsource(module)))
    assert used, "python-engineio no longer uses a socket queue as it did"
    assert {name for name in used if not hasattr(LightQueue, name)} == set()


def test_engineio_aiohttp_websocket_keeps_aiohttps_websocket_in_sock():
    # DirectSocket._transport reads `_ws._sock`, the aiohttp WebSocketResponse under engineio's wrapper.
    ws = eio_aiohttp.WebSocket(None, PushEngine())
    assert ws._sock is None
    assert "self._sock = WebSocketResponse(" in _source(eio_aiohttp.WebSocket.__call__)


@pytest.mark.parametrize(
    ("cors", "origin", "allowed"),
    [
        (None, "http://h:1", True),
        (None, "http://other", False),
        (None, None, True),
        ("*", "http://other", True),
        (["http://app.example"], "http://app.example", True),
        (["http://app.example"], "http://h:1", False),
        ([], "http://other", True),
    ],
)
def test_allowed_origin_follows_engineio_rules(cors, origin, allowed):
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "h:1"}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    assert PushEngine(cors_allowed_origins=cors).allowed_origin(environ) is allowed


# ---------------------------------------------------------------------------------------------------------
# aiohttp (sio_push/shims/aiohttp.py)
# ---------------------------------------------------------------------------------------------------------


def _create_server_call(function: Callable[..., Any]) -> tuple[list[str], dict[str, str]]:
    """The arguments (after the protocol factory) of the `create_server` call in `function`, as source."""
    tree = ast.parse(_source(function))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "create_server":
            return [ast.unparse(arg) for arg in node.args[1:]], {
                kw.arg or "": ast.unparse(kw.value) for kw in node.keywords
            }
    raise AssertionError(f"no create_server call in {function.__qualname__}")


def test_socket_site_starts_its_server_as_tcp_site_does():
    # SocketSite.start replaces TCPSite.start; it must pass the same settings to create_server.
    assert _create_server_call(SocketSite.start) == _create_server_call(web.TCPSite.start)
    tcp_start = _source(web.TCPSite.start)
    assert "await super().start()" in tcp_start
    assert "self._server = " in tcp_start and "self._bound_port = " in tcp_start
    assert _shape(SocketSite.start) == _shape(web.TCPSite.start)


async def test_aiohttp_keep_alive_timer_bounds_request_heads():
    # bounded_handler: aiohttp's RequestHandler keeps its keep-alive timeout in `_keepalive_timeout`,
    # starts the timer when the connection is made, and closes the connection when it fires while it
    # waits for a request (a head not complete yet counts as waiting).
    handler = bounded_handler(web.Server(_no_handler), 0.5)
    assert handler.keepalive_timeout == 0.5
    assert "self._keepalive_handle = loop.call_at" in _source(RequestHandler.connection_made)
    keepalive = _source(RequestHandler._process_keepalive)
    assert "if self._waiter and not self._waiter.done():" in keepalive and "self.force_close()" in keepalive


async def _no_handler(request: web.BaseRequest) -> web.StreamResponse:
    raise web.HTTPNotFound()


async def test_base_site_privates_socket_site_uses():
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        site = SocketSite(runner, PushEngine(), "/socket.io/", "127.0.0.1", 0)
        for name in ("_runner", "_host", "_port", "_ssl_context", "_backlog", "_reuse_address", "_reuse_port"):
            assert hasattr(site, name), name
        await site.start()
        assert isinstance(site._server, asyncio.AbstractServer)
        assert site.port == site._server.sockets[0].getsockname()[1] != 0  # `port` reads `_bound_port`
    finally:
        await runner.cleanup()


async def test_websocket_transport_finds_the_transport_of_an_open_aiohttp_websocket():
    # DirectSocket._transport: aiohttp's WebSocketResponse keeps its writer in `_writer`, whose
    # `transport` is the connection's and `_closing` is set once a close frame went out.
    assert websocket_transport(web.WebSocketResponse()) is None
    assert websocket_transport(None) is None
    seen: asyncio.Queue[tuple[Any, Any, Any]] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        request_transport, open_transport = request.transport, websocket_transport(ws)
        await ws.receive()
        await ws.close()
        await seen.put((request_transport, open_transport, websocket_transport(ws)))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{site.port}/ws") as ws:
            await ws.send_str("bye")
            assert (await asyncio.wait_for(ws.receive(), TIMEOUT)).type == aiohttp.WSMsgType.CLOSE
            request_transport, open_transport, closed_transport = await asyncio.wait_for(seen.get(), TIMEOUT)
        assert open_transport is not None and open_transport is request_transport
        assert closed_transport is None
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------------------
# python-socketio (sio_push/shims/socketio.py)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "base", "name"),
    [
        (PushServer, socketio.AsyncServer, "_engineio_server_class"),
        (PushServer, socketio.AsyncServer, "_handle_eio_connect"),
        (PushServer, socketio.AsyncServer, "_handle_connect"),
        (PushServer, socketio.AsyncServer, "_handle_eio_message"),
        (PushServer, socketio.AsyncServer, "_handle_disconnect"),
        (PushServer, socketio.AsyncServer, "_handle_eio_disconnect"),
        (IndexedManager, socketio.AsyncManager, "basic_enter_room"),
        (IndexedManager, socketio.AsyncManager, "basic_leave_room"),
        (IndexedManager, socketio.AsyncManager, "get_rooms"),
        (IndexedManager, socketio.AsyncManager, "basic_disconnect"),
    ],
)
def test_overridden_socketio_methods_keep_their_signatures(ours, base, name):
    theirs, mine = getattr(base, name), getattr(ours, name)
    assert mine is not theirs
    assert _shape(mine) == _shape(theirs)
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs)


def test_socketio_server_privates_the_shim_calls():
    server = socketio.AsyncServer(async_mode="aiohttp")
    # PushServer.refuse and _ack send through _send_packet; _event hands on to _handle_event
    assert [p[0] for p in _shape(server._send_packet)] == ["eio_sid", "pkt"]
    assert [p[0] for p in _shape(server._handle_event)] == ["eio_sid", "namespace", "id", "data"]
    assert [p[0] for p in _shape(server._handle_disconnect)] == ["eio_sid", "namespace", "reason"]
    assert isinstance(server.environ, dict)
    assert server.reason.CLIENT_DISCONNECT and server.reason.SERVER_DISCONNECT
    # PushServer._handle_disconnect wraps the stock one, which runs the handler and then leaves every room
    # of the sid: `departed` is what keeps that from reaching a recovered socket with the same sid
    stock_disconnect = _source(socketio.AsyncServer._handle_disconnect)
    assert stock_disconnect.index("_trigger_event('disconnect'") < stock_disconnect.index("manager.disconnect(")
    # the connect path of python-socketio that _handle_connect replaces still ends in a CONNECT reply
    assert "packet.CONNECT" in _source(socketio.AsyncServer._handle_connect)


def test_stock_message_dispatch_still_handles_the_packet_types_the_shim_handles():
    """_handle_eio_message is replaced whole: a new packet type upstream must be looked at here."""
    source = _source(socketio.AsyncServer._handle_eio_message)
    handled = set(re.findall(r"packet\.([A-Z_]+)", source))
    assert handled == {"CONNECT", "DISCONNECT", "EVENT", "ACK", "BINARY_EVENT", "BINARY_ACK", "CONNECT_ERROR"}
    assert "_binary_packet" in source


def test_socketio_manager_structures_the_shim_reads():
    manager = socketio.AsyncManager()
    manager.set_server(socketio.AsyncServer(async_mode="aiohttp"))
    manager.basic_enter_room("sid1", "/", None, eio_sid="eio1")
    manager.basic_enter_room("sid1", "/", "room:lobby:a")
    # PushServer.members_of reads rooms[namespace][room] as {sid: eio_sid}
    assert manager.rooms["/"]["room:lobby:a"] == {"sid1": "eio1"}
    # IndexedManager.basic_disconnect clears these as the stock one does
    assert isinstance(manager.callbacks, dict)
    assert isinstance(manager.pending_connect, dict) and isinstance(manager.pending_disconnect, dict)
    assert manager.sid_from_eio_sid("eio1", "/") == "sid1" and manager.eio_sid_from_sid("sid1", "/") == "eio1"


def test_indexed_manager_agrees_with_the_stock_manager():
    ours, stock = IndexedManager(), socketio.AsyncManager()
    for manager in (ours, stock):
        manager.set_server(socketio.AsyncServer(async_mode="aiohttp"))
        manager.basic_enter_room("s", "/", None, eio_sid="e")
        manager.basic_enter_room("s", "/", "s", eio_sid="e")
        for room in ("a", "b", "c"):
            manager.basic_enter_room("s", "/", room)
        manager.basic_leave_room("s", "/", "b")
    assert sorted(ours.get_rooms("s", "/")) == sorted(r for r in stock.get_rooms("s", "/") if r is not None)
    assert ours.room_count("s", "/") == 3  # its sid room, a and c
    ours.basic_disconnect("s", "/")
    assert ours.get_rooms("s", "/") == [] and "a" not in ours.rooms.get("/", {})


async def test_open_connections_counts_what_aiohttps_server_holds():
    # Admission counts aiohttp's connections through web.Server's private `_connections` map.
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        assert runner.server is not None and open_connections(runner.server) == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert open_connections(runner.server) == 1
        writer.close()
    finally:
        await runner.cleanup()
