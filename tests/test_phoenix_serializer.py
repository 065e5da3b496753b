"""Phoenix's wire format and handshake parameters, pure: no server."""

from __future__ import annotations

import base64
import json

import pytest

from sio_push.phoenix.endpoint import serializer_version, token_of
from sio_push.phoenix.serializer import V1, V2, Message, decode, encode, payload_of, reply


def test_v2_arrays_round_trip():
    message = Message("1", "2", "room:lobby:c1", "phx_join", {"a": [1, "é"]})
    text = encode(message, V2)
    assert json.loads(text) == ["1", "2", "room:lobby:c1", "phx_join", {"a": [1, "é"]}]
    assert decode(text.decode(), V2) == message


def test_v1_objects_round_trip():
    message = Message(None, "7", "phoenix", "heartbeat", {})
    text = encode(message, V1)
    assert json.loads(text) == {"join_ref": None, "ref": "7", "topic": "phoenix", "event": "heartbeat", "payload": {}}
    assert decode(text.decode(), V1) == message
    assert decode('{"topic": "t", "event": "e", "ref": 3}', V1) == Message(None, "3", "t", "e", None)


@pytest.mark.parametrize(
    "text, vsn",
    [
        ("not json", V2),
        ('{"topic": "t", "event": "e"}', V2),
        ('[null, null, "t", "e"]', V2),
        ('[null, null, 1, "e", {}]', V2),
        ('[null, null, "t", null, {}]', V2),
        ('["1", "1", "t", "e", {}]', V1),
        ('{"topic": "t"}', V1),
        ("[" * 100_000, V2),
    ],
)
def test_malformed_messages_are_none(text, vsn):
    assert decode(text, vsn) is None


def test_refs_that_are_not_strings_or_numbers_are_none():
    assert decode('[true, {"x": 1}, "t", "e", {}]', V2) == Message(None, None, "t", "e", {})
    assert decode('[12, 13, "t", "e", {}]', V2) == Message("12", "13", "t", "e", {})


def test_a_reply_keeps_the_refs_and_topic():
    message = Message("1", "5", "room:c1", "phx_join", {})
    assert reply(message, "error", {"reason": "unauthorized"}) == Message(
        "1", "5", "room:c1", "phx_reply", {"status": "error", "response": {"reason": "unauthorized"}}
    )


def test_payloads_of_socketio_events():
    state = {"ann": {"metas": [{"online_at": "1", "phx_ref": "r"}]}}
    assert payload_of("presence_state", {"room": "room:c1", "state": state}) == state
    large = {"room": "room:c1", "state": {}, "large": True, "count": {"users": 900, "sockets": 950}}
    assert payload_of("presence_state", large) == {}
    diff = {"room": "room:c1", "joins": state, "leaves": {}}
    assert payload_of("presence_diff", diff) == {"joins": state, "leaves": {}}
    assert payload_of("new_msg", {"x": 1}) == {"x": 1}
    for data in ([1], "s", 3, None, True):
        assert payload_of("notice", data) == {"data": data}


def test_serializer_versions():
    assert serializer_version({}) == V1
    assert serializer_version({"vsn": ["2.0.0"]}) == V2
    assert serializer_version({"vsn": ["1.0.0"]}) == V1
    assert serializer_version({"vsn": ["3.0.0"]}) is None
    assert serializer_version({"vsn": ["2.1.0"]}) is None


def test_tokens_from_params_or_the_auth_token_subprotocol():
    assert token_of({"token": ["abc"]}, None) == ("abc", None)
    assert token_of({}, None) == (None, None)
    token = "eyJ.a+b/c?"
    for encoded in (base64.b64encode(token.encode()), base64.urlsafe_b64encode(token.encode())):
        offer = "phoenix, base64url.bearer.phx." + encoded.decode().rstrip("=")
        assert token_of({"token": ["other"]}, offer) == (token, "phoenix")
    assert token_of({"token": ["abc"]}, "phoenix") == ("abc", "phoenix")
    assert token_of({}, "phoenix, base64url.bearer.phx.!!!") == ("", "phoenix")
    assert token_of({"token": ["abc"]}, "chat, base64url.bearer.phx.YWJj") == ("abc", None)
