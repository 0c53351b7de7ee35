"""Usage metering, /v1/usage, /v1/admin/usage and monthly quotas, over the app on SQLite and PostgreSQL.

Counts are flushed explicitly (``flush``) where a test reads them back: the flusher thread's timing
is the Gunicorn tests' business (tests/test_gunicorn_usage.py).
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.usage.periods import month_start, reset_at
from mlapi.web.state import state_of
from tests.conftest import make_test_app
from tests.factories import Factory

TEXTS = ["The support team fixed it in minutes.", "It broke on day one.", "Fine, I suppose."]


@pytest.fixture
def app(database_url):
    """Free accounts have 5 items a month (and room enough per minute); pro accounts are unlimited."""
    app = make_test_app(database_url, MLAPI_TIER_MONTHLY="free=5", MLAPI_TIER_LIMITS="free=100/minute")
    yield app
    state_of(app).meter.close()
    db.dispose()


@pytest.fixture
def factory(app):
    return Factory(app)


def flush(app) -> None:
    assert state_of(app).meter.flush()


def mixed_run(client, headers) -> None:
    """2 predicts (the second a cache hit), a batch of 3, an embedding of 2, a /v2 infer of 2: 5 requests, 9 items."""
    for _ in range(2):
        assert client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers).status_code == 200
    assert client.post("/v1/predict/batch", json={"inputs": TEXTS}, headers=headers).status_code == 200
    assert client.post("/v1/embeddings", json={"input": TEXTS[:2]}, headers=headers).status_code == 200
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[1:]}]}
    assert client.post("/v2/models/sentiment/infer", json=body, headers=headers).status_code == 200


def usage(client, headers, **query):
    return client.get("/v1/usage", query_string=query, headers=headers)


@pytest.fixture
def alice(factory):
    return factory.user("alice", tier="pro")


def test_every_metered_request_counts_once_by_model(app, client, factory, alice):
    headers = factory.key_headers(alice)
    mixed_run(client, headers)
    flush(app)

    body = usage(client, headers, group_by="model").get_json()
    by_model = {row["model"]: row for row in body["data"]}
    assert set(by_model) == {"sentiment", "minilm"}
    # sentiment: predict 1+1, batch 3, v2 2; cached: the second predict, the batch's first input,
    # and both of /v2's (the batch computed them).
    assert (by_model["sentiment"]["requests"], by_model["sentiment"]["items"]) == (4, 7)
    assert by_model["sentiment"]["cached_items"] == 4
    assert (by_model["minilm"]["requests"], by_model["minilm"]["items"], by_model["minilm"]["cached_items"]) == (
        1,
        2,
        0,
    )
    assert body["totals"]["requests"] == 5 and body["totals"]["items"] == 9
    assert all(row["tokens"] > 0 and row["model_ms"] > 0 for row in body["data"])
    today = utcnow().date()
    assert (body["start"], body["end"], body["group_by"]) == (
        month_start(today).isoformat(),
        today.isoformat(),
        "model",
    )


def test_tokens_count_what_the_model_read(app, client, factory, alice):
    headers = factory.key_headers(alice)
    answer = client.post("/v1/embeddings", json={"input": TEXTS}, headers=headers).get_json()
    client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers)
    client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers)  # a cache hit reads no tokens
    flush(app)
    rows = {row["model"]: row for row in usage(client, headers, group_by="model").get_json()["data"]}
    assert rows["minilm"]["tokens"] == answer["usage"]["prompt_tokens"]
    assert 0 < rows["sentiment"]["tokens"] < rows["minilm"]["tokens"]


def test_requests_that_reach_no_model_are_not_metered(app, client, factory, alice):
    headers = factory.key_headers(alice)
    assert client.post("/v1/predict", json={"text": ""}, headers=headers).status_code == 422
    assert client.post("/v1/predict", json={"text": "x", "model": "nope"}, headers=headers).status_code == 404
    assert client.post("/v1/predict", json={"text": "x"}).status_code == 401
    flush(app)
    body = usage(client, headers).get_json()
    assert body["data"] == [] and body["totals"]["requests"] == 0


def test_group_by_day_and_key_with_a_login_and_two_keys(app, client, factory, alice):
    first, second = factory.api_key(alice, "first"), factory.api_key(alice, "second")
    login = factory.token_headers(alice)
    for headers, count in (({"X-API-Key": first[1]}, 2), ({"X-API-Key": second[1]}, 1), (login, 1)):
        for _ in range(count):
            assert client.post("/v1/predict/batch", json={"inputs": TEXTS[:2]}, headers=headers).status_code == 200
    flush(app)

    rows = usage(client, login, group_by="key").get_json()["data"]
    by_key = {row["key_id"]: (row["requests"], row["items"]) for row in rows}
    assert by_key == {first[0].id: (2, 4), second[0].id: (1, 2), None: (1, 2)}
    assert [row["session_id"] is not None for row in rows if row["key_id"] is None] == [True]

    (day,) = usage(client, login, group_by="day").get_json()["data"]
    assert (day["day"], day["requests"], day["items"]) == (utcnow().date().isoformat(), 4, 8)
    combined = usage(client, login, group_by="day,model").get_json()["data"]
    assert [(r["day"], r["model"], r["items"]) for r in combined] == [(day["day"], "sentiment", 8)]


def test_one_account_never_sees_another(app, client, factory, alice):
    mallory = factory.user("mallory", tier="pro")
    client.post("/v1/predict", json={"text": TEXTS[0]}, headers=factory.key_headers(alice))
    flush(app)
    body = usage(client, factory.key_headers(mallory), group_by="key").get_json()
    assert body["data"] == [] and body["totals"]["items"] == 0 and body["quota"]["used"] == 0
    # The admin report's account filter is for admins only.
    assert client.get("/v1/admin/usage", headers=factory.key_headers(mallory)).status_code == 403


def test_usage_needs_the_usage_read_scope(client, factory, alice):
    refused = usage(client, factory.key_headers(alice, scopes=("inference",)))
    assert refused.status_code == 403 and refused.get_json()["error"] == "insufficient_scope"
    assert usage(client, factory.key_headers(alice)).status_code == 200  # the default scopes include it


@pytest.mark.parametrize(
    "query",
    [
        {"start": "2026-13-01"},
        {"end": "yesterday"},
        {"start": "2026-02-01", "end": "2026-01-31"},
        {"start": "2025-01-01", "end": "2026-02-05"},  # 401 days
        {"group_by": "account"},  # admins only
        {"group_by": "day, model"},
        {"group_by": "day\n"},
        {"group_by": "x" * 65},
    ],
)
def test_bad_periods_and_groupings_are_422(client, factory, alice, query):
    response = usage(client, factory.key_headers(alice), **query)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] == "validation_error"


def test_a_range_of_400_days_is_accepted(client, factory, alice):
    response = usage(client, factory.key_headers(alice), start="2025-01-01", end="2026-02-04")
    assert response.status_code == 200


def test_admin_report_per_account_and_model_as_json_and_csv(app, client, factory, alice):
    bob = factory.user("bob", tier="free")
    admin = factory.key_headers(factory.user("root", admin=True), scopes=("admin",))
    mixed_run(client, factory.key_headers(alice))
    client.post("/v1/predict/batch", json={"inputs": TEXTS[:2]}, headers=factory.key_headers(bob))
    flush(app)

    body = client.get("/v1/admin/usage", query_string={"group_by": "account,model"}, headers=admin).get_json()
    cells = {(r["account"], r["model"]): (r["requests"], r["items"]) for r in body["data"]}
    assert cells == {("alice", "minilm"): (1, 2), ("alice", "sentiment"): (4, 7), ("bob", "sentiment"): (1, 2)}
    assert body["totals"]["items"] == 11

    response = client.get("/v1/admin/usage", headers={**admin, "Accept": "text/csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["account", "requests", "items", "cached_items", "tokens", "model_ms"]
    assert {(r["account"], int(r["items"])) for r in rows} == {("alice", 9), ("bob", 2)}

    only_bob = client.get("/v1/admin/usage", query_string={"account": "bob", "format": "csv"}, headers=admin)
    assert [r["account"] for r in csv.DictReader(io.StringIO(only_bob.get_data(as_text=True)))] == ["bob"]
    unknown = client.get("/v1/admin/usage", query_string={"account": "nobody"}, headers=admin)
    assert unknown.status_code == 404


def test_monthly_quota_refuses_the_item_past_it(app, client, factory):
    headers = factory.key_headers(factory.user("carol", tier="free"))
    for remaining in (4, 3, 2):
        ok = client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers)
        assert ok.status_code == 200 and ok.headers["X-Quota-Remaining"] == str(remaining)
        assert ok.headers["X-Quota-Limit"] == "5"
        assert int(ok.headers["X-Quota-Reset"]) == int(reset_at(utcnow()).timestamp())
    # A batch of 3 with 2 left is refused whole, and costs nothing of the month.
    refused = client.post("/v1/predict/batch", json={"inputs": TEXTS}, headers=headers)
    assert refused.status_code == 429 and refused.get_json()["error"] == "monthly_quota_exceeded"
    assert refused.headers["X-Quota-Remaining"] == "2"
    assert client.post("/v1/predict/batch", json={"inputs": TEXTS[:2]}, headers=headers).status_code == 200

    sixth = client.post("/v1/predict", json={"text": TEXTS[1]}, headers=headers)
    assert sixth.status_code == 429 and sixth.get_json()["error"] == "monthly_quota_exceeded"
    assert sixth.headers["X-Quota-Remaining"] == "0"
    left = reset_at(utcnow()) - utcnow()
    assert abs(int(sixth.headers["Retry-After"]) - left.total_seconds()) < 5
    flush(app)
    assert usage(client, headers).get_json()["quota"] == {
        "monthly_limit": 5,
        "used": 5,
        "remaining": 0,
        "resets_at": reset_at(utcnow()).isoformat(),
    }


def test_a_request_that_fails_gives_its_items_back(app, client, factory):
    headers = factory.key_headers(factory.user("dave", tier="free"))
    assert client.post("/v1/predict", json={"text": "x", "model": "nope"}, headers=headers).status_code == 404
    failed = client.post("/v1/embeddings", json={"input": ["x", "y"], "dimensions": 3}, headers=headers)
    assert failed.status_code == 422 and failed.headers["X-Quota-Remaining"] == "5"
    assert client.post("/v1/predict/batch", json={"inputs": TEXTS}, headers=headers).status_code == 200
    last = client.post("/v1/predict/batch", json={"inputs": TEXTS[:2]}, headers=headers)
    assert last.status_code == 200 and last.headers["X-Quota-Remaining"] == "0"


def test_unlimited_accounts_get_no_quota_headers(client, factory, alice):
    response = client.post("/v1/predict", json={"text": TEXTS[0]}, headers=factory.key_headers(alice))
    assert response.status_code == 200 and "X-Quota-Limit" not in response.headers
    quota = usage(client, factory.key_headers(alice)).get_json()["quota"]
    assert (quota["monthly_limit"], quota["remaining"], quota["used"]) == (None, None, 1)


def test_an_accounts_own_quota_and_rate_limit_apply_on_its_next_request(app, client, factory):
    erin = factory.user("erin", tier="free")
    headers = factory.key_headers(erin)
    admin = factory.token_headers(factory.user("root", admin=True))
    assert client.post("/v1/predict", json={"text": "a"}, headers=headers).headers["X-Quota-Limit"] == "5"

    patched = client.patch(
        "/v1/admin/users/erin", json={"monthly_quota": 2, "rate_limit": "3/minute"}, headers=admin
    ).get_json()
    assert (patched["monthly_quota"], patched["rate_limit"]) == (2, "3/minute")
    second = client.post("/v1/predict", json={"text": "b"}, headers=headers)
    assert (second.headers["X-Quota-Limit"], second.headers["X-Quota-Remaining"]) == ("2", "0")
    assert second.headers["X-RateLimit-Limit"] == "3"
    assert client.post("/v1/predict", json={"text": "c"}, headers=headers).status_code == 429

    back = client.patch("/v1/admin/users/erin", json={"monthly_quota": None, "rate_limit": None}, headers=admin)
    assert back.get_json()["monthly_quota"] is None
    third = client.post("/v1/predict", json={"text": "c"}, headers=headers)
    assert third.status_code == 200 and third.headers["X-Quota-Limit"] == "5"
    assert third.headers["X-RateLimit-Limit"] == "100"

    events = client.get("/v1/admin/audit", query_string={"target": "erin"}, headers=admin).get_json()["data"]
    changes = [(e["action"], e["detail"]) for e in events if e["action"] != "key.created"]
    assert changes == [
        ("user.rate_limit_changed", {"from": "3/minute", "to": None}),
        ("user.monthly_quota_changed", {"from": 2, "to": None}),
        ("user.rate_limit_changed", {"from": None, "to": "3/minute"}),
        ("user.monthly_quota_changed", {"from": None, "to": 2}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"monthly_quota": -1},
        {"monthly_quota": 10**13},
        {"monthly_quota": "5"},
        {"monthly_quota": 1.5},
        {"rate_limit": "lots"},
        {"rate_limit": "0/minute"},
        {"rate_limit": "1000001/minute"},
        {"rate_limit": "1/minute;" * 10},
        {"rate_limit": ""},
        {"rate_limit": "5/2 days"},
    ],
)
def test_overrides_out_of_bounds_are_422(client, factory, body):
    factory.user("frank")
    admin = factory.token_headers(factory.user("root", admin=True))
    response = client.patch("/v1/admin/users/frank", json=body, headers=admin)
    assert response.status_code == 422 and response.get_json()["error"] == "validation_error"


def test_period_defaults_to_this_month_and_takes_past_months(app, client, factory, alice):
    headers = factory.key_headers(alice)
    client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers)
    flush(app)
    last_month = month_start(utcnow().date()) - timedelta(days=1)
    body = usage(client, headers, start=month_start(last_month).isoformat(), end=last_month.isoformat()).get_json()
    assert body["totals"]["requests"] == 0


def test_a_report_too_large_for_one_answer_is_refused(app, client, factory, alice, monkeypatch):
    from mlapi.api.v1 import usage as usage_api

    headers = factory.key_headers(alice)
    client.post("/v1/predict", json={"text": TEXTS[0]}, headers=headers)
    client.post("/v1/embeddings", json={"input": TEXTS[0]}, headers=headers)
    flush(app)
    monkeypatch.setattr(usage_api, "MAX_ROWS", 1)
    refused = usage(client, headers, group_by="model")
    assert refused.status_code == 422 and refused.get_json()["error"] == "report_too_large"
    assert usage(client, headers, group_by="day").status_code == 200
