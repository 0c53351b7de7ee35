"""Factories for users, keys and credentials, built through the real store services."""

from __future__ import annotations

import itertools

from flask import Flask
from flask_jwt_extended import create_access_token, create_refresh_token

from mlapi.extensions import db
from mlapi.store import accounts, api_keys
from mlapi.store.models import ApiKey, User

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)


class Factory:
    def __init__(self, app: Flask) -> None:
        self.app = app

    def user(self, username: str | None = None, *, tier: str = "free", admin: bool = False, **fields) -> User:  # noqa: ANN003
        name = username or f"user{next(_names)}"
        return accounts.create_user(db.session, name, PASSWORD, tier=tier, is_admin=admin, **fields)

    def api_key(self, user: User, label: str = "test", expires_in_days: int | None = None) -> tuple[ApiKey, str]:
        return api_keys.create_api_key(db.session, user, label, expires_in_days)

    def key_headers(self, user: User) -> dict[str, str]:
        return {"X-API-Key": self.api_key(user)[1]}

    def access_token(self, user: User, **kwargs) -> str:  # noqa: ANN003
        with self.app.app_context():
            return create_access_token(identity=user, **kwargs)

    def refresh_token(self, user: User) -> str:
        with self.app.app_context():
            return create_refresh_token(identity=user)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token_headers(self, user: User) -> dict[str, str]:
        return self.bearer(self.access_token(user))
