"""Failures of store operations, mapped to HTTP statuses by the web layer and to exit codes by the CLI."""


class StoreError(Exception):
    """Base class: the message is safe to show to the caller."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class InvalidValue(StoreError):
    pass


class Busy(StoreError):
    """Too much of a bounded resource is in use (password hashing): try again shortly."""


class Forbidden(StoreError):
    """The actor may not do this; ``code`` names why (``insufficient_scope``, ``model_not_allowed``...)."""

    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code
