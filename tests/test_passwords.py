from argon2 import PasswordHasher

from mlapi.accounts import passwords, user_accounts
from mlapi.extensions import db
from tests.conftest import TEST_HASHER
from tests.factories import PASSWORD


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts its verifications."""

    verifications = 0

    def verify(self, hash, password):
        type(self).verifications += 1
        return super().verify(hash, password)


def test_hashes_are_argon2id():
    assert passwords.hash_password("s3cret-pass").startswith("$argon2id$")


def test_unknown_users_cost_a_full_verification(app, monkeypatch):
    counting = CountingHasher(time_cost=1, memory_cost=64, parallelism=1)
    passwords.use_hasher(counting)
    try:
        CountingHasher.verifications = 0
        assert user_accounts.authenticate(db.session, "nobody", "whatever") is None
        assert CountingHasher.verifications == 1
    finally:
        passwords.use_hasher(TEST_HASHER)


def test_login_rehashes_when_parameters_change(app, factory):
    user = factory.user("rehash-me")
    old_hash = user.password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    passwords.use_hasher(stronger)
    try:
        assert user_accounts.authenticate(db.session, "rehash-me", PASSWORD) is not None
        db.session.refresh(user)
        assert user.password_hash != old_hash
        assert "m=128,t=2" in user.password_hash
        assert user_accounts.authenticate(db.session, "rehash-me", PASSWORD) is not None
    finally:
        passwords.use_hasher(TEST_HASHER)


def test_a_corrupt_stored_hash_fails_closed():
    assert passwords.verify_password("not-a-hash", "anything") is False


def test_password_checks_beyond_the_bound_answer_503_not_out_of_memory(tmp_path):
    """argon2 takes 64 MiB a hash: with every slot taken, a login waits briefly, then gets 503."""
    from mlapi.accounts import passwords
    from mlapi.extensions import db
    from tests.conftest import make_test_app
    from tests.factories import PASSWORD, Factory

    app = make_test_app(f"sqlite:///{tmp_path / 'h.db'}", load_models=False, MLAPI_MAX_CONCURRENT_HASHES="1")
    try:
        Factory(app).user("hasty")
        client = app.test_client()
        with passwords.hashing_slot():  # the one slot, held as a login in progress would
            refused = client.post("/v1/token", data={"username": "hasty", "password": PASSWORD})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.get_json()["error"] == "overloaded"
        assert client.post("/v1/token", data={"username": "hasty", "password": PASSWORD}).status_code == 200
    finally:
        db.dispose()
