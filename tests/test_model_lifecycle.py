"""Per-version serving settings, deprecation and sunset, and weighted routing of `latest` sticky
per account: over the app, on a model store of the test's own (real weights)."""

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.serving.errors import ManifestError
from mlapi.serving.store import ModelStore
from mlapi.serving.types import PredictInput
from mlapi.web.model_lifecycle import RouteTable
from mlapi.web.state import state_of
from tests.clocks import FakeClock
from tests.conftest import MODEL_DIR, make_test_app
from tests.factories import Factory
from tests.waiting import wait_until

TODAY = utcnow().date()
TEXT = {"text": "The support team fixed it in minutes."}


def edit_manifest(store: Path, model: str, version: str, **changes) -> None:
    path = store / model / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def add_version(store: Path, model: str, source: str, version: str, **changes) -> None:
    shutil.copytree(store / model / source, store / model / version)
    edit_manifest(store, model, version, **changes)


@pytest.fixture
def store(tmp_path) -> Path:
    """sentiment 0.9 (past its sunset), 1.0 (deprecated, batches of 4 at most), 1.1 (latest); minilm."""
    root = tmp_path / "models"
    shutil.copytree(MODEL_DIR, root)
    edit_manifest(
        root,
        "sentiment",
        "1.0",
        serving={"max_batch_size": 4, "max_delay_ms": 20},
        deprecated=(TODAY - timedelta(days=10)).isoformat(),
        sunset=(TODAY + timedelta(days=80)).isoformat(),
    )
    add_version(root, "sentiment", "1.0", "0.9", serving={}, deprecated="2020-01-01", sunset="2020-06-01")
    return root


@pytest.fixture
def app(tmp_path, store):
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}", MLAPI_MODEL_DIR=str(store), MLAPI_CACHE_TTL_S="0")
    yield app
    db.dispose()


@pytest.fixture
def admin(factory):
    return factory.token_headers(factory.user("root", admin=True))


def predict(client, headers, version=None):
    body = {**TEXT, **({"model_version": version} if version else {})}
    return client.post("/v1/predict", json=body, headers=headers)


def batch_size_counts(client, version):
    text = client.get("/metrics").get_data(as_text=True)
    labels = f'model="sentiment",model_version="{version}"'

    def value(pattern: str) -> float:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0  # no batch of this version yet

    count = value(rf"inference_batch_size_count\{{{labels}\}} (\S+)")
    return count, value(rf'inference_batch_size_bucket\{{le="4.0",{labels}\}} (\S+)')


def test_a_versions_max_batch_size_caps_its_batches(app, client, factory):
    headers = factory.key_headers(factory.user(tier="enterprise"))
    before = batch_size_counts(client, "1.0")
    serving = state_of(app).engine
    # 12 requests at once, one input each: 1.0 batches at most 4 of them (the others up to 32).
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(
            pool.map(
                lambda i: serving.predict("sentiment", "1.0", [PredictInput(f"Review {i}")], cache_scope="t"), range(12)
            )
        )
    count, up_to_4 = batch_size_counts(client, "1.0")
    assert count - before[0] >= 3, "12 inputs in batches of at most 4: at least 3 batches"
    assert up_to_4 - before[1] == count - before[0], "no batch of 1.0 held more than 4"

    versions = {v["version"]: v for v in client.get("/v1/models/sentiment", headers=headers).get_json()["versions"]}
    assert versions["1.0"]["serving"] == {
        "max_batch_size": 4,
        "max_delay_ms": 20.0,
        "timeout_s": 10.0,
        "max_queue": 256,
    }
    assert versions["1.1"]["serving"]["max_batch_size"] == 32


@pytest.mark.parametrize(
    "serving",
    [{"max_batch_size": 0}, {"max_batch_size": 2.5}, {"max_delay_ms": -1}, {"timeout_s": True}, {"batch": 4}, [4]],
)
def test_invalid_serving_settings_stop_start_up_naming_the_manifest(store, serving):
    edit_manifest(store, "minilm", "1.0", serving=serving)
    with pytest.raises(ManifestError, match=r"minilm/1\.0/manifest\.json: .*serving"):
        ModelStore.open(store)


@pytest.mark.parametrize(
    "dates",
    [{"sunset": "2027-02-30"}, {"deprecated": "soon"}, {"deprecated": "2027-03-01", "sunset": "2027-02-01"}],
)
def test_invalid_lifecycle_dates_stop_start_up(store, dates):
    edit_manifest(store, "minilm", "1.0", **dates)
    with pytest.raises(ManifestError, match=r"minilm/1\.0/manifest\.json"):
        ModelStore.open(store)


