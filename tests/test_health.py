from mlapi import __version__
from mlapi.app import create_app
from mlapi.extensions import db
from mlapi.web.state import state_of
from tests.services import free_port


def test_health_reports_liveness(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["uptime_seconds"] >= 0
    assert set(body) >= {"gpu_available", "models_loaded", "device", "worker_slot"}


def test_ready_when_the_database_answers(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": {"status": "ok"}, "models": {"status": "ok"}},
    }


def test_not_ready_without_models(tmp_path):
    (tmp_path / "empty").mkdir()
    app = create_app(
        {"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}", "MLAPI_MODEL_DIR": str(tmp_path / "empty")}
    )
    try:
        response = app.test_client().get("/ready")
    finally:
        db.dispose()
    assert response.status_code == 503
    assert response.get_json()["checks"]["models"] == {"status": "fail", "detail": "no models loaded"}


def test_not_ready_when_the_database_is_unreachable(tmp_path):
    app = create_app({"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"})
    try:
        client = app.test_client()
        ready = client.get("/ready")
        health = client.get("/health")
    finally:
        db.dispose()
    assert health.status_code == 200
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status_code"] == 503 and body["error"] == "not_ready"
    assert body["checks"]["database"] == {"status": "fail", "detail": "OperationalError"}
    assert "database" in body["detail"]
    assert ready.headers["Retry-After"]


def test_not_ready_when_configured_redis_is_down(tmp_path):
    app = create_app(
        {
            "MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
            "MLAPI_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    try:
        response = app.test_client().get("/ready")
    finally:
        db.dispose()
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "fail"


def test_requests_that_need_the_database_get_503_while_it_is_down(tmp_path):
    app = create_app({"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'gone' / 'x.db'}"}, load_models=False)
    try:
        response = app.test_client().get("/v1/users/me", headers={"X-API-Key": "mlapi_" + "k" * 43})
        login = app.test_client().post("/v1/token", data={"username": "a", "password": "b"})
    finally:
        db.dispose()
    for answer in (response, login):
        assert answer.status_code == 503
        assert answer.get_json()["error"] == "database_unavailable"
        assert answer.headers["Retry-After"] == "1"


def test_not_ready_when_a_models_runner_has_stopped(app):
    state_of(app).engine.batchers["minilm:1.0"].close()
    response = app.test_client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["checks"]["models"] == {"status": "fail", "detail": "runner stopped for minilm:1.0"}
