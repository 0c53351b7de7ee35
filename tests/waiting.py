"""Waiting for another thread or process to reach a state, always with a deadline.

Where the code under test offers no event to wait on (a queue's depth, a worker coming back),
poll, but never without a bound: a test that would spin for ever fails instead, saying what it
waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object], *, timeout_s: float = 10.0, interval_s: float = 0.001, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
