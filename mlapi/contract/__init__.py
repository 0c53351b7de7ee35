"""The /v1 API contract: a snapshot of its OpenAPI document and the check that only additions are made.

Plain functions over JSON documents; nothing here knows Flask or HTTP.
"""

from mlapi.contract.breaking import breaking_changes
from mlapi.contract.snapshot import render, versioned_document

__all__ = ["breaking_changes", "render", "versioned_document"]
