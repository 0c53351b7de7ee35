"""Model reloads in the store: who asked, and how each worker's reload ended, so that any worker
of any instance can answer for a reload."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlapi.accounts.tables import ModelReload, ModelReloadResult, utcnow

PENDING, DONE, FAILED = "pending", "done", "failed"
# A worker signalled takes the newest reload of its instance asked for this recently.
SIGNAL_WINDOW = timedelta(minutes=5)
MAX_ERROR = 2000


def start(session: Session, instance: str, requested_by: str, workers: int) -> str:
    reload = ModelReload(id=str(uuid.uuid4()), instance=instance, requested_by=requested_by, workers=workers)
    session.add(reload)
    session.commit()
    return reload.id


def pending_for(session: Session, instance: str, worker: str) -> str | None:
    """The newest recent reload of ``instance`` that ``worker`` has not reported on, if any."""
    reported = select(ModelReloadResult.reload_id).where(ModelReloadResult.worker == worker)
    return session.scalar(
        select(ModelReload.id)
        .where(
            ModelReload.instance == instance,
            ModelReload.requested_at >= utcnow() - SIGNAL_WINDOW,
            ModelReload.id.not_in(reported),
        )
        .order_by(ModelReload.requested_at.desc())
        .limit(1)
    )


def record(session: Session, reload_id: str, worker: str, state: str, error: str | None = None) -> None:
    session.merge(
        ModelReloadResult(reload_id=reload_id, worker=worker, state=state, error=(error or None) and error[:MAX_ERROR])
    )
    session.commit()


@dataclass(frozen=True)
class ReloadStatus:
    state: str
    error: str | None
    workers: dict[str, str]  # worker → done | failed


def status(session: Session, reload_id: str) -> ReloadStatus | None:
    """``failed`` once a worker failed, ``done`` once every worker of the instance is, else ``pending``."""
    reload = session.get(ModelReload, reload_id)
    if reload is None:
        return None
    results = list(session.scalars(select(ModelReloadResult).where(ModelReloadResult.reload_id == reload_id)))
    failed = [r for r in results if r.state == FAILED]
    if failed:
        return ReloadStatus(FAILED, failed[0].error, {r.worker: r.state for r in results})
    state = DONE if len(results) >= reload.workers else PENDING
    return ReloadStatus(state, None, {r.worker: r.state for r in results})
