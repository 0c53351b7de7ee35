"""API versions: Accept-header negotiation on unversioned paths, and the deprecation policy.

The clock is the app's own (``versioning(app).clock``), set per test: no sleeping, no dates that
age out of the test.
"""

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from mlapi.config import ConfigError, VersionDeprecation, load_settings
from mlapi.extensions import db
from mlapi.web.versioning import NotAcceptable, negotiate, versioning
from tests.conftest import make_test_app
from tests.factories import PASSWORD, Factory

V1 = "application/vnd.mlapi.v1+json"
V2 = "application/vnd.mlapi.v2+json"
V7 = "application/vnd.mlapi.v7+json"
DEPRECATED = "2026-12-01"
SUNSET = "2027-06-30"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def make_app(tmp_path):
    """Apps without model weights (these endpoints need none), each on its own SQLite database."""
    made = []

    def make(**overrides):
        made.append(make_test_app(f"sqlite:///{tmp_path / f'v{len(made)}.db'}", load_models=False, **overrides))
        return made[-1]

    yield make
    db.dispose()


@pytest.fixture
def light_app(make_app):
    return make_app()


@pytest.fixture
def key_headers(light_app):
    return Factory(light_app).key_headers(Factory(light_app).user(tier="pro"))


@pytest.fixture
def deprecated_app(make_app):
    return make_app(MLAPI_DEPRECATED_VERSIONS=f"v1={DEPRECATED}/{SUNSET}")


# --- configuration ---------------------------------------------------------------------------


def test_by_default_v1_serves_the_aliases_and_nothing_is_deprecated():
    settings = load_settings({})
    assert settings.default_api_version == "v1"
    assert settings.deprecated_versions == {}


def test_deprecations_are_parsed():
    settings = load_settings(
        {
            "MLAPI_DEPRECATED_VERSIONS": "v1=2026-12-01/2027-06-30; v2=2030-08-31",
            "MLAPI_DEFAULT_API_VERSION": "v2",
        }
    )
    assert settings.default_api_version == "v2"
    assert settings.deprecated_versions == {
        "v1": VersionDeprecation(deprecated_on=date(2026, 12, 1), sunset_on=date(2027, 6, 30)),
        # Sunset only: deprecated from the policy's minimum notice (6 months) before; 31 Feb is 28 Feb.
        "v2": VersionDeprecation(deprecated_on=date(2030, 2, 28), sunset_on=date(2030, 8, 31)),
    }


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MLAPI_DEPRECATED_VERSIONS", "v7=2027-06-30", "versions v1, v2"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1", "version=[deprecation/]sunset"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=2027-6-30", "expected a date"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=20270630", "expected a date"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=2027-02-30", "not a calendar date"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=soon/2027-06-30", "expected a date"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=2027-06-30/2027-06-30", "must come after"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=2027-07-01/2027-06-30", "must come after"),
        ("MLAPI_DEPRECATED_VERSIONS", "v1=2027-06-30;v1=2028-06-30", "listed twice"),
        ("MLAPI_DEFAULT_API_VERSION", "v7", "expected one of v1, v2"),
        ("MLAPI_DEFAULT_API_VERSION", "1", "expected one of v1, v2"),
    ],
)
def test_junk_versions_and_dates_are_refused_naming_the_variable(name, value, says):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert str(caught.value).startswith(f"{name}={value!r}: ")
    assert says in str(caught.value)


# --- negotiation, the rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (None, "v1"),
        ("", "v1"),
        ("*/*", "v1"),
        ("application/json", "v1"),
        ("application/vnd.mlapi+json", "v1"),  # the vendor type without a version: the default
        (V2, "v2"),
        (f"{V2}, application/json;q=0.9", "v2"),
        (f"application/json, {V2}", "v2"),
        (f"{V1};q=0.5, {V2}", "v2"),
        (f"{V1};q=0.9, {V2};q=0.1", "v1"),
        (f"{V1}, {V2}", "v2"),  # equal preference: the newest
        (f"{V7}, {V1};q=0.5", "v1"),  # an unknown first choice, a served second one
        ("Application/VND.mlapi.V2+JSON; charset=utf-8", "v2"),  # media types are case-insensitive
        (f"{V2};q=0, application/json", "v1"),  # 'not v2' leaves the default
        ("garbage;;q=x", "v1"),
    ],
)
def test_accept_selects_a_version(accept, version):
    assert negotiate(accept, "v1") == version


def test_the_default_is_configurable():
    assert negotiate("application/json", "v2") == "v2"
    assert negotiate(V1, "v2") == "v1"


