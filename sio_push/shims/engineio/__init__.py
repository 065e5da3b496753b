"""python-engineio, adapted for the fan-out fast path; every private of it that sio-push uses is here.

python-engineio sends every packet through a per-socket queue and writer task, which encodes and frames
it again for each recipient: that is where a room emit spends its time. `DirectSocket` (the class of
every engineio socket here) lets a push skip all of it: the frame is built once per push and written
straight to each transport, in the caller's own step. The websocket under it is a
`transport.protocol.Connection`, or aiohttp's for the connections `Front` hands to aiohttp. Frames that
follow a socket's first in one step of the event loop are gathered and written together
(`transport.batch.WriteBatch`).

Order is kept: a packet goes direct only when the socket's queue is empty and its writer holds nothing
(`_writer_busy`); otherwise the gathered frames are written and the packet is queued behind them, as
before. Long-polling sockets always queue. A client whose unsent bytes pile up past `Bounds.max_buffer`
(in its transport's buffer, or in its queue: a polling client that does not poll) is cut off; it
reconnects and recovers. A polling POST is read within `Bounds.body_seconds`, its packets decoded here
(bad ones answered 400, one log line) and handled within the same packet budget as a websocket's frames.

The privates used (each pinned by tests/test_shims.py): `AsyncServer._trigger_event`, `_service_task`,
`start_service_task`, `service_task_handle`, `_cors_allowed_origins`, `AsyncSocket._websocket_handler`,
the `_sock` of engineio's aiohttp websocket, and the class of the sockets engineio makes itself.
"""

from ...transport.queue import LightQueue
from .server import PushEngine
from .socket import BadPayload, DirectSocket, packet_frame

__all__ = ["BadPayload", "DirectSocket", "LightQueue", "PushEngine", "packet_frame"]
