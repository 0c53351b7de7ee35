"""Contract fuzzing: Schemathesis drives every operation of ``/v1/openapi.json`` against the real app.

Valid and invalid data, boundary values, missing or wrong credentials and undocumented methods go
to the app in-process, with the real models, a migrated database and real credentials, and every
response must keep the documented contract: no 5xx, a status the operation documents explicitly
(the catch-all ``default`` response does not count), the documented content type and body schema,
and Schemathesis's other default checks (valid data accepted, invalid data refused, 401 without
credentials, 405 with an ``Allow`` header for other methods). The run is reproducible; set
``MLAPI_TEST_FUZZ_SEED`` and ``MLAPI_TEST_FUZZ_EXAMPLES`` to explore further.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import strategies as st
from schemathesis.specs.openapi.schemas import OpenApiSchema

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory

MIN_CASES = 1000

LIMITS = {
    # The account quota must not turn the run into a wall of 429s (they would hide every other
    # answer); the login limit stays low, so that a documented 429 is still met and checked.
    "MLAPI_TIER_LIMITS": "free=100000/minute;pro=100000/minute;enterprise=100000/minute",
    "MLAPI_ANON_LIMIT": "100000/minute",
    "MLAPI_LOGIN_LIMIT": "10/minute",
}

INFERENCE = ["POST /v1/predict", "POST /v1/predict/batch", "POST /v1/embeddings"]
USAGE = ["GET /v1/usage", "GET /v1/admin/usage"]
ACCEPTED_OR_REFUSED_BY_A_RULE = ["2XX", "3XX", 401, 403, 404, 409, 422, 429, "5XX"]

CONFIG = {
    "seed": int(os.environ.get("MLAPI_TEST_FUZZ_SEED", "20261127")),
    "generation": {
        "database": "none",
        # Per operation, in the fuzzing phase; the coverage phase adds its own boundary cases.
        "max-examples": int(os.environ.get("MLAPI_TEST_FUZZ_EXAMPLES", "25")),
        # Every text field refuses NUL with a documented 400 (PostgreSQL cannot store it), which a
        # JSON Schema string cannot say field by field: valid data is generated without it.
        "allow-x00": False,
    },
    "operations": [
        # Up to 100 texts in one forward pass: the coverage phase's boundary cases are plenty.
        {"include-name": "POST /v1/predict/batch", "generation": {"max-examples": 5}},
        # Which model serves which task, and its dimensions, are facts of the model store that the
        # schema cannot state: valid data may get a 422 there, but only for those reasons
        # (refused_only_by_the_model_store checks it).
        {
            "include-name": INFERENCE,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_OR_REFUSED_BY_A_RULE}},
        },
        # A usage period ends no earlier than it starts and spans at most 400 days: a rule across
        # two fields, which a schema cannot state (refused_only_by_the_model_store checks the reason).
        {
            "include-name": USAGE,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_OR_REFUSED_BY_A_RULE}},
        },
    ],
}


def status_documented_explicitly(ctx, response, case):
    """Like ``status_code_conformance``, but the catch-all ``default`` response documents nothing."""
    if case.method.upper() != case.operation.method.upper():
        return None  # another method: the built-in unsupported_method check wants its 405
    documented = set(case.operation.definition.raw["responses"]) - {"default"}
    assert str(response.status_code) in documented, (
        f"{case.operation.label} answered an undocumented {response.status_code}; documented: {sorted(documented)}"
    )
    return None


def refused_only_by_the_model_store(ctx, response, case):
    """Valid inference data gets a 422 only for a model of another task or dimensions it does not give;
    a valid usage query only for its period."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if case.operation.label not in INFERENCE + USAGE or not positive or response.status_code != 422:
        return None
    body = response.json()
    if case.operation.label in USAGE:
        assert set(body.get("errors", {})) == {"end"}, f"valid data refused: {body}"
        return None
    assert body["error"] == "unsupported_task" or set(body.get("errors", {})) == {"dimensions"}, (
        f"valid data refused: {body}"
    )
    return None


