"""Stepping aside from a Redis that failed: for a while, its users do without it.

A dead Redis must cost a request nothing: after a failure each user (the prediction cache, the
credential cache) stops asking for ``pause_s`` and serves without it, then tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PAUSE_S = 5.0


class RedisBackoff:
    def __init__(self, pause_s: float = PAUSE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause_s = pause_s
        self._clock = clock
        self._down_until = float("-inf")

    def usable(self) -> bool:
        return self._clock() >= self._down_until

    def failed(self) -> bool:
        """Note a failure and step aside; True when it is news (Redis was thought usable until now)."""
        news = self.usable()
        self._down_until = self._clock() + self.pause_s
        return news
