"""What text the serving core can take: no NUL (PostgreSQL cannot store it) and no lone UTF-16
surrogate ("\\ud800" is valid JSON but no text: it cannot be encoded to UTF-8 for the database,
the cache key or the tokenizer). The one definition, for /v1's parser and /v2's codec."""

from __future__ import annotations

import re

UNUSABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def has_unusable_character(text: str) -> bool:
    return UNUSABLE_CHARACTER.search(text) is not None
