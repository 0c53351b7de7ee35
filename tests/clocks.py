"""A clock for code that takes one (caches with a time to live, Redis back-off): it moves only when
the test moves it, so expiry is tested without waiting for it."""

from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
