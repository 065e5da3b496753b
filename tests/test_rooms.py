"""Room names (pure)."""

from __future__ import annotations

import pytest

from sio_push.rooms import RoomKind, parse_room


@pytest.mark.parametrize(
    ("name", "kind", "id"),
    [
        ("room:lobby:c1", RoomKind.LOBBY, "c1"),
        ("room:topic:2f0c-uuid", RoomKind.TOPIC, "2f0c-uuid"),
        ("room:community.1", RoomKind.COMMUNITY, "community.1"),
        ("user:u_1", RoomKind.USER, "u_1"),
        ("room:" + "a" * 128, RoomKind.COMMUNITY, "a" * 128),
        ("room:lobbyist", RoomKind.COMMUNITY, "lobbyist"),
    ],
)
def test_valid_rooms_parse(name, kind, id):
    room = parse_room(name)
    assert room is not None and room.kind is kind and room.id == id and room.name == name


@pytest.mark.parametrize(
    "name",
    [
        "room:lobby",
        "room:topic",
        "room:lobby:",
        "room:",
        "user:",
        "room:" + "a" * 129,
        "room:lobby:a b",
        "room:lobby:a:b",
        "lobby:c1",
        "ROOM:c1",
        "room:lobby:*",
        "",
        None,
        42,
        ["room:c1"],
    ],
)
def test_invalid_rooms_are_refused(name):
    assert parse_room(name) is None


def test_presence_only_in_shared_rooms():
    assert parse_room("room:lobby:c").has_presence
    assert parse_room("room:topic:t").has_presence
    assert parse_room("room:c").has_presence
    assert not parse_room("user:u").has_presence
