"""Room names: Linen's Phoenix topics, parsed and validated.

`room:lobby:<channel>`, `room:topic:<thread>`, `room:<community>` and `user:<user>`; ids are 1-128
characters of `A-Za-z0-9_.-`. Anything else is not a room.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_ID_CHARS = r"[A-Za-z0-9_.\-]{1,128}"
_ID = re.compile(_ID_CHARS)
ID_PATTERN = f"^{_ID_CHARS}$"  # the same, as a JSON Schema pattern (the OpenAPI document's ids)


class RoomKind(Enum):
    """What a room carries, and which field the backend callback is asked about."""

    LOBBY = "channel_id"
    TOPIC = "thread_id"
    COMMUNITY = "community_id"
    USER = "user_id"


@dataclass(frozen=True, slots=True)
class Room:
    kind: RoomKind
    id: str

    @property
    def name(self) -> str:
        return ROOM_PREFIX[self.kind] + self.id

    @property
    def has_presence(self) -> bool:
        """Presence is tracked in every `room:*` room, never in personal ones."""
        return self.kind is not RoomKind.USER


ROOM_PREFIX = {
    RoomKind.LOBBY: "room:lobby:",
    RoomKind.TOPIC: "room:topic:",
    RoomKind.COMMUNITY: "room:",
    RoomKind.USER: "user:",
}


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def parse_room(name: object) -> Room | None:
    """The room that `name` names, or None when it is not a valid room name."""
    if not isinstance(name, str):
        return None
    for kind in (RoomKind.LOBBY, RoomKind.TOPIC, RoomKind.USER, RoomKind.COMMUNITY):
        prefix = ROOM_PREFIX[kind]
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if kind is RoomKind.COMMUNITY and rest in ("lobby", "topic"):
                return None
            return Room(kind, rest) if is_valid_id(rest) else None
    return None


def room_for(kind: RoomKind, id: str) -> str:
    return ROOM_PREFIX[kind] + id


def user_room(user_id: str) -> str:
    return ROOM_PREFIX[RoomKind.USER] + user_id
