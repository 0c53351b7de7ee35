"""Factories for users, keys and credentials, built through the real store services."""

from __future__ import annotations

import itertools
from datetime import timedelta

from flask import Flask
from flask_jwt_extended import create_access_token

from mlapi.accounts import api_keys, sessions, user_accounts
from mlapi.accounts.tables import ALL_MODELS, DEFAULT_SCOPES, ApiKey, User
from mlapi.api.v1.tokens import issue_tokens
from mlapi.extensions import db

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)


class Factory:
    def __init__(self, app: Flask) -> None:
        self.app = app

    def user(self, username: str | None = None, *, tier: str = "free", admin: bool = False, **fields) -> User:
        name = username or f"user{next(_names)}"
        return user_accounts.create_user(db.session, name, PASSWORD, tier=tier, is_admin=admin, **fields)

    def api_key(
        self,
        user: User,
        label: str = "test",
        expires_in_days: int | None = None,
        *,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        models: tuple[str, ...] = (ALL_MODELS,),
    ) -> tuple[ApiKey, str]:
        return api_keys.create_api_key(db.session, user, label, expires_in_days, scopes=scopes, models=models)

    def key_headers(self, user: User, **grant) -> dict[str, str]:
        return {"X-API-Key": self.api_key(user, **grant)[1]}

    def login_tokens(self, user: User) -> dict:
        """What POST /v1/token answers: an access and a refresh token of a new login session."""
        with self.app.app_context():
            return issue_tokens(user, sessions.start(db.session, user, timedelta(days=1)))

    def access_token(self, user: User, *, expires_delta: timedelta | None = None) -> str:
        if expires_delta is None:
            return self.login_tokens(user)["access_token"]
        issued = sessions.start(db.session, user, timedelta(days=1))
        with self.app.app_context():
            return create_access_token(
                identity=user, additional_claims={"sid": issued.session_id}, expires_delta=expires_delta
            )

    def refresh_token(self, user: User) -> str:
        return self.login_tokens(user)["refresh_token"]

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token_headers(self, user: User) -> dict[str, str]:
        return self.bearer(self.access_token(user))
