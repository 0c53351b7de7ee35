"""Each worker's usage counts, kept in memory and added to the SQL rollups every few seconds.

A request costs no database round trip: ``record`` adds to a dictionary. A thread flushes it every
``interval_s`` (``MLAPI_USAGE_FLUSH_S``) and ``close`` flushes what is left as the worker exits
(Gunicorn's ``worker_exit``, after the in-flight requests have finished).

Exactly once: each flush is one transaction that records its id (mlapi.usage.rollups.add).
- A failure before COMMIT leaves nothing in the database: the counts go back into the buffer and
  the next flush carries them.
- A failure during COMMIT leaves its outcome unknown: the batch is kept under its id and retried
  as it is; if it had committed, the id is found and nothing is added twice.
So a database outage delays counts (they wait in memory) and loses none; only a worker killed
without its exit hook (SIGKILL, a crash) loses what it had not flushed, at most ``interval_s`` worth.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mlapi.usage import rollups
from mlapi.usage.rollups import Cell, Counts

logger = logging.getLogger("mlapi.usage")


@dataclass
class _Batch:
    id: str
    cells: dict[Cell, Counts]
    in_doubt: bool = False  # its COMMIT failed: it may have committed, so it is retried as it is


COMMITTED, NOT_COMMITTED, IN_DOUBT = "committed", "not committed", "in doubt"


class UsageMeter:
    def __init__(
        self,
        open_session: Callable[[], Session],
        interval_s: float,
        after_flush: Callable[[Session], None] | None = None,
    ) -> None:
        """``open_session``: a new session of the store, used by the flushing thread only.
        ``after_flush``: called with that session after each flush that wrote (the periodic jobs
        that read the rollups, such as the near-quota gauge)."""
        self._open_session = open_session
        self.interval_s = interval_s
        self._after_flush = after_flush
        self._counts: dict[Cell, Counts] = {}
        self._in_doubt: list[_Batch] = []
        self._lock = threading.Lock()  # guards _counts and _in_doubt
        self._flushing = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, cell: Cell, counts: Counts) -> None:
        with self._lock:
            self._counts.setdefault(cell, Counts()).add(counts)
            # Started by the first count, in the process that counts (never in a parent before fork).
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="mlapi-usage-flusher", daemon=True)
                self._thread.start()

    def unflushed_items(self, account_id: int, since: date) -> int:
        """Items of ``account_id`` from ``since`` on that this worker has not flushed yet."""
        with self._lock:
            cells = [*self._counts.items(), *(item for b in self._in_doubt for item in b.cells.items())]
        return sum(c.items for cell, c in cells if cell.account_id == account_id and cell.day >= since)

    def flush(self) -> bool:
        """Add every count so far to the rollups; False if some are still waiting (the database failed)."""
        with self._flushing:
            with self._lock:
                batches, self._in_doubt = self._in_doubt, []
                if self._counts:
                    batches.append(_Batch(str(uuid.uuid4()), self._counts))
                    self._counts = {}
            if not batches:
                return True
            try:
                session = self._open_session()
            except SQLAlchemyError as exc:
                self._put_back(batches)
                logger.warning("usage counts wait in memory, the database failed: %s", exc)
                return False
            with session:
                for index, batch in enumerate(batches):
                    outcome = self._write(session, batch)
                    if outcome != COMMITTED:
                        batch.in_doubt = batch.in_doubt or outcome == IN_DOUBT
                        self._put_back(batches[index:])
                        return False
                if self._after_flush is not None:
                    try:
                        self._after_flush(session)
                    except SQLAlchemyError as exc:
                        logger.warning("after the usage flush: %s", exc)
            return True

    @staticmethod
    def _write(session: Session, batch: _Batch) -> str:
        try:
            rollups.add(session, batch.id, batch.cells, commit=False)
        except SQLAlchemyError as exc:
            session.rollback()
            logger.warning("usage counts wait in memory, the database failed: %s", exc)
            return NOT_COMMITTED
        try:
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            logger.warning("usage flush %s may or may not have committed; it will be retried: %s", batch.id, exc)
            return IN_DOUBT
        return COMMITTED

    def _put_back(self, batches: list[_Batch]) -> None:
        """Batches in doubt wait as they are; the counts of the others go back into the buffer."""
        with self._lock:
            for batch in batches:
                if batch.in_doubt:
                    self._in_doubt.append(batch)
                    continue
                for cell, counts in batch.cells.items():
                    self._counts.setdefault(cell, Counts()).add(counts)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.flush()
            except Exception:  # the thread must outlive any one failure
                logger.exception("usage flush failed")

    def close(self) -> None:
        """Stop the thread and flush what is left (the worker is exiting)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval_s + 30)
        self.flush()
