"""What an inference request may hold, the same under /v1 and /v2: texts, how many, what they cost."""

from __future__ import annotations

import marshmallow as ma

MAX_TEXT = 5000
MAX_ITEMS = 100


def quota_cost(items: int | None) -> int:
    """What a request of `items` inputs costs against the quota: one per input, at least one.

    A request over `MAX_ITEMS` costs one: validation refuses it next, naming the real cap, and no
    model runs; charged in full it would meet the quota's message first (101 items on a 100/minute
    tier read "more than the whole quota").
    """
    return items if items is not None and 1 <= items <= MAX_ITEMS else 1


class Contains(ma.validate.Regexp):
    """Passes when the pattern matches anywhere, as JSON Schema's `pattern` does (`Regexp` anchors
    at the start); the OpenAPI document shows the pattern."""

    def __call__(self, value: str) -> str:
        if self.regex.search(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


# Python's whitespace (str.strip, str.isspace) spelled out: JSON Schema's \s (ECMA-262) is another
# set, and the documented pattern must accept exactly what the server accepts.
_WHITESPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = Contains(f"[^{_WHITESPACE}]", error="Must not be blank.")


TEXT = [ma.validate.Length(min=1, max=MAX_TEXT), NOT_BLANK]
# The same rules as JSON Schema, for fields that marshmallow cannot describe itself.
TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": NOT_BLANK.regex.pattern}


# What any inference endpoint may answer besides its success, /v1 and /v2 alike.
INFERENCE_ERRORS = {
    404: "No such model or version; the detail names what exists.",
    410: "The version named has reached its sunset (model_version_sunset); use another.",
    503: "Overloaded (the model's queue is full), shutting down, or the database is unavailable; see Retry-After.",
    504: "The model did not answer within MLAPI_INFERENCE_TIMEOUT_S.",
}


def check_text(text: str) -> None:
    """The text rules (1 to 5000 characters, not blank) for code outside marshmallow: a ValueError
    whose message is the validators' own."""
    for validate in TEXT:
        try:
            validate(text)
        except ma.ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
            raise ValueError(" ".join(str(m) for m in messages)) from None
