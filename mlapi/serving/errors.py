"""Failures of the serving core, mapped to HTTP statuses by the web layer."""

from __future__ import annotations


class ServingError(Exception):
    """Base class: the message is safe to show to the caller."""


class ManifestError(ServingError):
    """A manifest or its weights are broken; the message names the file."""


class UnknownModel(ServingError, LookupError):
    """No such model (``others`` names the models that exist), or no such version of one."""

    def __init__(self, message: str, *, others: list[str] | None = None) -> None:
        super().__init__(message)
        self.others = others


class UnsupportedTask(ServingError):
    """The model exists but does not do what was asked (e.g. classification from an embedding model)."""


class InvalidInput(ServingError, ValueError):
    pass


class VersionSunset(ServingError):
    """The version has reached its sunset (a manifest's ``sunset`` date): it is no longer served."""
