"""Gunicorn settings, read from the ``MLAPI_*`` environment (see README, Configuration)."""

import gc
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from mlapi.config import ConfigError, load_settings
from mlapi.server.worker import forget_slot
from mlapi.serving.errors import ManifestError
from mlapi.serving.store import ModelStore

try:
    # Validate every setting and every model manifest in the master (no torch here), so that a
    # junk value or a broken manifest stops start-up once, clearly, instead of in each worker.
    settings = load_settings()
    for manifest in ModelStore.open(settings.model_dir).all():
        manifest.weights_path()
except (ConfigError, ManifestError) as exc:
    kind = "configuration" if isinstance(exc, ConfigError) else "model store"
    print(f"mlapi: {kind} error: {exc}", file=sys.stderr)
    sys.exit(2)

bind = [settings.bind]
workers = settings.workers
threads = settings.threads
# gthread, accepting so that every worker holds its share of the connections (mlapi.server.worker).
worker_class = "mlapi.server.worker.BalancedThreadWorker"
# Models and CUDA must be initialised in each worker, after fork, never in the master.
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then to bound slow leaks; jitter avoids restarting them all at once.
max_requests = 20000
max_requests_jitter = 2000
# One fixed control-socket path would collide between instances on one host; it is not used.
control_socket_disable = True
# The app writes one JSON access-log line per request itself (mlapi.web.request_context).
accesslog = None
errorlog = "-"
loglevel = settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mlapi.web.logs.json_formatter"}},
    "handlers": {"json_stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    # Gunicorn merges this shallowly over its defaults: name every logger it configures.
    "root": {"level": "WARNING", "handlers": ["json_stderr"]},
    "loggers": {
        "gunicorn.error": {"level": settings.log_level, "handlers": ["json_stderr"], "propagate": False},
        # With a logconfig_dict Gunicorn writes access lines too; the app's own are richer: drop these.
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
}


def on_starting(server) -> None:  # noqa: ANN001 (master, once, before any worker)
    # Metrics of every worker, live and dead, are aggregated from files in this directory;
    # stale files from an earlier run would add to the new totals, so it starts empty.
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="mlapi-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        server.mlapi_created_metrics_dir = directory


def when_ready(server) -> None:  # noqa: ANN001 (master, once it listens, as it spawns its workers)
    # SIGHUP (`kill -HUP`, or POST /v1/admin/models/reload) reloads every worker's models in place
    # (mlapi.web.model_reload), instead of Gunicorn's own restart of every worker.
    def reload_models() -> None:
        server.log.info("SIGHUP: every worker reloads its models")
        for pid in list(server.WORKERS):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:  # it exited meanwhile
                pass

    server.handle_hup = reload_models


def on_exit(server) -> None:  # noqa: ANN001 (master, once, as it exits)
    # A directory the operator configured is theirs to keep; the one made here is removed.
    created = getattr(server, "mlapi_created_metrics_dir", None)
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


def child_exit(server, worker) -> None:  # noqa: ANN001 (master, after a worker exited)
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
    forget_slot(getattr(worker, "mlapi_slot", None))


# Device slots (README, Deploy: Sizing): each worker takes the lowest free slot k and runs its
# models on devices[k % len(devices)]; a respawned worker takes the slot its predecessor freed.
SLOT_ENV = "MLAPI_WORKER_SLOT"


def lowest_free_slot(server) -> int:  # noqa: ANN001 (gunicorn's Arbiter)
    taken = {getattr(worker, "mlapi_slot", None) for worker in server.WORKERS.values()}
    return next(slot for slot in range(len(taken) + 1) if slot not in taken)


def pre_fork(server, worker) -> None:  # noqa: ANN001 (master: the worker is not in WORKERS yet)
    worker.mlapi_slot = lowest_free_slot(server)


def post_fork(server, worker) -> None:  # noqa: ANN001 (in the worker, before the app loads)
    os.environ[SLOT_ENV] = str(worker.mlapi_slot)


def post_worker_init(worker) -> None:  # noqa: ANN001 (in the worker: the app is built, its models loading)
    from mlapi.web.runtime import READY, model_loading

    if hasattr(worker, "reload_if_asked"):  # mlapi.server.worker: a SIGHUP while the app was being built
        worker.reload_if_asked()
    loading = model_loading(worker.wsgi)
    if loading is None:
        return
    worker.hold_share_until_loaded()

    def loaded(done) -> None:  # noqa: ANN001 (runtime.ModelLoading, in its thread)
        if done.state != READY:
            worker.log.error("worker failed to load its models (slot %s): %s", worker.mlapi_slot, done.error)
            worker.models_failed()
            return
        # A full collection over torch and a model's objects costs ~140 ms (a p99 spike); the
        # loaded models live for the whole process, so move them out of the collector's sight.
        gc.collect()
        gc.freeze()
        worker.log.info("worker ready (slot %s)", worker.mlapi_slot)
        worker.models_loaded()

    loading.when_done(loaded)


def worker_exit(server, worker) -> None:  # noqa: ANN001 (in the worker, as it exits)
    from mlapi.web import metering, runtime

    app = getattr(worker, "wsgi", None)
    if app is not None:
        try:
            runtime.shutdown(app)  # the requests in flight have been answered; their models' queues drain
        finally:
            metering.shutdown(app)  # then every count of this worker goes to the rollups