class Credentials:
    """Real credentials, chosen per operation so that no generated request can spoil another's.

    Everything runs on an admin's API key, except what would revoke a credential still in use:
    DELETE /v1/api-keys/<id> runs as another user, whose own keys are the only ones it can revoke
    (a key id of the admin's gets 404), and the token endpoints get a fresh token every time.
    """

    def __init__(self, app: Flask) -> None:
        self.factory = Factory(app)
        with app.app_context():
            self.admin = self.factory.user("fuzz-admin", tier="enterprise", admin=True)
            self.admin_key = self.factory.api_key(self.admin, "fuzz")[1]
            self.keyholder = self.factory.user("fuzz-keyholder", tier="enterprise")
            for i in range(5):
                self.factory.api_key(self.keyholder, f"revocable {i}")

    def headers(self, label: str) -> dict[str, str] | None:
        if label == "POST /v1/token":
            return None  # a login: the form holds the credentials
        if label == "POST /v1/token/refresh":
            return self.factory.bearer(self.factory.refresh_token(self.admin))
        if label == "POST /v1/token/revoke":
            return self.factory.bearer(self.factory.access_token(self.admin))
        if label == "DELETE /v1/api-keys/{key_id}":
            return self.factory.bearer(self.factory.access_token(self.keyholder))
        return {"X-API-Key": self.admin_key}


@pytest.fixture
def fuzz_app(tmp_path) -> Iterator[Flask]:
    app = make_test_app(f"sqlite:///{tmp_path / 'fuzz.db'}", **LIMITS)
    yield app
    db.dispose()


@pytest.fixture
def api_schema(fuzz_app: Flask) -> OpenApiSchema:
    credentials = Credentials(fuzz_app)
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", fuzz_app, config=schemathesis.Config.from_dict(CONFIG))

    # Hostile values a JSON Schema cannot describe, mixed into the negative cases: an integer past
    # Python's 4,300-digit limit (once a 500 on every JSON endpoint) and Inference-Header-Content-Length
    # values that str.isdigit() accepts and int() does not (once a 500 on /v2 infer).
    @schema.hook("flatmap_case")
    def hostile_numbers(context, case):
        if case.meta is None or case.meta.generation.mode.is_positive:
            return st.just(case)
        choices = ["as generated"]
        if isinstance(case.body, dict) and case.media_type == "application/json":
            choices.append("long integer")
        if case.operation.path.endswith("/infer"):
            choices += [f"header length {value}" for value in HOSTILE_HEADER_LENGTHS]
        return st.sampled_from(choices).map(lambda choice: with_hostile_number(case, choice))

    # Not cached: the token endpoints need a fresh token for every case.
    @schema.auth(refresh_interval=None)
    class RealCredentials:
        def get(self, case, context):
            return credentials.headers(case.operation.label)

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), **data}

    return schema


LONG_INTEGER = "9" * 5000
HOSTILE_HEADER_LENGTHS = ("²", "١٢", "7" * 5000)


def with_hostile_number(case, choice: str):
    if choice == "long integer":
        # Written as text: json.dumps cannot write such an integer (the same limit), the client must.
        document = json.dumps(case.body)
        case.body = (document[:-1] + (", " if case.body else "") + f'"long_number": {LONG_INTEGER}}}').encode()
        hostile_cases["long integer"] += 1
    elif choice.startswith("header length "):
        case.headers = {
            **(case.headers or {}),
            "Inference-Header-Content-Length": choice.removeprefix("header length "),
        }
        hostile_cases["header length"] += 1
    return case


hostile_cases: Counter = Counter()
OTHER_METHODS = "(undocumented methods)"


@pytest.fixture
def answers() -> Iterator[Counter]:
    """How often each operation gave each status; checked once every operation has run."""
    counter: Counter = Counter()
    yield counter
    print("contract fuzzing, (operation, status): cases", sorted(counter.items()))
    operations = {label for label, _ in counter} - {OTHER_METHODS}
    total = sum(n for (label, _), n in counter.items() if label in operations)
    assert total >= MIN_CASES, f"only {total} cases of documented operations ran"
    # Proof that the credentials worked: every operation answered something besides 401 and 429.
    passed_auth = {label for label, status in counter if status not in (401, 429)} & operations
    assert operations == passed_auth, f"never past authentication: {sorted(operations - passed_auth)}"
    assert any(status == 429 for _, status in counter), "no 429 was met: the limits are too generous"
    # The hostile values were sent, not only drawn up.
    assert hostile_cases["long integer"] >= 10 and hostile_cases["header length"] >= 3, hostile_cases


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis 4.32 renames the test node through its private `_nodeid`, which pytest 9.2
    # no longer has: give it one (it only affects the names in the report).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_response_keeps_the_documented_contract(case, answers):
    response = case.call_and_validate(additional_checks=[status_documented_explicitly, refused_only_by_the_model_store])
    documented_method = case.method.upper() == case.operation.method.upper()
    answers[(case.operation.label if documented_method else OTHER_METHODS, response.status_code)] += 1
