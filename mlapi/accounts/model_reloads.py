"""Model reloads in the store: who asked, and how each worker's reload ended, so that any worker
of any instance can answer for a reload."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mlapi.accounts.tables import ModelReload, ModelReloadResult, utcnow

PENDING, DONE, FAILED = "pending", "done", "failed"
# A reload not reported on by every worker within this has failed (a worker died, or missed it).
DEADLINE = timedelta(minutes=10)
KEPT = timedelta(days=7)
MAX_ERROR = 2000


def start(session: Session, instance: str, requested_by: str, workers: int) -> str:
    """Record a reload of ``instance`` that ``workers`` will report on (and forget reloads of last week)."""
    session.execute(delete(ModelReload).where(ModelReload.requested_at < utcnow() - KEPT))
    reload = ModelReload(id=str(uuid.uuid4()), instance=instance, requested_by=requested_by, workers=workers)
    session.add(reload)
    session.commit()
    return reload.id


def pending_for(session: Session, instance: str, worker: str, *, since: datetime) -> list[str]:
    """The reloads of ``instance`` asked for after ``since`` (and within ``DEADLINE``) that
    ``worker`` has not reported on: signals that arrive together make one reload of them all."""
    reported = select(ModelReloadResult.reload_id).where(ModelReloadResult.worker == worker)
    return list(
        session.scalars(
            select(ModelReload.id).where(
                ModelReload.instance == instance,
                ModelReload.requested_at >= max(since, utcnow() - DEADLINE),
                ModelReload.id.not_in(reported),
            )
        )
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
    workers = {r.worker: r.state for r in results}
    if len(results) >= reload.workers:
        return ReloadStatus(DONE, None, workers)
    if reload.requested_at < utcnow() - DEADLINE:  # a worker died or missed the signal
        missing = reload.workers - len(results)
        return ReloadStatus(FAILED, f"{missing} of {reload.workers} workers did not report within {DEADLINE}", workers)
    return ReloadStatus(PENDING, None, workers)
