"""JSON for the broker's wire, the API's bodies and the sockets' packets: orjson where it can, the standard
library where it can't.

orjson refuses integers beyond 64 bits and nesting deeper than 255, which a posted body may hold; those fall
back to `json`, so no valid body is ever refused for its numbers. What neither can encode as UTF-8 JSON (a
lone surrogate, nesting past the interpreter's recursion limit) is refused where it comes in (`encodable`),
before anything is stored or delivered. Nothing is pickled.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are not JSON; a browser could not parse them back."""
    raise ValueError(name)


def parse(raw: bytes) -> Any:
    """A body as JSON, strictly (no NaN, no nesting past the recursion limit): ValueError if it is not.

    What it returns may still hold lone surrogates (JSON's `\\udc00` escapes): check with `encodable`.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # orjson refuses big integers and deep nesting that JSON allows; the standard library decides
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(type(exc).__name__) from None
    return value


def encodable(value: Any) -> bool:
    """Whether `value` can be sent as UTF-8 JSON (no lone surrogate, no nesting past the recursion limit)."""
    try:
        dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True