def test_a_deprecated_version_says_so_and_a_sunset_one_is_gone(client, factory):
    headers = factory.key_headers(factory.user(tier="enterprise"))
    deprecated = predict(client, headers, "1.0")
    assert deprecated.status_code == 200
    assert deprecated.headers["Deprecation"].startswith("@")
    assert deprecated.headers["Sunset"].endswith("GMT")
    current = predict(client, headers)
    assert current.get_json()["model_version"] == "1.1" and "Deprecation" not in current.headers

    gone = predict(client, headers, "0.9")
    assert gone.status_code == 410 and gone.get_json()["error"] == "model_version_sunset"
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["fine"]}]}
    assert client.post("/v2/models/sentiment/versions/0.9/infer", json=v2, headers=headers).status_code == 410

    model = client.get("/v1/models/sentiment", headers=headers).get_json()
    dates = {v["version"]: (v["deprecated"], v["sunset"]) for v in model["versions"]}
    assert dates["0.9"] == ("2020-01-01", "2020-06-01") and dates["1.1"] == (None, None)
    assert model["latest"] == "1.1"


def test_weighted_routing_is_sticky_per_account_and_a_named_version_wins(client, factory, admin):
    routed = client.put("/v1/admin/models/sentiment/routing", json={"weights": {"1.0": 50, "1.1": 50}}, headers=admin)
    assert routed.status_code == 200 and routed.get_json()["weights"] == {"1.0": 50, "1.1": 50}
    assert client.get("/v1/admin/models/sentiment/routing", headers=admin).get_json()["weights"] == {
        "1.0": 50,
        "1.1": 50,
    }

    served = {}
    for i in range(20):
        headers = factory.key_headers(factory.user(f"tenant{i}", tier="enterprise"))
        versions = {predict(client, headers).get_json()["model_version"] for _ in range(3)}
        assert len(versions) == 1, f"tenant{i} was served {versions}"
        served[i] = versions.pop()
        assert predict(client, headers, "1.1").get_json()["model_version"] == "1.1"
    assert set(served.values()) == {"1.0", "1.1"}, served

    model = client.get("/v1/models/sentiment", headers=admin).get_json()
    assert model["routing"] == {"1.0": 50, "1.1": 50}

    assert client.delete("/v1/admin/models/sentiment/routing", headers=admin).status_code == 204
    headers = factory.key_headers(factory.user("after", tier="enterprise"))
    assert {predict(client, headers).get_json()["model_version"] for _ in range(3)} == {"1.1"}
    events = client.get("/v1/admin/audit", query_string={"target": "sentiment"}, headers=admin).get_json()["data"]
    assert [e["action"] for e in events] == ["model.routing_cleared", "model.routing_set"]


@pytest.mark.parametrize(
    ("weights", "status"),
    [
        ({"1.0": 0, "1.1": 0}, 422),
        ({"1.0": -1, "1.1": 5}, 422),
        ({"2.0": 5}, 422),
        ({"0.9": 10}, 422),  # only a version past its sunset
        ({"1.0": 1.5}, 422),
        ({"1.0": 2_000_000}, 422),
        ({}, 422),
    ],
)
def test_bad_routings_are_refused(client, admin, weights, status):
    response = client.put("/v1/admin/models/sentiment/routing", json={"weights": weights}, headers=admin)
    assert response.status_code == status, response.get_json()
    assert client.get("/v1/admin/models/sentiment/routing", headers=admin).get_json()["weights"] is None


def test_routing_is_for_admins_and_known_models(client, factory, admin):
    body = {"weights": {"1.0": 1}}
    assert client.put("/v1/admin/models/nope/routing", json=body, headers=admin).status_code == 404
    user = factory.key_headers(factory.user("plain"))
    assert client.put("/v1/admin/models/sentiment/routing", json=body, headers=user).status_code == 403


def test_a_sunset_version_in_a_routing_gets_no_share(app, client, factory, admin):
    client.put("/v1/admin/models/sentiment/routing", json={"weights": {"0.9": 1000, "1.1": 1}}, headers=admin)
    for i in range(5):
        headers = factory.key_headers(factory.user(f"late{i}", tier="enterprise"))
        assert predict(client, headers).get_json()["model_version"] == "1.1"


def test_every_worker_reads_a_new_routing_within_its_ttl(app, factory):
    clock = FakeClock()
    with app.app_context():
        table = RouteTable(state_of(app).routes._open_session, ttl_s=2.0, clock=clock)
        assert table.weights("sentiment") is None
        admin = factory.token_headers(factory.user("root", admin=True))
        app.test_client().put("/v1/admin/models/sentiment/routing", json={"weights": {"1.0": 1}}, headers=admin)
        assert table.weights("sentiment") is None  # read less than 2 s ago
        clock.now += 2.0
        assert table.weights("sentiment") == {"1.0": 1}


def reload(client, admin) -> dict:
    started = client.post("/v1/admin/models/reload", headers=admin)
    assert started.status_code == 202
    reload_id = started.get_json()["reload_id"]

    def status():
        return client.get(f"/v1/admin/models/reload/{reload_id}", headers=admin).get_json()

    wait_until(lambda: status()["state"] != "pending", timeout_s=60, interval_s=0.05, what="the reload to end")
    return status()


