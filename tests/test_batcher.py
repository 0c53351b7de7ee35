"""The dynamic batcher with real threads: results, order, batching, failures, deadlines, overload, drain."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlapi.serving.batcher import Batcher, DeadlineExceeded, QueueFull, ShuttingDown


class Model:
    """Doubles numbers; can be held (to build a queue) and made to fail on a marker."""

    def __init__(self):
        self.batches = []
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()

    def __call__(self, inputs):
        self.running.set()
        self.hold.wait(10)
        self.batches.append(list(inputs))
        if "boom" in inputs:
            raise RuntimeError("bad batch")
        return [x * 2 for x in inputs]


@pytest.fixture
def model():
    return Model()


def make(model, **kwargs):
    options = {"name": "test", "max_batch_size": 8, "max_delay_s": 0.005, "max_queue": 1000}
    options.update(kwargs)
    return Batcher(model, **options)


def test_results_match_inputs_under_many_threads(model):
    batcher = make(model)
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(lambda i: batcher.submit([i, i + 0.5], timeout_s=10).outputs, range(2000)))
    finally:
        batcher.close()
    assert results == [[i * 2, (i + 0.5) * 2] for i in range(2000)]
    assert max(len(batch) for batch in model.batches) > 2, "concurrent requests should share batches"
    assert all(len(batch) <= 8 for batch in model.batches)


def test_an_idle_batcher_dispatches_at_once(model):
    batcher = make(model, max_delay_s=5.0)
    try:
        started = time.perf_counter()
        assert batcher.submit([21], timeout_s=10).outputs == [42]
        assert time.perf_counter() - started < 1.0  # the 5 s delay applies only under load
    finally:
        batcher.close()


def test_requests_queued_while_busy_form_one_batch(model):
    batcher = make(model)
    model.hold.clear()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            first = pool.submit(batcher.submit, ["a"], 10)
            assert model.running.wait(5)
            rest = [pool.submit(batcher.submit, [x], 10) for x in "bcd"]
            while batcher.depth < 3:
                time.sleep(0.001)
            model.hold.set()
            assert first.result().batch_size == 1
            assert {f.result().batch_size for f in rest} == {3}
    finally:
        batcher.close()
    assert model.batches[0] == ["a"] and sorted(model.batches[1]) == ["b", "c", "d"]


def test_a_request_larger_than_the_batch_size_runs_alone_in_one_pass(model):
    batcher = make(model, max_batch_size=4)
    try:
        result = batcher.submit(list(range(10)), timeout_s=10)
    finally:
        batcher.close()
    assert result.outputs == [x * 2 for x in range(10)] and result.batch_size == 10
    assert model.batches == [list(range(10))]


def test_a_failing_batch_fails_only_its_requests(model):
    batcher = make(model)
    model.hold.clear()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            blocker = pool.submit(batcher.submit, [1], 10)
            assert model.running.wait(5)
            bad = pool.submit(batcher.submit, ["boom"], 10)
            while batcher.depth < 1:
                time.sleep(0.001)
            model.hold.set()
            assert blocker.result().outputs == [2]
            with pytest.raises(RuntimeError, match="bad batch"):
                bad.result()
        assert batcher.submit([5], timeout_s=10).outputs == [10]  # the runner keeps serving
    finally:
        batcher.close()


def test_a_request_past_its_deadline_is_dropped_if_not_started(model):
    batcher = make(model)
    model.hold.clear()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(batcher.submit, ["first"], 10)
            assert model.running.wait(5)
            with pytest.raises(DeadlineExceeded):
                batcher.submit(["late"], timeout_s=0.05)
            model.hold.set()
            assert running.result().outputs == ["firstfirst"]
        assert batcher.submit(["next"], timeout_s=10).outputs == ["nextnext"]
    finally:
        batcher.close()
    assert ["late"] not in model.batches and all("late" not in batch for batch in model.batches)


def test_a_full_queue_refuses_new_work(model):
    batcher = make(model, max_queue=2)
    model.hold.clear()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            running = pool.submit(batcher.submit, [0], 10)
            assert model.running.wait(5)
            queued = [pool.submit(batcher.submit, [i], 10) for i in (1, 2)]
            while batcher.depth < 2:
                time.sleep(0.001)
            with pytest.raises(QueueFull):
                batcher.submit([3], timeout_s=10)
            model.hold.set()
            assert [f.result().outputs for f in [running, *queued]] == [[0], [2], [4]]
    finally:
        batcher.close()


def test_close_drains_the_queue_then_refuses(model):
    batcher = make(model, max_batch_size=1)
    model.hold.clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(batcher.submit, [i], 10) for i in range(5)]
        assert model.running.wait(5)
        while batcher.depth < 4:
            time.sleep(0.001)
        closer = threading.Thread(target=batcher.close)
        closer.start()
        time.sleep(0.05)
        with pytest.raises(ShuttingDown):
            batcher.submit([99], timeout_s=1)
        model.hold.set()
        closer.join(10)
        assert sorted(f.result().outputs[0] for f in futures) == [0, 2, 4, 6, 8]
    assert not closer.is_alive()


def test_failing_hooks_never_stop_the_runner(model):
    depths = []

    def broken(_):
        raise RuntimeError("metrics storage is gone")

    batcher = make(model, on_batch=broken, on_depth=lambda depth: depths.append(depth) or broken(depth))
    try:
        assert batcher.submit([1], timeout_s=10).outputs == [2]
        assert batcher.submit([2], timeout_s=10).outputs == [4]
    finally:
        batcher.close()
    assert depths and depths[0] == 1  # depth reported on enqueue (and again as batches leave)