@pytest.mark.parametrize(
    ("accept", "requested"),
    [
        (V7, ("v7",)),
        (f"{V7}, application/json", ("v7",)),  # naming a version asks for its contract, not any JSON
        (f"{V7}, application/vnd.mlapi.v9+json;q=0.5", ("v7", "v9")),
        ("application/vnd.mlapi.v1+xml", ("application/vnd.mlapi.v1+xml",)),
        (f"{V1};q=0, application/json", ()),  # refuses the default, names nothing else
    ],
)
def test_only_versions_not_served_here_is_not_acceptable(accept, requested):
    with pytest.raises(NotAcceptable) as refused:
        negotiate(accept, "v1")
    assert refused.value.requested == requested


# --- negotiation over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "application/json", V1, f"{V1}, application/json"])
def test_an_alias_is_served_as_the_selected_version(light_app, key_headers, accept):
    client = light_app.test_client()
    headers = {**key_headers, **({"Accept": accept} if accept else {}), "X-Request-ID": "alias-1"}
    response = client.get("/users/me", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == client.get("/v1/users/me", headers=key_headers).get_json()
    assert response.headers["API-Version"] == "v1"
    assert "Accept" in response.vary
    # Same limits as /v1/users/me; JSON clients keep getting application/json.
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.mimetype == "application/json"
    assert response.headers["X-Request-ID"] == "alias-1"


def test_aliases_cover_login_and_keys(light_app):
    client = light_app.test_client()
    user = Factory(light_app).user(tier="pro")
    login = client.post("/token", data={"username": user.username, "password": PASSWORD}, headers={"Accept": V1})
    assert login.status_code == 200 and login.headers["API-Version"] == "v1"
    bearer = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    created = client.post("/api-keys", json={"label": "via alias"}, headers=bearer)
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    listed = client.get("/api-keys", headers={**bearer, "Accept": V1}).get_json()["data"]
    assert [key["label"] for key in listed] == ["via alias"]


def test_a_path_missing_from_the_selected_version_is_a_plain_404(light_app, key_headers):
    response = light_app.test_client().get("/users/me", headers={**key_headers, "Accept": V2})
    assert response.status_code == 404
    assert response.headers["API-Version"] == "v2"
    assert "Accept" in response.vary


def test_v2_serves_its_aliases_and_can_be_the_default(make_app):
    client = make_app(MLAPI_DEFAULT_API_VERSION="v2").test_client()
    live = client.get("/health/live")
    assert live.status_code == 200 and live.get_json() == {"live": True}
    assert live.headers["API-Version"] == "v2"
    assert client.get("/users/me").status_code == 404  # v1's path, absent from the default v2
    assert client.get("/users/me", headers={"Accept": V1}).status_code == 401  # v1 asked for: v1's auth


@pytest.mark.parametrize("path", ["/users/me", "/models/sentiment/infer"])
def test_an_unknown_version_gets_406_in_the_envelope_before_auth(light_app, path):
    client = light_app.test_client()
    method = client.post if path.endswith("infer") else client.get
    response = method(path, headers={"Accept": V7, "X-Request-ID": "want-v7"})
    assert response.status_code == 406
    body = response.get_json()
    assert body["error"] == "unsupported_api_version"
    assert body["status_code"] == 406
    assert body["request_id"] == "want-v7"
    assert body["supported_versions"] == ["v1", "v2"]
    assert "v7" in body["detail"] and "v1, v2" in body["detail"]
    assert "Accept" in response.vary
    assert "API-Version" not in response.headers


def test_a_header_refusing_every_version_gets_406(light_app):
    response = light_app.test_client().get("/users/me", headers={"Accept": f"{V1};q=0"})
    assert response.status_code == 406
    assert "accepts no API version" in response.get_json()["detail"]


def test_errors_of_an_alias_say_their_version(light_app):
    response = light_app.test_client().get("/users/me", headers={"X-API-Key": "mlapi_unknown"})
    assert response.status_code == 401
    assert response.get_json()["error"]
    assert response.headers["API-Version"] == "v1"


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/v1/users/me", "/nowhere"])
def test_paths_outside_the_aliases_are_untouched(light_app, key_headers, path):
    response = light_app.test_client().get(path, headers={**key_headers, "Accept": V7})
    assert response.status_code == (404 if path == "/nowhere" else 200)
    assert "Accept" not in response.vary
    if path == "/v1/users/me":
        assert response.headers["API-Version"] == "v1"  # the path decides, not the header
    else:
        assert "API-Version" not in response.headers


def test_metrics_and_access_log_see_the_versioned_route(capsys, make_app):
    app = make_app()  # created under capsys: the log handler writes to the captured stderr
    key_headers = Factory(app).key_headers(Factory(app).user(tier="pro"))
    labels = {"method": "GET", "endpoint": "/v1/users/me", "status": "200"}
    before = REGISTRY.get_sample_value("api_requests_total", labels) or 0
    capsys.readouterr()
    app.test_client().get("/users/me", headers={**key_headers, "Accept": V1, "X-Request-ID": "logged"})
    assert REGISTRY.get_sample_value("api_requests_total", labels) == before + 1
    assert REGISTRY.get_sample_value("api_requests_total", {**labels, "endpoint": "/users/me"}) is None
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    (entry,) = [line for line in lines if line["logger"] == "mlapi.access" and line.get("request_id") == "logged"]
    assert (entry["path"], entry["requested_path"], entry["api_version"]) == ("/v1/users/me", "/users/me", "v1")


def test_an_alias_and_its_version_share_one_quota(make_app):
    app = make_app(MLAPI_TIER_LIMITS="free=2/minute")
    headers = Factory(app).key_headers(Factory(app).user(tier="free"))
    client = app.test_client()
    assert client.get("/users/me", headers=headers).status_code == 200
    assert client.get("/v1/users/me", headers=headers).status_code == 200
    refused = client.get("/users/me", headers={**headers, "Accept": V1})
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limit_exceeded"


def test_predict_through_the_alias_matches_v1(app, factory):
    """With the real weights: the inference endpoints negotiate like the rest."""
    client = app.test_client()
    headers = factory.key_headers(factory.user(tier="pro"))
    body = {"text": "I love this phone, the battery lasts for days.", "model_version": "1.0"}
    aliased = client.post("/predict", json=body, headers={**headers, "Accept": V1})
    direct = client.post("/v1/predict", json=body, headers=headers)
    assert aliased.status_code == direct.status_code == 200
    assert aliased.headers["API-Version"] == "v1"
    assert (aliased.get_json()["result"], aliased.get_json()["model_version"]) == (direct.get_json()["result"], "1.0")
    assert client.get("/models/sentiment", headers=headers).get_json()["name"] == "sentiment"
    ready = client.get("/models/sentiment/ready", headers={**headers, "Accept": V2})
    assert ready.status_code == 200 and ready.get_json()["ready"] is True


# --- deprecation and sunset --------------------------------------------------------------------


def announcement(response):
    return {name: response.headers.get(name) for name in ("Deprecation", "Sunset", "Link")}


EXPECTED_V1_HEADERS = {
    "Deprecation": f"@{int(utc(2026, 12, 1).timestamp())}",
    "Sunset": "Wed, 30 Jun 2027 00:00:00 GMT",
    "Link": '</v2>; rel="successor-version", </v1/docs>; rel="deprecation"; type="text/html"',
}


@pytest.mark.parametrize(
    "now",
    [
        utc(2026, 11, 1),  # announced, not yet in effect: RFC 9745 allows a future date
        utc(2026, 12, 1),  # in effect
        utc(2027, 6, 29, 23, 59, 59),  # the last second
    ],
)
def test_before_the_sunset_a_deprecated_version_works_and_says_so(deprecated_app, now):
    versioning(deprecated_app).clock = lambda: now
    client = deprecated_app.test_client()
    headers = Factory(deprecated_app).key_headers(Factory(deprecated_app).user())
    for response in (
        client.get("/v1/users/me", headers=headers),
        client.get("/users/me", headers=headers),  # the alias resolves to v1
        client.get("/users/me", headers={**headers, "Accept": V1}),
    ):
        assert response.status_code == 200
        assert announcement(response) == EXPECTED_V1_HEADERS
    error = client.get("/v1/users/me")
    assert error.status_code == 401
    assert announcement(error) == EXPECTED_V1_HEADERS  # errors too


def test_the_successor_is_not_deprecated(deprecated_app):
    versioning(deprecated_app).clock = lambda: utc(2027, 7, 1)
    client = deprecated_app.test_client()
    for response in (client.get("/v2/health/live"), client.get("/health/live", headers={"Accept": V2})):
        assert response.status_code == 200
        assert response.headers["API-Version"] == "v2"
        assert announcement(response) == {"Deprecation": None, "Sunset": None, "Link": None}
    assert announcement(client.get("/health")) == {"Deprecation": None, "Sunset": None, "Link": None}


@pytest.mark.parametrize("now", [utc(2027, 6, 30), utc(2031, 1, 1)])
def test_from_the_sunset_on_every_route_of_the_version_is_gone(deprecated_app, now):
    versioning(deprecated_app).clock = lambda: now
    client = deprecated_app.test_client()
    headers = Factory(deprecated_app).key_headers(Factory(deprecated_app).user())
    for method, path, extra in [
        ("GET", "/v1/users/me", headers),
        ("GET", "/v1/users/me", {}),  # before auth: no credentials needed to learn it is gone
        ("GET", "/users/me", headers),  # the default alias follows v1
        ("POST", "/v1/predict", {}),
        ("POST", "/v1/token", {}),
        ("GET", "/v1/no-such-route", {}),
    ]:
        response = client.open(path, method=method, headers={**extra, "X-Request-ID": "late"})
        assert response.status_code == 410, path
        body = response.get_json()
        assert (body["error"], body["status_code"], body["request_id"]) == ("version_sunset", 410, "late")
        assert "2027-06-30" in body["detail"] and "v2 (/v2)" in body["detail"]
        assert announcement(response) == EXPECTED_V1_HEADERS


def test_after_the_sunset_the_documentation_stays(deprecated_app):
    versioning(deprecated_app).clock = lambda: utc(2028, 1, 1)
    client = deprecated_app.test_client()
    for path in ("/v1/openapi.json", "/v1/docs", "/v1/redoc", "/v1/docs/assets/swagger-ui/swagger-ui.css"):
        with client.get(path) as response:  # closes the asset's file
            assert response.status_code == 200, path
            assert announcement(response) == EXPECTED_V1_HEADERS
    assert client.get("/health/live", headers={"Accept": V2}).status_code == 200


def test_a_refusal_after_the_sunset_costs_no_quota(make_app):
    app = make_app(MLAPI_DEPRECATED_VERSIONS=f"v1={DEPRECATED}/{SUNSET}", MLAPI_TIER_LIMITS="free=1/minute")
    headers = Factory(app).key_headers(Factory(app).user(tier="free"))
    client = app.test_client()
    versioning(app).clock = lambda: utc(2027, 7, 1)
    assert [client.get("/v1/users/me", headers=headers).status_code for _ in range(3)] == [410] * 3
    versioning(app).clock = lambda: utc(2027, 1, 1)
    assert client.get("/v1/users/me", headers=headers).status_code == 200


def test_a_sunset_only_setting_announces_six_months_of_notice(make_app):
    app = make_app(MLAPI_DEPRECATED_VERSIONS="v1=2027-06-30")
    versioning(app).clock = lambda: utc(2026, 11, 27)
    response = app.test_client().get("/v1/users/me")
    assert response.headers["Deprecation"] == f"@{int(utc(2026, 12, 30).timestamp())}"
    assert response.headers["Sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"


def test_the_last_version_has_no_successor(make_app):
    app = make_app(MLAPI_DEPRECATED_VERSIONS="v2=2027-01-01/2027-07-01")
    client = app.test_client()
    versioning(app).clock = lambda: utc(2027, 3, 1)
    live = client.get("/v2/health/live")
    assert live.status_code == 200
    assert live.headers["Link"] == '</v1/docs>; rel="deprecation"; type="text/html"'
    assert "Deprecation" not in client.get("/v1/users/me").headers
    versioning(app).clock = lambda: utc(2027, 7, 1)
    gone = client.get("/v2/health/live")
    assert gone.status_code == 410
    assert "no successor" in gone.get_data(as_text=True)
    assert "version_sunset" in gone.get_json().values()


def test_the_real_clock_is_used_by_default(make_app):
    # Dates relative to today, so this stays true whenever it runs.
    today = datetime.now(UTC).date()
    past = make_app(MLAPI_DEPRECATED_VERSIONS=f"v1={today - timedelta(days=60)}/{today - timedelta(days=1)}")
    assert past.test_client().get("/v1/users/me").status_code == 410
    future = make_app(MLAPI_DEPRECATED_VERSIONS=f"v1={today - timedelta(days=1)}/{today + timedelta(days=2)}")
    assert future.test_client().get("/v1/users/me").status_code == 401


def test_the_openapi_document_marks_deprecated_operations(make_app):
    def spec_of(app):
        return app.test_client().get("/v1/openapi.json").get_json()["paths"]

    def deprecated(paths):
        return {
            path
            for path, operations in paths.items()
            if any(op.get("deprecated") for op in operations.values() if isinstance(op, dict))
        }

    # One app at a time: the apps of a process share one flask-smorest Api, whose spec is the latest app's.
    current = spec_of(make_app())
    assert deprecated(current) == set()
    marked = spec_of(make_app(MLAPI_DEPRECATED_VERSIONS=f"v1={DEPRECATED}/{SUNSET}"))
    assert deprecated(marked) == {path for path in current if path.startswith("/v1/")}
    assert {"/v1/users/me", "/v1/predict"} <= deprecated(marked)
    assert marked.keys() == current.keys()


def test_browsers_may_read_the_version_headers(make_app):
    app = make_app(MLAPI_CORS_ORIGINS="https://app.example.com", MLAPI_DEPRECATED_VERSIONS=f"v1={DEPRECATED}/{SUNSET}")
    versioning(app).clock = lambda: utc(2027, 1, 1)
    response = app.test_client().get("/users/me", headers={"Origin": "https://app.example.com"})
    exposed = {name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"API-Version", "Deprecation", "Sunset", "Link"} <= exposed
    assert "Accept" in response.vary
