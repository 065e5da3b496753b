"""Marshmallow schemas of the push API bodies. They validate; the payload sent is the body as posted.

Every schema lets unknown fields through (the Linen controllers forward every parameter) and checks
only what sio-push itself relies on: the ids that name rooms, and the shape of `/api/emit`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..rooms import ID_PATTERN, is_valid_id, parse_room

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "presence_state", "presence_diff"}
)
RESERVED_PREFIXES = ("socket.io", "phx_")


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
