"""Connections spread evenly over Gunicorn's workers (mlapi.server.worker), with real workers."""

import http.client
import json
import os
import runpy
import signal
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from mlapi.server import worker as balanced_worker
from mlapi.server.worker import ABSENT, STALE_S, connections_by_slot, heartbeat_by_slot, least_other_load
from tests.gunicorn_server import ROOT, GunicornServer


@pytest.fixture
def shared_state():
    """The module's shared arrays, restored afterwards (the test process is no Gunicorn master)."""
    saved = list(connections_by_slot), list(heartbeat_by_slot)
    yield
    connections_by_slot[:], heartbeat_by_slot[:] = saved


def publish(slot, connections, heartbeat):
    connections_by_slot[slot] = connections
    heartbeat_by_slot[slot] = heartbeat


def test_the_least_loaded_live_other_worker_sets_the_bar(shared_state):
    now = 1000.0
    for slot in range(len(connections_by_slot)):
        publish(slot, ABSENT, 0.0)
    assert least_other_load(0, now) is None  # alone: no bar

    publish(0, 1, now)
    publish(1, 7, now)
    publish(2, 4, now - 0.5)
    assert least_other_load(0, now) == 4  # its own count does not count
    assert least_other_load(2, now) == 1

    publish(3, 0, now - STALE_S - 0.1)  # its loop has not run for STALE_S: hung
    publish(4, ABSENT, now)  # starting, stopping or dead
    assert least_other_load(0, now) == 4


def test_a_worker_loading_its_models_accepts_only_while_no_other_serves(shared_state):
    worker = object.__new__(balanced_worker.BalancedThreadWorker)  # its rule alone, no process
    worker.mlapi_slot, worker.worker_connections = 1, 32
    for slot in range(len(connections_by_slot)):
        publish(slot, ABSENT, 0.0)
    worker.hold_share_until_loaded()
    assert worker.worker_connections == 32  # start-up: nobody serves, so it answers /health and /ready
    publish(0, 5, time.monotonic())
    assert worker.worker_connections == 0  # respawned beside a serving worker: nothing until loaded
    publish(0, 5, time.monotonic() - STALE_S - 0.1)
    assert worker.worker_connections == 32  # the other one hung: better a 503 than no answer


def test_a_dead_workers_slot_is_forgotten_by_the_master(shared_state, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    publish(3, 5, time.monotonic())
    hooks["child_exit"](None, SimpleNamespace(pid=12345, mlapi_slot=3))
    assert connections_by_slot[3] == ABSENT
    assert balanced_worker.connections_by_slot is connections_by_slot


def open_connections(server, count):
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(count)]
    for connection in connections:
        connection.connect()  # all at once, before any request: the workers race for them
    return connections


def slot_of(connection):
    """The worker slot that answers on this keep-alive connection."""
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())["worker_slot"]


def slots_answering(server, count):
    """Open ``count`` connections at once; the slot that answers on each, in order."""
    connections = open_connections(server, count)
    try:
        return [slot_of(connection) for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def slots_by_pid(server):
    ready = [e for e in server.log_entries() if e.get("message", "").startswith("worker ready")]
    return {e["pid"]: int(e["message"].split("slot ")[1].rstrip(")")) for e in ready}


@pytest.fixture
def two_workers(tmp_path):
    env = {"MLAPI_DATABASE_URL": f"sqlite:///{tmp_path / 'balance.db'}"}
    with GunicornServer(tmp_path / "gunicorn.log", env, workers=2, threads=4) as server:
        yield server


@pytest.mark.integration
def test_connections_are_spread_evenly_over_the_workers(two_workers):
    connections = open_connections(two_workers, 12)
    try:
        held = Counter(slot_of(connection) for connection in connections)
        # Each connection keeps its worker: ask again on every one.
        assert Counter(slot_of(connection) for connection in connections) == held
    finally:
        for connection in connections:
            connection.close()
    assert sorted(held) == [0, 1]
    assert abs(held[0] - held[1]) <= 1, held  # plain gthread: 12 and 0 happens


@pytest.mark.integration
def test_a_killed_worker_does_not_hold_the_others_back(two_workers):
    victim = next(pid for pid, slot in slots_by_pid(two_workers).items() if slot == 0)
    os.kill(victim, signal.SIGKILL)
    began = time.monotonic()
    # Its replacement loads its models for seconds: the survivor takes every connection, at once,
    # although it then holds more than the dead worker's last count.
    assert slots_answering(two_workers, 6) == [1] * 6
    assert time.monotonic() - began < 2.5  # not held back until the dead worker's heartbeat goes stale (5 s)


@pytest.mark.integration
def test_a_hung_worker_stops_counting_after_a_while(two_workers):
    frozen = next(pid for pid, slot in slots_by_pid(two_workers).items() if slot == 0)
    os.kill(frozen, signal.SIGSTOP)
    try:
        began = time.monotonic()
        assert slots_answering(two_workers, 6) == [1] * 6
        # Held back to the frozen worker's count until its heartbeat went stale (5 s), not until
        # keep-alive timeouts free one connection at a time (about 5 s each).
        assert time.monotonic() - began < 10
    finally:
        os.kill(frozen, signal.SIGCONT)
