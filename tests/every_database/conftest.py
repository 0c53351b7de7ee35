"""Every test in this folder runs on SQLite and on PostgreSQL: ``app`` and ``factory`` here are
tests/conftest.py's ``db_app`` and ``db_factory``; ``client`` and ``runner`` follow."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.factories import Factory


@pytest.fixture
def app(db_app: Flask) -> Flask:
    return db_app


@pytest.fixture
def factory(db_factory: Factory) -> Factory:
    return db_factory
