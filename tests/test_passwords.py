from argon2 import PasswordHasher

from mlapi.extensions import db
from mlapi.store import accounts, passwords
from tests.conftest import TEST_HASHER
from tests.factories import PASSWORD


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts its verifications."""

    verifications = 0

    def verify(self, hash, password):  # noqa: A002 (argon2-cffi's parameter name)
        type(self).verifications += 1
        return super().verify(hash, password)


def test_hashes_are_argon2id():
    assert passwords.hash_password("s3cret-pass").startswith("$argon2id$")


def test_unknown_users_cost_a_full_verification(app, monkeypatch):
    counting = CountingHasher(time_cost=1, memory_cost=64, parallelism=1)
    passwords.use_hasher(counting)
    try:
        CountingHasher.verifications = 0
        assert accounts.authenticate(db.session, "nobody", "whatever") is None
        assert CountingHasher.verifications == 1
    finally:
        passwords.use_hasher(TEST_HASHER)


def test_login_rehashes_when_parameters_change(app, factory):
    user = factory.user("rehash-me")
    old_hash = user.password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    passwords.use_hasher(stronger)
    try:
        assert accounts.authenticate(db.session, "rehash-me", PASSWORD) is not None
        db.session.refresh(user)
        assert user.password_hash != old_hash
        assert "m=128,t=2" in user.password_hash
        assert accounts.authenticate(db.session, "rehash-me", PASSWORD) is not None
    finally:
        passwords.use_hasher(TEST_HASHER)


def test_a_corrupt_stored_hash_fails_closed():
    assert passwords.verify_password("not-a-hash", "anything") is False