def test_a_reload_adds_new_versions_drops_removed_ones_and_keeps_the_unchanged(app, client, factory, admin, store):
    headers = factory.key_headers(factory.user(tier="enterprise"))
    kept = state_of(app).engine.registry.handlers["sentiment:1.1"]
    add_version(store, "sentiment", "1.1", "1.2", description="The next one.")
    shutil.rmtree(store / "sentiment" / "1.0")
    assert predict(client, headers, "1.2").status_code == 404

    outcome = reload(client, admin)
    assert outcome["state"] == "done" and outcome["error"] is None and len(outcome["workers"]) == 1
    assert predict(client, headers, "1.2").get_json()["model_version"] == "1.2"
    assert predict(client, headers).get_json()["model_version"] == "1.2"  # latest: the highest version
    assert predict(client, headers, "1.0").status_code == 404
    assert state_of(app).engine.registry.handlers["sentiment:1.1"] is kept
    assert "1.2" in [v["version"] for v in client.get("/v1/models/sentiment", headers=headers).get_json()["versions"]]


def test_a_broken_manifest_fails_the_reload_and_the_current_models_serve_on(app, client, factory, admin, store):
    headers = factory.key_headers(factory.user(tier="enterprise"))
    add_version(store, "sentiment", "1.1", "1.2")
    (store / "sentiment" / "1.2" / "manifest.json").write_text("{not json")
    outcome = reload(client, admin)
    assert outcome["state"] == "failed" and "sentiment/1.2/manifest.json" in outcome["error"]
    assert predict(client, headers).get_json()["model_version"] == "1.1"
    assert predict(client, headers, "1.0").status_code == 200


def test_reload_is_for_admins_and_unknown_reloads_are_404(client, factory, admin):
    plain = factory.key_headers(factory.user("plain"))
    assert client.post("/v1/admin/models/reload", headers=plain).status_code == 403
    assert client.get("/v1/admin/models/reload/nope", headers=admin).status_code == 404


def test_a_reload_frees_a_retired_version_and_the_network_only_it_used(tmp_path, store, monkeypatch):
    """sentiment 1.1 is the only int8 version: once retired (after the deadline), its runner stops,
    its network leaves the process's cache, and nothing holds its handler any more."""
    from mlapi.serving import encoder as encoders
    from mlapi.web import runtime

    monkeypatch.setattr(runtime, "RETIRE_MARGIN_S", 0.1)
    app = make_test_app(f"sqlite:///{tmp_path / 'r.db'}", MLAPI_MODEL_DIR=str(store), MLAPI_INFERENCE_TIMEOUT_S="0.2")
    try:
        factory, client = Factory(app), app.test_client()
        admin = factory.token_headers(factory.user("root", admin=True))
        handler = state_of(app).engine.registry.handlers["sentiment:1.1"]
        runner, int8 = weakref.ref(state_of(app).engine.batchers["sentiment:1.1"]), handler.encoder
        retired = weakref.ref(handler)
        del handler
        shutil.rmtree(store / "sentiment" / "1.1")
        assert reload(client, admin)["state"] == "done"
        wait_until(
            lambda: gc.collect() >= 0 and retired() is None and runner() is None,
            timeout_s=10,
            what="the retired model and its runner to be freed",
        )
        assert all(encoder is not int8 for encoder in encoders._loaded.values())
    finally:  # other tests' apps still use it: no need to load it again
        encoders._loaded[(int8.weights, str(int8.device), int8.quantization)] = int8
        db.dispose()


def test_a_routing_read_never_waits_for_a_slow_database():
    """One request reads the routes again; the others go on with what was read last."""
    entered, release = threading.Event(), threading.Event()

    class SlowSession:
        def __enter__(self):
            entered.set()
            release.wait(timeout=30)
            raise OperationalError("SELECT", {}, TimeoutError("the database is slow"))

        def __exit__(self, *exc_info):
            return False

    table = RouteTable(SlowSession, ttl_s=2.0, clock=FakeClock())
    reader = threading.Thread(target=table.weights, args=("sentiment",))
    reader.start()
    assert entered.wait(timeout=10)
    assert table.weights("sentiment") is None  # at once, from the table as it was
    release.set()
    reader.join(timeout=10)
    assert not reader.is_alive()


def test_a_reload_a_worker_never_reports_on_fails_after_the_deadline(app):
    from mlapi.accounts import model_reloads
    from mlapi.accounts.tables import ModelReload

    with app.app_context():
        reload_id = model_reloads.start(db.session, "host:1", "root", workers=2)
        model_reloads.record(db.session, reload_id, "host:2", model_reloads.DONE)
        assert model_reloads.status(db.session, reload_id).state == "pending"
        db.session.get(ModelReload, reload_id).requested_at = utcnow() - model_reloads.DEADLINE - timedelta(seconds=1)
        db.session.commit()
        late = model_reloads.status(db.session, reload_id)
        assert late.state == "failed" and "1 of 2 workers did not report" in late.error
