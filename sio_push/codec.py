"""JSON for the broker's wire and the sockets' packets: orjson where it can, the standard library where it can't.

orjson refuses integers beyond 64 bits, which a posted body may hold; those fall back to `json`, so no
valid body is ever refused for its numbers. Nothing is pickled.
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
