"""Marshmallow schemas of the push API bodies. They validate; the payload sent is the body as posted.

Every schema lets unknown fields through (the Linen controllers forward every parameter) and checks
only what sio-push itself relies on: the ids that name rooms, and the shape of `/api/emit`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..rooms import ID_PATTERN, is_valid_id, parse_room

RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "room_left"})
RESERVED_PREFIXES = ("presence_", "socket.io", "phx_")


def _check_id(value: str) -> None:
    if not is_valid_id(value):
        raise ValidationError("must be 1-128 characters of A-Za-z0-9_.-")


def _check_room(value: str) -> None:
    if parse_room(value) is None:
        raise ValidationError(f"not a valid room name: {value[:140]!r}")


def _check_event(value: str) -> None:
    if value in RESERVED_EVENTS or value.startswith(RESERVED_PREFIXES):
        raise ValidationError("is a reserved event name")


def _id(required: bool = False) -> fields.String:
    # The pattern is for the OpenAPI document (and so clients and fuzzers); `_check_id` is what validates.
    return fields.String(required=required, validate=_check_id, metadata={"pattern": ID_PATTERN})


class _PushSchema(Schema):
    class Meta:
        unknown = INCLUDE

    token = fields.String()


class MessageSchema(_PushSchema):
    channel_id = _id()
    thread_id = _id()

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("channel_id") and not data.get("thread_id"):
            raise ValidationError("channel_id or thread_id is required", "channel_id")


class ChannelSchema(_PushSchema):
    channel_id = _id(required=True)


class CommunitySchema(_PushSchema):
    community_id = _id(required=True)


class UserSchema(_PushSchema):
    user_id = _id(required=True)


class EmitSchema(_PushSchema):
    rooms = fields.List(fields.String(validate=_check_room), required=True, validate=validate.Length(min=1, max=1000))
    event = fields.String(required=True, validate=[validate.Length(min=1, max=128), _check_event])
    data = fields.Raw(required=True, allow_none=True)


MAX_BATCH = 100


class BatchSchema(_PushSchema):
    """Up to 100 `/api/emit` bodies; errors of an item come under its index (`{"pushes": {"3": {...}}}`)."""

    pushes = fields.List(fields.Nested(EmitSchema), required=True, validate=validate.Length(min=1, max=MAX_BATCH))


def _limit() -> fields.Integer:
    return fields.Integer(
        load_default=100, validate=validate.Range(min=1, max=1000), metadata={"description": "1-1000"}
    )


class _QuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # other query parameters are ignored, as a browser's cache-busters would be


class PresenceQuerySchema(_QuerySchema):
    limit = _limit()


class RoomsQuerySchema(_QuerySchema):
    prefix = fields.String(
        load_default="", validate=validate.Length(max=300), metadata={"description": "a literal name prefix"}
    )
    after = fields.String(
        load_default=None, validate=validate.Length(max=300), metadata={"description": "list the rooms after this one"}
    )
    limit = _limit()


class DisconnectSchema(_PushSchema):
    """`POST /api/disconnect`: exactly one of `user_id` (every socket of the user) and `sid` (one socket)."""

    user_id = _id()
    sid = fields.String(validate=validate.Length(min=1, max=128))

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("user_id" in data) == ("sid" in data):
            raise ValidationError("exactly one of user_id and sid is required", "_schema")


class UnsubscribeSchema(_PushSchema):
    """`POST /api/unsubscribe`: the user's sockets leave the room, and may not join it again with an older token."""

    user_id = _id(required=True)
    room = fields.String(required=True, validate=_check_room)
