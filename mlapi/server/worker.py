"""Gunicorn's ``gthread`` worker, accepting connections so that every worker holds its share.

Gunicorn's workers all wait on one listening socket and whichever wakes first accepts; a keep-alive
connection then stays with that worker for its whole life. Nothing evens them out: with plain
gthread, 64 connections over 2 workers were measured split 40 and 24 or 44 and 20, and 8 split 7
and 1. Each worker batches only the requests it holds, so an uneven split costs throughput (one
model idles while the other queues) and stretches the tail.

Here each worker publishes how many connections it holds, in memory shared by the master and every
worker (one entry per worker slot, see ``gunicorn.conf.py``), and stops accepting while it holds
more than the least-loaded other worker. The least-loaded worker always accepts, so no connection
is refused. A worker that is starting (loading its models), stopping, dead, or whose event loop
has not run for ``STALE_S`` does not count: the others accept without regard to it.

A worker loading its models (in a thread: see ``hold_share_until_loaded``) accepts only while no
other worker serves: at start-up every worker answers ``/health`` and ``/ready`` at once, and a
worker respawned beside serving ones takes no connection until it can run the models.
"""

from __future__ import annotations

import signal
import sys
import time
from multiprocessing.sharedctypes import RawArray

from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # worker slots balanced; a worker on a higher slot accepts as plain gthread does
ABSENT = -1
# A worker held back looks again this often (its own connections' events may be far apart).
RECHECK_S = 0.005
# An event loop runs at least once a second (gthread's poll timeout): one silent for longer is hung.
STALE_S = 5.0

# Created when gunicorn.conf.py imports this module, in the master, before any fork: every worker
# inherits the same shared memory. Each worker writes only its own slot's entries.
connections_by_slot = RawArray("i", [ABSENT] * SLOTS)
heartbeat_by_slot = RawArray("d", [0.0] * SLOTS)  # time.monotonic() of the slot's last loop


def forget_slot(slot: int | None) -> None:
    """The worker on ``slot`` stopped or died: the others no longer balance against it."""
    if slot is not None and 0 <= slot < SLOTS:
        connections_by_slot[slot] = ABSENT


def serving_workers(now: float) -> int:
    """Workers of this instance that serve: their models loaded, their event loop running."""
    return sum(
        1
        for slot, count in enumerate(connections_by_slot)
        if count != ABSENT and now - heartbeat_by_slot[slot] < STALE_S
    )


def least_other_load(slot: int, now: float) -> int | None:
    """Connections held by the least-loaded live worker other than ``slot`` (None: no such worker)."""
    counts = [
        count
        for other, count in enumerate(connections_by_slot)
        if other != slot and count != ABSENT and now - heartbeat_by_slot[other] < STALE_S
    ]
    return min(counts) if counts else None


class BalancedThreadWorker(ThreadWorker):
    """Also reloads its models on SIGHUP (which gunicorn.conf.py's master passes on to every worker)."""

    _connections = 0
    _configured_limit = 0
    _publishing = False
    _holding = False  # its models are loading
    _boot_failed = False

    @property
    def _slot(self) -> int | None:
        slot = getattr(self, "mlapi_slot", None)
        return slot if slot is not None and 0 <= slot < SLOTS else None

    # ThreadWorker counts its connections in ``nr_conns``: each change is published.
    @property
    def nr_conns(self) -> int:
        return self._connections

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._connections = value
        if self._publishing:
            connections_by_slot[self._slot] = value

    # ThreadWorker accepts while ``nr_conns < worker_connections``, checked after every event.
    @property
    def worker_connections(self) -> int:
        if self._holding:
            serving = least_other_load(-1 if self._slot is None else self._slot, time.monotonic()) is not None
            return 0 if serving else self._configured_limit
        if not self._publishing:
            return self._configured_limit
        least = least_other_load(self._slot, time.monotonic())
        return self._configured_limit if least is None else min(self._configured_limit, least + 1)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_limit = value

    # Called by gunicorn.conf.py's hooks; the last two from the thread that loaded the models.
    def init_signals(self) -> None:
        super().init_signals()  # which resets SIGHUP to its default: ending the process
        signal.signal(signal.SIGHUP, self.handle_hup)

    def handle_hup(self, _sig: int, _frame: object) -> None:
        app = getattr(self, "wsgi", None)
        if app is None:  # still booting: the app is not built yet, post_worker_init reloads
            self._reload_asked = True
            return
        self.reload_models(app)

    def reload_if_asked(self) -> None:
        """After boot (gunicorn.conf.py's post_worker_init): a SIGHUP that came during it."""
        if getattr(self, "_reload_asked", False):
            self._reload_asked = False
            self.reload_models(self.wsgi)

    def reload_models(self, app: object) -> None:
        from mlapi.web.model_reload import reload_in_background  # imported with the app by now

        self.log.info("SIGHUP: reloading the models")
        reload_in_background(app)  # a thread, which waits for a first load under way

    def hold_share_until_loaded(self) -> None:
        """The models are loading: take connections only while no other worker serves."""
        self._holding = True

    def models_loaded(self) -> None:
        self.method_queue.defer(self._release_hold)

    def models_failed(self) -> None:
        """Exit as a worker that failed to boot: the master then stops, as it would for a bad import."""
        self.method_queue.defer(self._fail_boot)

    def _release_hold(self) -> None:
        self._holding = False
        self._start_publishing()

    def _fail_boot(self) -> None:
        self._boot_failed = True
        self.alive = False

    def run(self) -> None:
        if not self._holding:
            self._start_publishing()
        try:
            super().run()
        finally:
            self._stop_publishing()
        if self._boot_failed:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _start_publishing(self) -> None:
        """From here on this worker takes its share."""
        if self._slot is not None and self.alive:
            heartbeat_by_slot[self._slot] = time.monotonic()
            connections_by_slot[self._slot] = self._connections
            self._publishing = True

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self._publishing:
            heartbeat_by_slot[self._slot] = time.monotonic()
            if not self._accepting:
                # Held back, it wakes only for its own connections' events (or after 1 s): look
                # again soon, in case it is now the least-loaded one, with connections waiting.
                timeout = min(timeout, RECHECK_S)
        super().wait_for_and_dispatch_events(timeout)

    def set_accept_enabled(self, enabled: bool) -> None:
        if not enabled and not self.alive:
            # Stopping (SIGTERM, or max_requests reached): the others take every new connection,
            # and must not hold back to this worker's shrinking count while it drains.
            self._stop_publishing()
        super().set_accept_enabled(enabled)

    def _stop_publishing(self) -> None:
        if self._publishing:
            self._publishing = False
            forget_slot(self._slot)
