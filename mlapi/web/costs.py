"""What a request costs against its account's quota, beyond one per input: the labels an account
has not paid for yet on this worker. (The rule that a cost function never raises is applied once,
by mlapi.web.auth.requires_auth.)"""

from __future__ import annotations

import threading

from cachetools import LRUCache


class PaidLabels:
    """(account, model, label) an account has paid for on this worker; the least recently used are
    forgotten (then charged again), so memory stays bounded whatever labels clients invent."""

    def __init__(self, size: int = 100_000) -> None:
        self._paid: LRUCache[tuple[int, str, str], bool] = LRUCache(maxsize=size)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def unpaid(self, account_id: int, model: str, labels: list[str]) -> list[str]:
        with self._lock:
            return [label for label in dict.fromkeys(labels) if (account_id, model, label) not in self._paid]

    def paid(self, account_id: int, model: str, labels: list[str]) -> None:
        with self._lock:
            for label in labels:
                self._paid[(account_id, model, label)] = True
