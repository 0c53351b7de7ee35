"""Reading the model store again without a restart, on every worker of an instance.

``POST /v1/admin/models/reload`` records a reload and sends ``SIGHUP`` to its Gunicorn master, and
so does an operator with ``kill -HUP``: gunicorn.conf.py passes the signal on to every worker
(instead of Gunicorn's own restart of the workers). Each worker then, in a thread of its own:

1. reads the store (a broken manifest fails here, and nothing changes);
2. loads and warms up the versions that are new or whose manifest changed, while the current
   ones keep serving (an unchanged version keeps its loaded model and its runner);
3. switches to the new set in one assignment: a request that started on the old set finishes on
   it, and a request that starts after uses the new one;
4. after the longest deadline, drains and stops the runners of the versions that went, which frees
   their memory.

Each worker records how its reload ended (``done``, or ``failed`` and why). The reload is ``done``
once every worker of the instance is, and ``failed`` once one failed. Outside Gunicorn (the
development server, the tests) the one process reloads itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mlapi.accounts import model_reloads
from mlapi.accounts.tables import utcnow
from mlapi.extensions import db
from mlapi.serving.devices import worker_slot
from mlapi.web import runtime

logger = logging.getLogger("mlapi.web.model_reload")
# Imported as the app is built, in each worker: older reloads were never this worker's to answer.
_STARTED = utcnow()


def _under_gunicorn() -> bool:
    return worker_slot() is not None  # gunicorn.conf.py gives every worker it forks a slot


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _instance() -> str:
    """hostname:pid of the process that a signal reaches every worker from."""
    return f"{socket.gethostname()}:{os.getppid() if _under_gunicorn() else os.getpid()}"


def _workers() -> int:
    """How many workers will report: those of this instance that serve (the balancing's record)."""
    if not _under_gunicorn():
        return 1
    from mlapi.server.worker import serving_workers

    return max(1, serving_workers(time.monotonic()))


def request_reload(app: Flask, requested_by: str) -> str:
    """Record a reload of this instance and set it off; its id."""
    workers = _workers()
    reload_id = model_reloads.start(db.session, _instance(), requested_by, workers)
    if _under_gunicorn():
        os.kill(os.getppid(), signal.SIGHUP)  # the master passes it on to every worker
    else:
        reload_in_background(app)
    return reload_id


def reload_in_background(app: Flask) -> threading.Thread:
    """Reload this worker's models in a thread (what a worker does on SIGHUP)."""
    thread = threading.Thread(target=_reload, args=(app,), name="mlapi-model-reload", daemon=True)
    thread.start()
    return thread


def _reload(app: Flask) -> None:
    engine = db.engine
    try:  # every reload asked of this instance since this worker started: one reload answers them all
        with Session(engine) as session:
            reload_ids = model_reloads.pending_for(session, _instance(), _worker(), since=_STARTED)
    except SQLAlchemyError as exc:  # the database is down: reload all the same, record nothing
        logger.warning("model reload: the database cannot say which reload this is: %s", exc)
        reload_ids = []
    named = ", ".join(reload_ids) or "signal"
    try:
        served = runtime.reload_models(app)
    except Exception as exc:  # a broken manifest, weights that do not load: the current set serves on
        logger.exception("model reload (%s) failed; the models loaded before keep serving", named)
        outcome, error = model_reloads.FAILED, str(exc)
    else:
        logger.info("models reloaded (%s): serving %s", named, served)
        outcome, error = model_reloads.DONE, None
    try:
        with Session(engine) as session:
            for reload_id in reload_ids:
                model_reloads.record(session, reload_id, _worker(), outcome, error)
    except SQLAlchemyError as exc:
        logger.warning("model reload (%s): its outcome could not be recorded: %s", named, exc)
