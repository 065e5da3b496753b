"""The newest stream entries this process has read, kept so that a replay need not ask Redis.

In a reconnect storm every recovering socket replays the same few seconds of the stream. Read from Redis,
each replay is three round trips and the decoding of every entry again; from here it is a walk over a
short deque, with no await between it and the caller's joining of rooms. The entries are the reader's own,
contiguous from `base` (the id before the oldest kept) to the reader's position, so a replay from any
offset at or after `base` finds here everything the stream holds after it. Older offsets, or offsets old
enough that Redis may have trimmed what follows them by age, go to Redis as before.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection

from ..base import Missed, Push

StreamId = tuple[int, int]

MOST_ENTRIES = 1000
MOST_BYTES = 8 * 1024 * 1024


class Recent:
    """At most `most_entries` entries and `most_bytes` bytes of the stream's newest, in order."""

    def __init__(self, most_entries: int = MOST_ENTRIES, most_bytes: int = MOST_BYTES) -> None:
        self._most_entries = most_entries
        self._most_bytes = most_bytes
        # Kept from `_head` on (the ones before it are dropped, deleted a batch at a time); ids apart, to bisect.
        self._ids: list[StreamId] = []
        self._entries: list[tuple[str, Push, int]] = []
        self._head = 0
        self._bytes = 0
        self._base: StreamId | None = None  # None: nothing known yet

    def restart(self, position: StreamId) -> None:
        """Forget everything: the reader goes on from `position`."""
        self._ids, self._entries, self._head, self._bytes = [], [], 0, 0
        self._base = position

    def forget(self) -> None:
        """Forget everything, and where the reader is: the next entry added is only where to go on from."""
        self.restart((0, 0))
        self._base = None

    def add(self, entry_id: StreamId, offset: str, push: Push, size: int) -> None:
        """The reader read entry `entry_id` (`size` bytes), the next after the last one added."""
        if self._base is None:
            self._base = entry_id  # what came before it is not known to be contiguous with it
            return
        self._ids.append(entry_id)
        self._entries.append((offset, push, size))
        self._bytes += size
        while len(self._ids) - self._head > self._most_entries or self._bytes > self._most_bytes:
            self._base = self._ids[self._head]
            self._bytes -= self._entries[self._head][2]
            self._head += 1
        if self._head > self._most_entries:
            del self._ids[: self._head], self._entries[: self._head]
            self._head = 0

    def after(self, after: StreamId, rooms: Collection[str]) -> Missed | None:
        """The entries after `after` that reach any of `rooms`, in order; None when some may be missing here."""
        if self._base is None or after < self._base:
            return None
        wanted = set(rooms)
        first = bisect_right(self._ids, after, lo=self._head)
        return [(offset, push) for offset, push, _ in self._entries[first:] if not wanted.isdisjoint(push.rooms)]
