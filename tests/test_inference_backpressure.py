"""Batching through HTTP: cached answers, overload (503), deadlines (504), failed batches (500)."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlapi.extensions import db
from mlapi.web.state import state_of
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.plugin_handler import ScriptedClassifier
from tests.waiting import wait_until


def scripted_store(tmp_path):
    folder = tmp_path / "models" / "scripted" / "1.0"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "task": "classification",
                "handler": "tests.plugin_handler:ScriptedClassifier",
                "weights": ".",
                "labels": ["ok", "other"],
            }
        )
    )
    return tmp_path / "models"


@pytest.fixture
def scripted(tmp_path):
    app = make_test_app(
        f"sqlite:///{tmp_path / 'b.db'}",
        MLAPI_MODEL_DIR=str(scripted_store(tmp_path)),
        MLAPI_MAX_QUEUE="2",
        MLAPI_INFERENCE_TIMEOUT_S="0.3",
        MLAPI_CACHE_TTL_S="0",
        MLAPI_TIER_LIMITS="enterprise=100000/minute",
    )
    factory = Factory(app)
    headers = factory.key_headers(factory.user(tier="enterprise"))
    yield app, headers
    state_of(app).engine.close()
    db.dispose()


def post(app, headers, text):
    return app.test_client().post("/v1/predict", json={"text": text, "model": "scripted"}, headers=headers)


def test_overload_is_503_with_retry_after(scripted):
    app, headers = scripted
    with ThreadPoolExecutor(max_workers=6) as pool:
        slow = pool.submit(post, app, headers, "sleep:0.25")
        wait_until(lambda: ScriptedClassifier.batches, what="the slow request's batch to start")
        queued = [pool.submit(post, app, headers, f"queued {i}") for i in range(2)]
        engine = state_of(app).engine
        while engine.queue_depths()["scripted:1.0"] < 2:
            pass
        refused = post(app, headers, "one too many")
        assert slow.result().status_code == 200
        assert [q.result().status_code for q in queued] == [200, 200]
    assert refused.status_code == 503
    body = refused.get_json()
    assert body["error"] == "overloaded" and body["request_id"] == refused.headers["X-Request-ID"]
    assert refused.headers["Retry-After"] == "1"


def test_deadline_is_504_and_the_late_work_is_dropped(scripted):
    app, headers = scripted
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(post, app, headers, "sleep:0.6")
        wait_until(lambda: ScriptedClassifier.batches, what="the slow request's batch to start")
        slow_batch_began = time.monotonic()
        late = post(app, headers, "too late")
        assert slow.result().status_code == 504  # it ran past the 0.3 s deadline too
    assert late.status_code == 504 and late.get_json()["error"] == "inference_timeout"
    assert all("too late" not in batch for batch in ScriptedClassifier.batches)
    # The runner sleeps in the slow batch until 0.6 s: posted before, "later" would have only the
    # rest of its own 0.3 s deadline (about 40 ms) once the runner is free, too little on a busy
    # machine. After it, the runner must serve it as usual.
    time.sleep(max(0.0, slow_batch_began + 0.65 - time.monotonic()))
    assert post(app, headers, "later").status_code == 200


def test_a_failed_batch_is_500_for_its_requests_only(scripted):
    app, headers = scripted
    failed = post(app, headers, "boom")
    assert failed.status_code == 500
    body = failed.get_json()
    assert body["request_id"] == failed.headers["X-Request-ID"] and "scripted failure" not in body["detail"]
    assert post(app, headers, "fine").status_code == 200


def test_repeated_predictions_come_from_the_cache(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        factory = Factory(app)
        headers = factory.key_headers(factory.user(tier="enterprise"))
        client = app.test_client()
        first = client.post("/v1/predict", json={"text": "Lovely little cafe."}, headers=headers).get_json()
        second = client.post("/v1/predict", json={"text": "Lovely little cafe."}, headers=headers).get_json()
        other_version = client.post(
            "/v1/predict", json={"text": "Lovely little cafe.", "model_version": "1.0"}, headers=headers
        ).get_json()
        batch = client.post(
            "/v1/predict/batch", json={"inputs": ["Lovely little cafe.", "Brand new sentence."]}, headers=headers
        ).get_json()
    finally:
        db.dispose()
    assert (first["cached"], second["cached"], other_version["cached"]) == (False, True, False)
    assert second["result"] == first["result"] and second["confidence"] == first["confidence"]
    assert second["latency_ms"] == 0
    assert [p["cached"] for p in batch["predictions"]] == [True, False]


def test_after_shutdown_the_worker_takes_no_new_work(scripted):
    from mlapi.web.runtime import shutdown

    app, headers = scripted
    assert post(app, headers, "before").status_code == 200
    shutdown(app)  # what Gunicorn's worker_exit hook calls: drains, then refuses
    refused = post(app, headers, "after")
    assert refused.status_code == 503 and refused.get_json()["error"] == "shutting_down"
