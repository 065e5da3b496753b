"""Token buckets: how sio-push bounds what one client (or all new connections) may ask for per second."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; a request takes one token or is refused.

    :param rate: tokens added per second.
    :param burst: the most tokens held, and the bucket's content at the start.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Take a token if there is one."""
        now = time.monotonic()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1
        return True

    def wait_time(self) -> float:
        """Seconds until a token is there (0 when one is there now)."""
        now = time.monotonic()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate
