"""The dynamic batcher with real threads: results, order, batching, failures, deadlines, overload, drain."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlapi.serving.batcher import Arrivals, Batcher, DeadlineExceeded, QueueFull, ShuttingDown
from tests.waiting import wait_until


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


def test_a_lone_clients_next_request_is_dispatched_at_once(model):
    """Back to back, one client: its next request can be queued before the runner is back from the
    last pass (here a slow batch hook), and it still must not wait for a batch to fill."""
    batcher = make(model, max_delay_s=5.0, on_batch=lambda _result: time.sleep(0.05))
    try:
        started = time.perf_counter()
        for i in range(5):
            assert batcher.submit([i], timeout_s=10).outputs == [i * 2]
        assert time.perf_counter() - started < 2.0  # not 5 s a request
    finally:
        batcher.close()
    assert model.batches == [[i] for i in range(5)]


def _in_thread(function):
    """Run ``function`` in its own thread (announcements are per thread, like requests)."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", function()))
    thread.start()
    return thread, result


def _announced_in_thread(arrivals, then):
    """A request on its way, in its own thread: it announces itself, then runs ``then`` once ``go`` is set."""
    go = threading.Event()

    def request():
        arrivals.announce()
        go.wait(5)
        return then()

    thread, result = _in_thread(request)
    wait_until(lambda: arrivals.pending >= 1, what="the request to be announced")
    return thread, result, go


def test_an_idle_batcher_waits_for_a_request_announced_as_on_its_way(model):
    arrivals = Arrivals()
    batcher = make(model, max_delay_s=5.0, arrivals=arrivals)
    try:
        late, late_result, may_submit = _announced_in_thread(arrivals, lambda: batcher.submit(["late"], timeout_s=10))
        first, first_result = _in_thread(lambda: batcher.submit(["first"], timeout_s=10))
        time.sleep(0.1)  # "first" is submitted, and the runner holds it
        assert model.batches == [], "the runner waits while a request is on its way"
        may_submit.set()
        late.join(5)
        first.join(5)
    finally:
        batcher.close()
    assert model.batches == [["first", "late"]]
    assert first_result["value"].outputs == ["firstfirst"] and late_result["value"].outputs == ["latelate"]
    assert arrivals.pending == 0


def test_a_withdrawn_announcement_ends_the_wait_at_once(model):
    arrivals = Arrivals()
    batcher = make(model, max_delay_s=5.0, arrivals=arrivals)
    try:
        # It gives up instead of submitting, e.g. its credentials were refused.
        other, _, may_withdraw = _announced_in_thread(arrivals, arrivals.withdraw)
        first, first_result = _in_thread(lambda: batcher.submit([1], timeout_s=10))
        time.sleep(0.1)  # submitted, and the runner holds it
        assert model.batches == []
        started = time.perf_counter()
        may_withdraw.set()
        first.join(5)
        assert time.perf_counter() - started < 1.0, "not the 5 s delay"
        other.join(5)
    finally:
        batcher.close()
    assert first_result["value"].outputs == [2] and model.batches == [[1]]
    assert arrivals.pending == 0


def test_an_announcement_counts_once_per_thread_and_submitting_takes_it_back(model):
    arrivals = Arrivals()
    batcher = make(model, arrivals=arrivals)
    try:
        arrivals.announce()
        arrivals.announce()
        assert arrivals.pending == 1
        assert batcher.submit([3], timeout_s=10).outputs == [6]
        assert arrivals.pending == 0
        arrivals.withdraw()  # nothing left to take back: no effect
        assert arrivals.pending == 0
        assert batcher.submit([4], timeout_s=10).outputs == [8]  # an unannounced request
        assert arrivals.pending == 0
    finally:
        batcher.close()


def test_a_refused_request_is_no_longer_counted_as_on_its_way(model):
    arrivals = Arrivals()
    batcher = make(model, arrivals=arrivals)
    batcher.close()
    arrivals.announce()
    with pytest.raises(ShuttingDown):
        batcher.submit([1], timeout_s=10)
    assert arrivals.pending == 0


def test_announced_requests_share_batches_under_many_threads(model):
    arrivals = Arrivals()
    batcher = make(model, max_batch_size=32, arrivals=arrivals)

    def request(i):
        arrivals.announce()
        time.sleep(0.001)  # authentication and parsing
        return batcher.submit([i], timeout_s=10).outputs

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(request, range(800)))
    finally:
        batcher.close()
    assert results == [[i * 2] for i in range(800)]
    assert arrivals.pending == 0
    assert len(model.batches) < 800 / 2, "announced requests should mostly share batches"


def test_requests_queued_while_busy_form_one_batch(model):
    batcher = make(model)
    model.hold.clear()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            first = pool.submit(batcher.submit, ["a"], 10)
            assert model.running.wait(5)
            rest = [pool.submit(batcher.submit, [x], 10) for x in "bcd"]
            wait_until(lambda: batcher.depth >= 3, what="three queued requests")
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
            wait_until(lambda: batcher.depth >= 1, what="the bad input to be queued")
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
            wait_until(lambda: batcher.depth >= 2, what="a full queue")
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
        wait_until(lambda: batcher.depth >= 4, what="four queued requests")
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
