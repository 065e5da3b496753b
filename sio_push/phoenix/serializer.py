"""Phoenix's JSON serializers, pure: v2 sends `[join_ref, ref, topic, event, payload]` arrays, v1 objects.

phoenix.js 1.7+ speaks v2 by default (`vsn=2.0.0`); older clients, and `vsn=1.0.0`, speak v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..codec import dumps, loads

V1, V2 = "1.0.0", "2.0.0"


@dataclass(frozen=True, slots=True)
class Message:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


def _ref(value: object) -> str | None:
    """Refs are strings in phoenix.js; a number is taken as its text, anything else as none."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def decode(text: str, vsn: str) -> Message | None:
    """The message in `text`, or None when it is not one of `vsn`'s shape."""
    try:
        value = loads(text)
    except ValueError:
        return None
    if vsn == V2:
        if not isinstance(value, list) or len(value) != 5:
            return None
        join_ref, ref, topic, event, payload = value
    else:
        if not isinstance(value, dict):
            return None
        join_ref, ref = value.get("join_ref"), value.get("ref")
        topic, event, payload = value.get("topic"), value.get("event"), value.get("payload")
    if not isinstance(topic, str) or not isinstance(event, str):
        return None
    return Message(_ref(join_ref), _ref(ref), topic, event, payload)


def encode(message: Message, vsn: str) -> bytes:
    """The UTF-8 JSON text of `message` in `vsn`'s shape."""
    if vsn == V2:
        return dumps([message.join_ref, message.ref, message.topic, message.event, message.payload])
    return dumps(
        {
            "join_ref": message.join_ref,
            "ref": message.ref,
            "topic": message.topic,
            "event": message.event,
            "payload": message.payload,
        }
    )


def reply(message: Message, status: str, response: Any) -> Message:
    """The `phx_reply` to `message`."""
    return Message(message.join_ref, message.ref, message.topic, "phx_reply", {"status": status, "response": response})


def payload_of(event: str, data: Any) -> Any:
    """What a Phoenix client is sent for an event the Socket.IO side sends as `data`.

    Presence keeps Phoenix's own shapes (phoenix.js `Presence` reads them): `presence_state` is the state
    map itself, `presence_diff` is `{"joins", "leaves"}`. A payload that is not a JSON object is wrapped
    as `{"data": payload}`, since a Phoenix payload is always an object.
    """
    if event == "presence_state" and isinstance(data, dict):
        return data.get("state", {})
    if event == "presence_diff" and isinstance(data, dict):
        return {"joins": data.get("joins", {}), "leaves": data.get("leaves", {})}
    return data if isinstance(data, dict) else {"data": data}
