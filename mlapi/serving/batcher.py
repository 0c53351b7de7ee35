"""Dynamic batching: request threads enqueue work, one runner thread per model forms batches.

A batch holds up to ``max_batch_size`` inputs (a single request bigger than that runs alone, as
one forward pass). An idle runner dispatches the first request at once; only when requests
pile up while the model is busy, or while other requests of this worker are on their way to a
model (``Arrivals``), does it wait up to ``max_delay`` for a batch to fill. The queue
is bounded (``QueueFull``: the caller answers 503); a request that waits past its deadline is
dropped if it has not started (``DeadlineExceeded``: 504); a failing batch fails only its own
requests; ``close()`` drains the queue before the runner stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from mlapi.serving.errors import ServingError

logger = logging.getLogger("mlapi.batcher")


class QueueFull(ServingError):
    """The model's queue is full: the server is overloaded."""


class DeadlineExceeded(ServingError):
    """The request waited longer than its deadline."""


class ShuttingDown(ServingError):
    """The worker is draining its queue and takes no new work."""


class Arrivals:
    """Requests of this process on their way to a model: announced as they start, counted until they submit.

    An idle runner that dispatched the first request alone would, under steady concurrency, run
    many small batches: the requests behind it are still being authenticated and parsed. The
    caller announces a request as it starts (``announce``, once per thread); ``Batcher.submit``
    takes the announcement back, and so does ``withdraw`` for a request that ends without
    submitting (an error, a cache hit). A runner waits, up to its delay, only while some are
    announced; with none (a lone client) it still dispatches at once.
    """

    def __init__(self) -> None:
        self._pending = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._listeners: list[Callable[[], None]] = []

    @property
    def pending(self) -> int:
        return self._pending

    def announce(self) -> None:
        if getattr(self._local, "announced", False):
            return
        self._local.announced = True
        with self._lock:
            self._pending += 1

    def arrived(self) -> bool:
        """Take back this thread's announcement, if it made one."""
        if not getattr(self._local, "announced", False):
            return False
        self._local.announced = False
        with self._lock:
            self._pending -= 1
        return True

    def withdraw(self) -> None:
        """This thread's request ends without (more) model work: stop waiting for it."""
        if self.arrived():
            for wake in self._listeners:
                wake()

    def listen(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)

    def unlisten(self, wake: Callable[[], None]) -> None:
        """A closed runner stops listening (and its model can be freed)."""
        self._listeners = [listener for listener in self._listeners if listener != wake]


@dataclass(frozen=True)
class BatchResult:
    outputs: list[Any]
    model_ms: float  # the forward pass this request's inputs ran in
    queue_ms: float  # time between enqueueing and the start of that pass
    batch_size: int  # inputs in that pass


@dataclass
class _Work:
    inputs: Sequence[Any]
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        *,
        name: str,
        max_batch_size: int = 32,
        max_delay_s: float = 0.005,
        max_queue: int = 256,
        on_batch: Callable[[BatchResult], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.run = run
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_depth = on_depth
        self.arrivals = arrivals
        self._queue: deque[_Work] = deque()
        self._queued_inputs = 0
        self._lock = threading.Condition()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True)
        self._thread.start()
        if arrivals is not None:
            arrivals.listen(self._wake)

    @property
    def alive(self) -> bool:
        """Whether the runner thread still serves (it stops only on close)."""
        return self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Inputs waiting in the queue."""
        return self._queued_inputs

    def submit(self, inputs: Sequence[Any], timeout_s: float) -> BatchResult:
        """Run ``inputs`` in a batch and wait for their outputs, in order (blocks the caller)."""
        work = _Work(inputs)
        with self._lock:
            if self.arrivals is not None:
                self.arrivals.arrived()  # queued or refused: either way no longer on its way
            if self._closing:
                raise ShuttingDown(f"model {self.name} is shutting down")
            if self._queued_inputs + len(inputs) > self.max_queue and self._queue:
                raise QueueFull(f"model {self.name} has {self._queued_inputs} inputs queued; try again shortly")
            self._queue.append(work)
            self._queued_inputs += len(inputs)
            depth = self._queued_inputs
            self._lock.notify()
        self._report_depth(depth)
        try:
            return work.future.result(timeout=timeout_s)
        except FutureTimeout:
            # Dropped if it has not started; if it is running, its outputs are discarded.
            if not work.future.cancel() and work.future.done() and work.future.exception() is None:
                return work.future.result()  # it finished just as the deadline passed
            raise DeadlineExceeded(f"model {self.name} did not answer within {timeout_s:g}s") from None
        except CancelledError:
            raise DeadlineExceeded(f"model {self.name} did not answer within {timeout_s:g}s") from None

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, finish what is queued, stop the runner."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout_s)
        if self.arrivals is not None:
            self.arrivals.unlisten(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._lock.notify()

    def _expecting(self) -> bool:
        return self.arrivals is not None and self.arrivals.pending > 0

    def _take_batch(self) -> list[_Work] | None:
        """Block for work; then take queued requests up to the batch size (waiting only under load)."""
        with self._lock:
            while not self._queue:
                if self._closing:
                    return None
                self._busy = False
                self._lock.wait()
            was_busy = self._busy
            batch = [self._pop()]
            size = len(batch[0].inputs)
            deadline = time.perf_counter() + self.max_delay_s
            while size < self.max_batch_size:
                if self._queue and size + len(self._queue[0].inputs) <= self.max_batch_size:
                    batch.append(self._pop())
                    size += len(batch[-1].inputs)
                    continue
                if self._queue or self._closing:
                    break  # the next request would overflow the batch
                if not was_busy and not self._expecting():
                    break  # no load, and no request on its way: dispatch now
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return batch

    def _pop(self) -> _Work:
        work = self._queue.popleft()
        self._queued_inputs -= len(work.inputs)
        return work

    def _report_depth(self, depth: int) -> None:
        if self.on_depth is not None:
            try:
                self.on_depth(depth)
            except Exception:
                logger.exception("queue-depth hook failed for model %s", self.name)

    def _serve(self) -> None:
        while (batch := self._take_batch()) is not None:
            self._report_depth(self._queued_inputs)
            live = [work for work in batch if work.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _note_load(self) -> None:
        # As a pass ends and before its requests are answered: whatever is queued now arrived while
        # the model was busy. A lone client's next request, which can only follow its answer, must
        # not count as load (it would wait out the delay).
        with self._lock:
            self._busy = bool(self._queue)

    def _run(self, batch: list[_Work]) -> None:
        inputs = [item for work in batch for item in work.inputs]
        started = time.perf_counter()
        try:
            outputs = self.run(inputs)
            if len(outputs) != len(inputs):
                raise RuntimeError(f"model {self.name} returned {len(outputs)} outputs for {len(inputs)} inputs")
        except BaseException as exc:
            self._note_load()
            logger.exception("batch of %d inputs failed on model %s", len(inputs), self.name)
            for work in batch:
                work.future.set_exception(exc)
            return
        model_ms = (time.perf_counter() - started) * 1000
        self._note_load()
        offset = 0
        for work in batch:
            result = BatchResult(
                outputs[offset : offset + len(work.inputs)],
                model_ms=model_ms,
                queue_ms=(started - work.enqueued) * 1000,
                batch_size=len(inputs),
            )
            offset += len(work.inputs)
            work.future.set_result(result)
        if self.on_batch is not None:
            try:
                self.on_batch(BatchResult([], model_ms, 0.0, len(inputs)))
            except Exception:
                logger.exception("batch hook failed for model %s", self.name)
