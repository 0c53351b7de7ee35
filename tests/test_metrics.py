"""Prometheus metrics: names, bounded labels, the optional token, and the deploy files' PromQL."""

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlapi.extensions import db
from mlapi.web.state import state_of
from tests.conftest import make_test_app

ROOT = Path(__file__).resolve().parents[1]
METRICS = {
    "api_requests_total",
    "api_request_latency_seconds",
    "api_active_requests",
    "inference_latency_seconds",
    "inference_batch_size",
    "inference_queue_wait_seconds",
    "inference_queue_depth",
    "prediction_cache_requests_total",
    "rate_limit_rejections_total",
    "auth_failures_total",
    "rate_limit_storage_degraded",
    "model_info",
    "mlapi_usage_items_total",
    "mlapi_monthly_quota_rejections_total",
    "mlapi_accounts_near_monthly_quota",
}


def scrape(client, **headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return {
        sample.name: sample
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }, response.get_data(as_text=True)


def sample_names(text):
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def exported_names(text):
    """Every series name, plus the family names (``api_requests`` is exposed as ``api_requests_total``)."""
    names = sample_names(text)
    return names | {family.name for family in text_string_to_metric_families(text)}


@pytest.fixture
def app(tmp_path):
    """Enterprise accounts have one item a month here: a metrics test spends it."""
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}", MLAPI_TIER_MONTHLY="enterprise=1")
    yield app
    state_of(app).meter.close()
    db.dispose()


@pytest.fixture
def traffic(app, factory):
    """An app that has served predictions, a cache hit, a 401, a 429 and a spent monthly quota, and
    flushed its usage counts."""
    client = app.test_client()
    headers = factory.key_headers(factory.user(tier="free"))
    for _ in range(2):
        client.post("/v1/predict", json={"text": "metrics please"}, headers=headers)
    client.get("/v1/users/me", headers={"X-API-Key": "mlapi_unknown"})
    for _ in range(10):
        client.get("/v1/users/me", headers=headers)
    spender = factory.key_headers(factory.user(tier="enterprise"))
    for _ in range(2):
        client.post("/v1/predict", json={"text": "metrics please"}, headers=spender)
    state_of(app).meter.flush()
    return client


def test_every_metric_is_exported(traffic):
    _, text = scrape(traffic)
    names = exported_names(text)
    missing = {name for name in METRICS if name not in names and f"{name}_count" not in names}
    assert not missing
    assert re.search(r'prediction_cache_requests_total\{result="hit"\} [1-9]', text)
    assert re.search(r'rate_limit_rejections_total\{tier="free"\} [1-9]', text)
    assert re.search(r'auth_failures_total\{reason="unknown_key"\} [1-9]', text)
    assert re.search(r'model_info\{device="cpu",model="sentiment",version="1.1",worker_slot="-"\} 1', text)
    assert re.search(r'mlapi_usage_items_total\{model="sentiment",tier="free"\} [2-9]', text)
    assert re.search(r'mlapi_monthly_quota_rejections_total\{tier="enterprise"\} [1-9]', text)
    # The spender is past 100 % (and 90 %) of its quota; nobody else has a quota.
    assert re.search(r'mlapi_accounts_near_monthly_quota\{threshold="1"\} 1', text)
    assert re.search(r'mlapi_accounts_near_monthly_quota\{threshold="0.9"\} 1', text)


def test_the_endpoint_label_is_the_url_template(app, factory):
    client = app.test_client()
    headers = factory.key_headers(factory.user(tier="enterprise"))
    for i in range(5):
        client.get(f"/v1/models/random-{i}", headers=headers)
        client.get(f"/no/such/page/{i}")
    _, text = scrape(client)
    assert 'endpoint="/v1/models/<name>"' in text and 'endpoint="<unmatched>"' in text
    assert "random-" not in text and "/no/such" not in text


def test_metrics_token(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path / 't.db'}", MLAPI_METRICS_TOKEN="s3cret-scrape-token", load_models=False)
    try:
        client = app.test_client()
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.get_json()["error"] == "missing_credentials"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"}).status_code == 200
    finally:
        db.dispose()


PROMQL_WORDS = {
    "sum",
    "rate",
    "histogram_quantile",
    "clamp_min",
    "max",
    "count",
    "by",
    "or",
    "and",
    "absent",
    "up",
}


def promql_metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # groupings
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "", expr)  # numbers, 1e-9 included
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - PROMQL_WORDS


def deploy_expressions():
    dashboard = json.loads((ROOT / "deploy/grafana/mlapi-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return exprs


def test_dashboard_and_alerts_only_name_exported_metrics(traffic):
    _, text = scrape(traffic)
    names = exported_names(text)
    exprs = deploy_expressions()
    assert len(exprs) >= 15
    for expr in exprs:
        unknown = promql_metric_names(expr) - names
        assert not unknown, f"{expr!r} names {unknown}"


def test_the_promql_check_would_catch_a_typo():
    assert promql_metric_names('sum(rate(api_request_total{status=~"5.."}[5m]))') == {"api_request_total"}


def test_the_access_log_names_the_account_and_model_never_the_key(tmp_path, capsys):
    from tests.factories import Factory

    app = make_test_app(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        factory = Factory(app)
        record, key = factory.api_key(factory.user("logged", tier="pro"))
        capsys.readouterr()
        app.test_client().post("/v1/predict", json={"text": "log this"}, headers={"X-API-Key": key})
    finally:
        db.dispose()
    out = capsys.readouterr().err
    line = next(json.loads(x) for x in out.splitlines() if '"mlapi.access"' in x)
    assert (line["account_id"], line["api_key_id"], line["tier"]) == (record.user_id, record.id, "pro")
    assert (line["model"], line["model_version"], line["status"]) == ("sentiment", "1.1", 200)
    assert line["latency_ms"] > 0
    assert key not in out and key[6:] not in out
