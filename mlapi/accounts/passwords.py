"""Password hashing with argon2id; verification that costs the same for unknown users.

Each hash takes 64 MiB for its duration: at most ``limit_concurrent_hashes(n)`` run at once in a
process, so a burst of logins cannot run a worker out of memory. A hash that finds no slot within
``HASH_WAIT_S`` raises ``Busy`` (the web layer answers 503 with Retry-After).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mlapi.accounts.errors import Busy

# argon2-cffi's defaults follow RFC 9106's second recommended profile (argon2id, 64 MiB, t=3).
_hasher = PasswordHasher()
MIN_PASSWORD, MAX_PASSWORD = 8, 1024  # characters; the upper bound keeps hashing a bounded cost
HASH_WAIT_S = 0.5  # a few hashes' time: a short burst waits, a flood is refused
_slots = threading.BoundedSemaphore(2)


def limit_concurrent_hashes(count: int) -> None:
    global _slots
    _slots = threading.BoundedSemaphore(count)


@contextmanager
def hashing_slot() -> Iterator[None]:
    """One of the process's hashing slots, for the duration of one hash; ``Busy`` if none frees up."""
    slots = _slots
    if not slots.acquire(timeout=HASH_WAIT_S):
        raise Busy("Too many password checks at once; try again shortly.")
    try:
        yield
    finally:
        slots.release()


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the parameters, e.g. cheap ones in tests; stored hashes are upgraded at next login."""
    global _hasher
    _hasher = hasher
    _dummy_hash.cache_clear()


def hash_password(password: str) -> str:
    with hashing_slot():
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown user) it still does the work, then fails."""
    dummy = _dummy_hash() if password_hash is None else None
    with hashing_slot():
        try:
            return _hasher.verify(password_hash or dummy, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def _dummy_hash() -> str:
    return hash_password("a password that no account has")
