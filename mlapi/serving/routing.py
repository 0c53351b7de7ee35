"""Weighted routing of ``latest``, sticky per account: which version serves an account's request.

The choice is a function of the account, the model and the weights, never a random draw: an
account keeps its version for as long as the weights stay the same. Versions share out a range of
hash values in version order, so the newest takes the top of it: an account moved to a canary
stays on it as the canary's share grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from mlapi.serving.store import version_order

_SPAN = 2**64


def pick_version(weights: Mapping[str, int], account_id: int, model: str, live: Sequence[str]) -> str | None:
    """The version for this account, among the ``live`` ones (not past their sunset) with a weight;
    None when none has one (then ``latest`` applies)."""
    chosen = sorted((v for v, w in weights.items() if w > 0 and v in live), key=version_order)
    total = sum(weights[v] for v in chosen)
    if not total:
        return None
    digest = hashlib.sha256(f"{model}\0{account_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") * total // _SPAN  # in [0, total)
    for version in chosen:
        point -= weights[version]
        if point < 0:
            return version
    return chosen[-1]  # not reached: the points cover [0, total)
