"""Who is in each `room:*` room, Phoenix.Presence shaped.

State is `{user_id: {"metas": [meta, ...]}}`, one meta per socket. A meta keeps `online_at` for as
long as its socket stays, a `phx_ref` unique to it (and `phx_ref_prev` after an update, as Phoenix
does, so Phoenix's JavaScript `syncDiff` applies our diffs), and `typing`/`username` once set. Each
change yields a diff `{"joins": ..., "leaves": ...}` of the same inner shape; the caller broadcasts it.

These are the pure rules (no I/O): where presence is kept is an engine's `PresenceStore`
(`engines/memory.py`, `engines/redis/presence.py`); how diffs are batched and sent is `sio/presence.py`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

Meta = dict[str, Any]
State = dict[str, dict[str, list[Meta]]]


def diff(user_id: str, joined: Meta | None = None, left: Meta | None = None) -> dict[str, State]:
    return {
        "joins": {user_id: {"metas": [joined]}} if joined else {},
        "leaves": {user_id: {"metas": [left]}} if left else {},
    }


def phx_refs(node_id: str) -> Iterator[str]:
    """The `phx_ref`s of one presence store: unique across processes and across restarts.

    Phoenix's `syncDiff` tells metas apart by ref alone, so two processes (or one process before and
    after a restart) handing out the same ref would make clients drop one socket's meta for another's.
    Each ref is the store's node id, the time the store was made (ns) and a counter.
    """
    stem = f"{node_id}.{time.time_ns():x}"
    return (f"{stem}.{n}" for n in itertools.count(1))


def new_meta(ref: str) -> Meta:
    return {"online_at": str(int(time.time())), "phx_ref": ref}


def updated_meta(old: Meta, changes: Meta, ref: str) -> Meta:
    return {**old, **changes, "phx_ref": ref, "phx_ref_prev": old["phx_ref"]}


def merge(into: dict[str, State], diff: dict[str, State]) -> None:
    """Fold `diff` into the pending diff `into`, as if both had been applied in turn.

    A meta that leaves is dropped from the pending joins and always listed in the leaves: a client that
    saw it (in a `presence_state` sent meanwhile) removes it, one that did not ignores the unknown ref.
    Phoenix's `syncDiff` (joins, then leaves) then ends in the same state as with every diff sent.
    """
    joins, leaves = into["joins"], into["leaves"]
    for user_id, entry in diff["joins"].items():
        joins.setdefault(user_id, {"metas": []})["metas"].extend(entry["metas"])
    for user_id, entry in diff["leaves"].items():
        for meta in entry["metas"]:
            if user_id in joins:
                kept = [m for m in joins[user_id]["metas"] if m["phx_ref"] != meta["phx_ref"]]
                if kept:
                    joins[user_id]["metas"] = kept
                else:
                    del joins[user_id]
            leaves.setdefault(user_id, {"metas": []})["metas"].append(meta)
