"""Each worker's usage counts, kept in memory and added to the SQL rollups every few seconds.

A request costs no database round trip: ``record`` adds to a dictionary. A thread flushes it every
``interval_s`` (``MLAPI_USAGE_FLUSH_S``) and ``close`` flushes what is left as the worker exits
(Gunicorn's ``worker_exit``, after the in-flight requests have finished).

Exactly once: each flush is one transaction that records its id (mlapi.usage.rollups.add).
- A failure before COMMIT leaves nothing in the database: the counts go back into the buffer and
  the next flush carries them.
- A failure during COMMIT leaves its outcome unknown: the batch is kept under its id and retried
  as it is; if it had committed, the id is found and nothing is added twice.
- A count the database refuses for good (a constraint: its account row was deleted by hand) is
  logged at ERROR and dropped alone; the batch's other counts are written one by one.
So a database outage delays counts (they wait in memory) and loses none while the worker lives. A
worker that exits during the outage, or is killed without its exit hook (SIGKILL, a crash), loses
what it had not flushed: at most ``interval_s`` worth, or everything since the outage began.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from mlapi.usage import rollups
from mlapi.usage.rollups import Cell, Counts

logger = logging.getLogger("mlapi.usage")


@dataclass
class _Batch:
    id: str
    cells: dict[Cell, Counts]
    in_doubt: bool = False  # its COMMIT failed: it may have committed, so it is retried as it is
    done: bool = False  # committed (or, for a count the database refuses for good, logged and dropped)


COMMITTED, NOT_COMMITTED, IN_DOUBT, REFUSED = "committed", "not committed", "in doubt", "refused"


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
        self._writing: list[_Batch] = []  # taken out of the buffer by the flush under way
        self._lock = threading.Lock()  # guards the three above
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
        """Items of ``account_id`` from ``since`` on that this worker has not (certainly) flushed yet."""
        with self._lock:
            pending = [b for b in (*self._in_doubt, *self._writing) if not b.done]
            cells = [*self._counts.items(), *(item for b in pending for item in b.cells.items())]
        return sum(c.items for cell, c in cells if cell.account_id == account_id and cell.day >= since)

    def flush(self) -> bool:
        """Add every count so far to the rollups; False if some are still waiting (the database failed)."""
        with self._flushing:
            with self._lock:
                batches, self._in_doubt = self._in_doubt, []
                if self._counts:
                    batches.append(_Batch(str(uuid.uuid4()), self._counts))
                    self._counts = {}
                self._writing = batches
            try:
                return self._write_all(batches)
            finally:
                self._put_back([batch for batch in batches if not batch.done])

    def _write_all(self, batches: list[_Batch]) -> bool:
        if not batches:
            return True
        with self._open_session() as session:
            for batch in batches:
                if not self._write(session, batch):
                    return False
            if self._after_flush is not None:
                try:
                    self._after_flush(session)
                except SQLAlchemyError as exc:
                    logger.warning("after the usage flush: %s", exc)
        return True

    def _write(self, session: Session, batch: _Batch) -> bool:
        """Write one batch; True once it is done."""
        outcome = self._commit(session, batch.id, batch.cells)
        if outcome == IN_DOUBT:
            batch.in_doubt = True
        if outcome != REFUSED:
            batch.done = outcome == COMMITTED
            return batch.done
        # Some count can never be stored (its account row is gone, say): the batch never committed
        # (a committed one stops at its flush id), so write its counts one by one, and drop only
        # those the database refuses, loudly, rather than hold back every other account's.
        remaining = dict(batch.cells)
        for cell, counts in list(batch.cells.items()):
            single_id = str(uuid.uuid4())
            outcome = self._commit(session, single_id, {cell: counts})
            if outcome == REFUSED:
                logger.error("usage count dropped, the database refuses it for good: %s %s", cell, counts)
            elif outcome == IN_DOUBT:
                with self._lock:
                    self._in_doubt.append(_Batch(single_id, {cell: counts}, in_doubt=True))
            elif outcome == NOT_COMMITTED:
                batch.id, batch.cells = str(uuid.uuid4()), remaining
                return False
            del remaining[cell]
        batch.done = True
        return True

    @staticmethod
    def _commit(session: Session, flush_id: str, cells: dict[Cell, Counts]) -> str:
        try:
            rollups.add(session, flush_id, cells, commit=False)
        except (IntegrityError, DataError) as exc:
            session.rollback()
            logger.warning("usage flush refused by the database: %s", exc)
            return REFUSED
        except SQLAlchemyError as exc:
            session.rollback()
            logger.warning("usage counts wait in memory, the database failed: %s", exc)
            return NOT_COMMITTED
        try:
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            logger.warning("usage flush %s may or may not have committed; it will be retried: %s", flush_id, exc)
            return IN_DOUBT
        return COMMITTED

    def _put_back(self, batches: list[_Batch]) -> None:
        """Batches in doubt wait as they are; the counts of the others go back into the buffer."""
        with self._lock:
            self._writing = []
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
            except Exception:  # the thread must outlive any one failure; the counts were put back
                logger.exception("usage flush failed")

    def close(self) -> None:
        """Flush what is left (the worker is exiting): after a flush under way, if any, has ended."""
        self._stop.set()
        try:
            self.flush()
        except Exception:
            logger.exception("usage counts not flushed at exit")
